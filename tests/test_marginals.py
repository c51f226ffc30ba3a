"""Rates, mixes and causal signatures of a real 20,000-PR default sample.

Rates and shares are held to their targets within ``tolerance.Z`` (4) standard errors of the
sample at hand (see tests/tolerance.py), not to fixed bands."""

from __future__ import annotations

import math

import numpy as np
import pandas as pd
import pytest
from conftest import read_tables
from tolerance import assert_share, assert_within, bernoulli_se

from causalsynth.config.loading import load_config
from causalsynth.engine.sampling import CALIBRATION_TOLERANCE
from causalsynth.jobs.sample import sample_dataset


def share(series: pd.Series, level) -> float:
    return float((series == level).mean())


def pr_ids(tables: dict[str, pd.DataFrame], table: str) -> np.ndarray:
    """The PR of each row of a PR, run, service or flow table."""
    frame = tables[table]
    if "pr_id" in frame.columns:
        return frame.pr_id.to_numpy()
    return tables["system_runs"].set_index("run_id").pr_id.reindex(frame.run_id).to_numpy()


# Calibrated rates: the model's probability column on the outcome's rows, and the config target
# its mean is solved to.
CALIBRATED = {
    "regression.rate": ("pull_requests", "has_performance_regression", True, "regression_probability"),
    "run.anomaly.rate": ("system_runs", "is_anomalous", True, "anomaly_probability"),
    "run.failure.rate": ("system_runs", "run_status", "FAILED", "failure_probability"),
    "service.failure.rate": ("service_metrics", "is_failing", True, "failure_probability"),
    "funnel.conversion.rate": ("ecommerce_flows", "converted", True, "conversion_probability"),
}
# Rates drawn with a fixed probability, independently per PR.
DRAWN = {
    "pull_request.security_vulnerability_rate": "has_security_vulnerability",
    "pull_request.breaking_change_rate": "is_breaking_change",
    "pull_request.api_change_rate": "is_api_change",
    "pull_request.db_change_rate": "is_db_change",
    "pull_request.config_change_rate": "is_config_change",
}
# Mixes drawn independently per row of their table, with fixed shares, among the rows where a
# boolean column holds (None: all rows).
MIXES = {
    "pull_request.size_class.shares": ("pull_requests", "size_class", None),
    "pull_request.primary_service.shares": ("pull_requests", "primary_service", None),
    "regression.severity.shares": ("pull_requests", "regression_severity", "has_performance_regression"),
    "run.anomaly.type.shares": ("system_runs", "anomaly_type", "is_anomalous"),
    "flow.segment.shares": ("ecommerce_flows", "user_segment", None),
    "flow.device.shares": ("ecommerce_flows", "device_type", None),
    "flow.region.shares": ("ecommerce_flows", "region", None),
}


def test_every_configured_marginal_is_tested_here(default_config):
    model = default_config.model
    assert {c.target for c in model.CALIBRATION} == set(CALIBRATED)
    assert {m.target for m in model.MARGINALS} == set(CALIBRATED) | set(DRAWN) | set(MIXES)


def check_calibrated_rate(tables, config, target: str) -> None:
    """A calibrated rate, in two steps, each to its own standard error.

    The draw: given their probabilities the outcomes are independent draws, so the realised
    rate sits within a few ``bernoulli_se`` of the mean probability on the same rows (tight:
    a PR's regression shared by its runs is in the probabilities, not the noise).

    The calibration: the intercept is solved so the mean probability on a separate
    ``sampling.calibration_prs``-PR prior-predictive sample hits the target to within
    CALIBRATION_TOLERANCE; the mean on this sample differs from that by both samples' error.
    Rows of one PR share its regression, calendar and load, so the unit is the PR: the standard
    error of each mean is the spread of per-PR mean probabilities over the root of the PR count
    (every PR has the same number of rows), the two samples are independent.
    """
    table, column, level, probability = CALIBRATED[target]
    frame = tables[table]
    hit = (frame[column] == level).to_numpy(np.float64)
    p = frame[probability].to_numpy(np.float64)
    assert_within(hit.mean(), p.mean(), bernoulli_se(p), f"{column} against the mean {probability}")
    per_pr = pd.Series(p).groupby(pr_ids(tables, table)).mean()
    block = int(config.sampling["block_prs"])
    calibration_prs = -(-int(config.sampling["calibration_prs"]) // block) * block
    se = float(per_pr.std()) * math.sqrt(1 / calibration_prs + 1 / len(per_pr))
    assert_within(p.mean(), float(config.get(target)), se, f"mean {probability} against {target}",
                  slack=CALIBRATION_TOLERANCE)


@pytest.mark.parametrize("target", CALIBRATED)
def test_calibrated_rates(tables_20k, default_config, target):
    check_calibrated_rate(tables_20k, default_config, target)


@pytest.mark.parametrize("target", DRAWN)
def test_drawn_rates(tables_20k, default_config, target):
    prs = tables_20k["pull_requests"]
    assert_share(share(prs[DRAWN[target]], True), default_config.get(target), len(prs), target)


@pytest.mark.parametrize("target", MIXES)
def test_mixes(tables_20k, default_config, target):
    table, column, among = MIXES[target]
    frame = tables_20k[table]
    if among is not None:
        frame = frame[frame[among]]
    mix = default_config.get(target)
    observed = frame[column].value_counts(normalize=True)
    assert set(observed.index) == set(mix), (target, observed)
    for level, expected in mix.items():
        assert_share(observed[level], expected, len(frame), f"{target}.{level}")


def test_normal_runs_have_no_anomaly_type(tables_20k):
    runs = tables_20k["system_runs"]
    assert (runs[~runs.is_anomalous].anomaly_type == "NONE").all()


def test_size_classes_bound_lines_changed(tables_20k):
    prs = tables_20k["pull_requests"]
    lines = prs.lines_added + prs.lines_deleted
    assert (lines[prs.size_class == "SMALL"] < 100).all()
    assert lines[prs.size_class == "MEDIUM"].between(100, 500).all()
    assert (lines[prs.size_class == "LARGE"] > 500).all()


def test_severity_exists_exactly_for_regressions(tables_20k):
    prs = tables_20k["pull_requests"]
    assert ((prs.regression_severity != "NONE") == prs.has_performance_regression).all()


def test_payment_success_after_retries(tables_20k, default_config):
    """A payment call succeeds with the step's rate less the loss for the order service's status in
    that run; a failed call is retried with probability r, up to ``max_attempts`` calls. Given the
    statuses every call is an independent draw, so both rates are held to the model's own
    probabilities on the same calls and flows."""
    config = default_config
    step = config.get("funnel.steps")["PAYMENT"]
    loss = config.get("funnel.status_success_loss")
    retry, attempts = config.get("funnel.retry_probability"), config.get("shape.max_attempts")

    def after_retries(ok):  # P(some call succeeds): ok x (1 + q + ... + q^(k-1)), q = r (1 - ok)
        q = retry * (1.0 - ok)
        return ok * (1.0 - q ** attempts) / (1.0 - q)

    # The config reconciles the seed's two figures, 92 % per attempt and 95 % after retries, for a
    # healthy order service (a property of the config, not of a sample).
    assert after_retries(step["attempt_success"]) == pytest.approx(0.95, abs=0.01)

    steps, flows = tables_20k["flow_steps"], tables_20k["ecommerce_flows"].set_index("flow_id")
    services = tables_20k["service_metrics"]
    status = services[services.service_name == step["service"]].set_index("run_id").health_status
    payment = steps[steps.step_type == "PAYMENT"]
    call_ok = step["attempt_success"] * (1.0 - status.reindex(flows.run_id.reindex(payment.flow_id))
                                         .map(loss).to_numpy(np.float64))
    assert not np.isnan(call_ok).any()
    per_attempt = payment.success.mean()
    assert_within(per_attempt, call_ok.mean(), bernoulli_se(call_ok), "payment calls that succeed")

    paid = payment.groupby("flow_id").success.any()
    flow_ok = step["attempt_success"] * (1.0 - status.reindex(flows.run_id.reindex(paid.index))
                                         .map(loss).to_numpy(np.float64))
    expected = after_retries(flow_ok)
    assert_within(paid.mean(), expected.mean(), bernoulli_se(expected), "payments that go through")
    assert per_attempt < paid.mean()  # per attempt is lower: retries reconcile


def test_row_counts(tables_20k):
    n = 20_000
    assert len(tables_20k["pull_requests"]) == n
    assert len(tables_20k["system_runs"]) == 5 * n
    assert len(tables_20k["service_metrics"]) == 25 * n
    assert len(tables_20k["ecommerce_flows"]) == 15 * n
    steps_per_flow = len(tables_20k["flow_steps"]) / len(tables_20k["ecommerce_flows"])
    assert 6 <= steps_per_flow <= 10


KEYS = {
    "pull_requests": ("pr_id", None, None),
    "system_runs": ("run_id", "pr_id", "pull_requests"),
    "service_metrics": ("service_metric_id", "run_id", "system_runs"),
    "ecommerce_flows": ("flow_id", "run_id", "system_runs"),
    "flow_steps": ("step_id", "flow_id", "ecommerce_flows"),
}


@pytest.mark.parametrize("table", KEYS)
def test_keys_unique_and_foreign_keys_resolve(tables_20k, table):
    key, fk, parent = KEYS[table]
    frame = tables_20k[table]
    assert frame[key].is_unique
    if fk is not None:
        assert frame[fk].isin(tables_20k[parent][KEYS[parent][0]]).all()


@pytest.mark.parametrize("table", KEYS)
def test_no_nulls(tables_20k, table):
    frame = tables_20k[table]
    assert not frame.isna().any().any(), frame.columns[frame.isna().any()].tolist()


def test_every_flow_has_steps_in_order(tables_20k):
    steps = tables_20k["flow_steps"]
    flows = tables_20k["ecommerce_flows"]
    assert set(steps.flow_id) == set(flows.flow_id)
    ordered = steps.sort_values("step_id")
    assert (ordered.groupby("flow_id").step_index.diff().dropna() == 1).all()
    assert (ordered.groupby("flow_id").started_at.diff().dropna() >= pd.Timedelta(0)).all()


def test_converted_flows_end_with_a_successful_confirmation(tables_20k):
    steps = tables_20k["flow_steps"]
    flows = tables_20k["ecommerce_flows"].set_index("flow_id")
    last = steps.sort_values("step_id").groupby("flow_id").last()
    converted = flows.converted.reindex(last.index)
    confirmed = (last.step_type == "ORDER_CONFIRMATION") & last.success
    assert (converted == confirmed).all()
    assert (flows.abandonment_reason[flows.converted] == "NONE").all()
    assert (flows.abandonment_reason[~flows.converted] != "NONE").all()


def test_value_ranges(tables_20k):
    for table, columns in {
        "pull_requests": ["test_coverage", "risk_score", "performance_impact_score", "regression_probability"],
        "system_runs": ["success_rate", "error_rate", "cpu_usage", "memory_usage"],
        "service_metrics": ["health_score", "error_rate"],
        "ecommerce_flows": ["conversion_probability"],
    }.items():
        for column in columns:
            assert tables_20k[table][column].between(0, 1).all(), (table, column)
    assert (tables_20k["system_runs"].response_time_ms > 0).all()
    assert (tables_20k["flow_steps"].latency_ms > 0).all()


def _runs_and_flows_by_regression(tables):
    prs = tables["pull_requests"][["pr_id", "has_performance_regression"]]
    runs = tables["system_runs"].merge(prs, on="pr_id")
    flows = tables["ecommerce_flows"].merge(runs[["run_id", "has_performance_regression"]], on="run_id")
    return runs, flows


def test_regressions_slow_runs_and_lose_conversions(tables_20k):
    runs, flows = _runs_and_flows_by_regression(tables_20k)
    latency = runs.groupby("has_performance_regression").response_time_ms.mean()
    assert latency[True] >= 1.2 * latency[False]
    conversion = flows.groupby("has_performance_regression").converted.mean()
    assert conversion[True] < conversion[False] - 0.03


def test_regression_touches_its_service_harder(tables_20k):
    prs = tables_20k["pull_requests"][["pr_id", "has_performance_regression"]]
    runs = tables_20k["system_runs"][["run_id", "pr_id"]].merge(prs, on="pr_id")
    services = tables_20k["service_metrics"].merge(runs, on="run_id")
    regressed = services[services.has_performance_regression]
    health = regressed.groupby("is_touched_by_pr").health_score.mean()
    assert health[True] < health[False]


def test_set_regression_rate_moves_the_marginal(tmp_path):
    config = load_config(overrides=["regression.rate=0.35"])
    sample_dataset(config=config, n_prs=20_000, seed=3, to=tmp_path / "ds")
    check_calibrated_rate(read_tables(tmp_path / "ds"), config, "regression.rate")
