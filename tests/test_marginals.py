"""Rates, mixes and causal signatures of a real 20,000-PR default sample."""

from __future__ import annotations

import pandas as pd
import pytest

from causalsynth.config import load_config
from causalsynth.dataset import sample_dataset
from conftest import read_tables


def share(series: pd.Series, level) -> float:
    return float((series == level).mean())


@pytest.mark.parametrize("table, column, level, target, tolerance", [
    ("pull_requests", "has_performance_regression", True, 0.20, 0.02),
    ("system_runs", "is_anomalous", True, 0.10, 0.01),
    ("system_runs", "run_status", "FAILED", 0.05, 0.01),
    ("ecommerce_flows", "converted", True, 0.30, 0.03),
    ("pull_requests", "has_security_vulnerability", True, 0.05, 0.01),
    ("pull_requests", "is_breaking_change", True, 0.10, 0.01),
])
def test_headline_rates(tables_20k, table, column, level, target, tolerance):
    assert share(tables_20k[table][column], level) == pytest.approx(target, abs=tolerance)


@pytest.mark.parametrize("table, column, mix", [
    ("pull_requests", "size_class", {"SMALL": 0.80, "MEDIUM": 0.15, "LARGE": 0.05}),
    ("ecommerce_flows", "device_type", {"MOBILE": 0.60, "DESKTOP": 0.35, "TABLET": 0.05}),
    ("ecommerce_flows", "region", {"US": 0.40, "EU": 0.30, "ASIA": 0.20, "OTHER": 0.10}),
])
def test_mixes(tables_20k, table, column, mix):
    observed = tables_20k[table][column].value_counts(normalize=True)
    assert set(observed.index) == set(mix)
    for level, target in mix.items():
        assert observed[level] == pytest.approx(target, abs=0.02), level


def test_anomaly_types_among_anomalous_runs(tables_20k):
    runs = tables_20k["system_runs"]
    anomalous = runs[runs.is_anomalous]
    mix = anomalous.anomaly_type.value_counts(normalize=True)
    for level, target in {"PERFORMANCE": 0.4, "ERROR_RATE": 0.3, "RESOURCE_USAGE": 0.2, "BEHAVIOR": 0.1}.items():
        assert mix[level] == pytest.approx(target, abs=0.03), level
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


def test_payment_success_after_retries(tables_20k):
    steps = tables_20k["flow_steps"]
    payment = steps[steps.step_type == "PAYMENT"]
    after_retries = payment.groupby("flow_id").success.any().mean()
    assert after_retries == pytest.approx(0.95, abs=0.02)
    assert payment.success.mean() < after_retries  # per attempt is lower: retries reconcile


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
    sample_dataset(config=config, n_prs=20_000, seed=3, out=tmp_path / "ds")
    prs = read_tables(tmp_path / "ds")["pull_requests"]
    assert prs.has_performance_regression.mean() == pytest.approx(0.35, abs=0.02)
