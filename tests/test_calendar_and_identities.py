"""Time as a cause, the identities every row keeps, and why flows stop: on real samples."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest
from conftest import SMALL_BLOCKS, read_tables
from tolerance import assert_share, assert_within

from causalsynth.config.loading import load_config
from causalsynth.errors import ConfigError
from causalsynth.jobs.sample import sample_dataset

WEEKDAYS = ["MON", "TUE", "WED", "THU", "FRI", "SAT", "SUN"]


def _in_month_day_range(times: pd.Series, first: str, last: str) -> pd.Series:
    key = times.dt.strftime("%m-%d")
    return (key >= first) & (key <= last) if first <= last else (key >= first) | (key <= last)


def _end_of_quarter(times: pd.Series, days: int) -> pd.Series:
    quarter_end = times.dt.tz_localize(None).dt.to_period("Q").dt.end_time.dt.normalize()
    return (quarter_end - times.dt.tz_localize(None).dt.normalize()).dt.days < days


# --- the calendar --------------------------------------------------------------

def test_merges_fall_in_the_window_and_calendar_columns_match_their_timestamp(tables_20k, default_config):
    prs = tables_20k["pull_requests"]
    start = pd.Timestamp(default_config.sampling["start"])
    days = default_config.get("calendar.window_days")
    assert prs.merged_at.min() >= start and prs.merged_at.max() < start + pd.Timedelta(days=days)
    assert (prs.merge_hour == prs.merged_at.dt.hour).all()
    assert (prs.merge_weekday == prs.merged_at.dt.day_of_week.map(dict(enumerate(WEEKDAYS)))).all()
    seasons = default_config.get("calendar.seasons")
    holiday, freeze = seasons["holiday_shopping"], seasons["code_freeze"]
    assert (prs.is_holiday_season == _in_month_day_range(prs.merged_at, holiday["from"], holiday["to"])).all()
    assert (prs.is_code_freeze == _in_month_day_range(prs.merged_at, freeze["from"], freeze["to"])).all()
    assert (prs.is_end_of_quarter
            == _end_of_quarter(prs.merged_at, default_config.get("calendar.end_of_quarter_days"))).all()


def test_run_calendar_columns_match_their_timestamp(tables_20k, default_config):
    runs = tables_20k["system_runs"]
    holiday = default_config.get("calendar.seasons")["holiday_shopping"]
    assert (runs.hour_of_day == runs.started_at.dt.hour).all()
    assert (runs.day_of_week == runs.started_at.dt.day_of_week.map(dict(enumerate(WEEKDAYS)))).all()
    assert (runs.is_holiday_season == _in_month_day_range(runs.started_at, holiday["from"], holiday["to"])).all()


def _cycle(hour, peak: float, amplitude: float):
    """The model's daily cycle: amplitude x cos(2 pi (hour - peak) / 24)."""
    return amplitude * np.cos(2 * np.pi * (np.asarray(hour, np.float64) - peak) / 24)


def test_merge_hours_follow_their_cycle(tables_20k, default_config):
    """Each PR's merge hour is an independent draw, weights exp(cycle) over the 24 hours: every
    hour's share within 4 standard errors of its probability."""
    prs = tables_20k["pull_requests"]
    merges = default_config.get("calendar.merges")
    weight = np.exp(_cycle(np.arange(24), merges["peak_hour"], merges["hour_concentration"]))
    probability = weight / weight.sum()
    observed = prs.merge_hour.value_counts(normalize=True).reindex(range(24), fill_value=0.0)
    for hour in range(24):
        assert_share(observed[hour], probability[hour], len(prs), f"merges at {hour:02d}h")
    assert_share(prs.merge_hour.between(10, 18).mean(), probability[10:19].sum(), len(prs), "merges 10-18h")


def test_merges_follow_the_week_and_the_freeze(tables_20k):
    prs = tables_20k["pull_requests"]
    per_day = prs.merged_at.dt.normalize().value_counts()
    weekday_of = per_day.index.day_of_week
    assert per_day[weekday_of < 5].mean() > 4 * per_day[weekday_of >= 5].mean()
    freeze = per_day[_in_month_day_range(pd.Series(per_day.index), "12-15", "01-05").to_numpy()
                     & (weekday_of < 5)]
    assert freeze.mean() < 0.5 * per_day[weekday_of < 5].mean()


def test_release_pressure_is_the_sum_of_the_pushes_that_apply(tables_20k, default_config):
    prs = tables_20k["pull_requests"]
    w = default_config.get("calendar.release_pressure")
    friday_evening = (prs.merge_weekday == "FRI") & (prs.merge_hour >= default_config.get(
        "calendar.friday_evening_from_hour"))
    expected = (w["end_of_quarter"] * prs.is_end_of_quarter + w["friday_evening"] * friday_evening
                + w["code_freeze_exception"] * prs.is_code_freeze + w["holiday_push"] * prs.is_holiday_season)
    np.testing.assert_allclose(prs.release_pressure, expected, atol=1e-5)


def test_pressure_makes_prs_riskier(tables_20k):
    prs = tables_20k["pull_requests"]
    pushed = prs.release_pressure > 0
    assert prs.test_coverage[pushed].mean() < prs.test_coverage[~pushed].mean() - 0.03
    lines = prs.lines_added + prs.lines_deleted
    for size in ("SMALL", "MEDIUM"):  # larger within the same size class
        in_class = prs.size_class == size
        assert lines[in_class & pushed].median() > lines[in_class & ~pushed].median()
    rate = prs.groupby(pushed).has_performance_regression.mean()
    assert rate[True] > 1.8 * rate[False]


def test_traffic_and_shoppers_follow_the_clock_and_seasons(tables_20k, default_config):
    runs = tables_20k["system_runs"]
    flows = tables_20k["ecommerce_flows"].merge(runs[["run_id", "is_holiday_season", "hour_of_day"]], on="run_id")
    log_load = np.log(runs.load_intensity)
    peak = int(default_config.get("traffic.peak_hour"))
    by_hour = log_load.groupby(runs.hour_of_day).mean()
    assert by_hour[peak] > by_hour[(peak + 12) % 24] + 0.3
    assert log_load[runs.is_holiday_season].mean() > log_load[~runs.is_holiday_season].mean() + 0.4
    holiday = flows.groupby("is_holiday_season")
    assert holiday.cart_value.median()[True] > 1.15 * holiday.cart_value.median()[False]
    assert holiday.conversion_probability.mean()[True] > holiday.conversion_probability.mean()[False] + 0.05


def test_load_is_its_cycle_weekday_and_season_plus_noise(tables_20k, default_config):
    """log load = mean + daily cycle (at the middle of the run's hour) + weekday + holiday + N(0, sd),
    the noise drawn independently per run: what is left once the config's terms are taken off
    averages 0 in every hour, weekday and season (each to its own standard error, sd / sqrt(n))
    and spreads by the configured sd."""
    runs = tables_20k["system_runs"]
    traffic, sd = default_config.get("traffic"), default_config.get("run.load_log_sd")
    residual = (np.log(runs.load_intensity.to_numpy(np.float64)) - default_config.get("run.load_log_mean")
                - _cycle(runs.hour_of_day + 0.5, traffic["peak_hour"], traffic["daily_amplitude"])
                - runs.day_of_week.map(traffic["weekday_log_load"]).to_numpy(np.float64)
                - traffic["holiday_log_load"] * runs.is_holiday_season.to_numpy(np.float64))
    assert_within(residual.mean(), 0.0, sd / np.sqrt(len(runs)), "log load residual")
    assert_within(residual.std(), sd, sd / np.sqrt(2 * len(runs)), "log load residual sd")
    for by in ("hour_of_day", "day_of_week", "is_holiday_season"):
        for level, group in pd.Series(residual).groupby(runs[by].to_numpy()):
            assert_within(group.mean(), 0.0, sd / np.sqrt(len(group)), f"log load residual at {by}={level}")


# --- identities every row keeps --------------------------------------------------

def _run_identities(runs: pd.DataFrame) -> None:
    total = runs.total_requests.astype(np.float64)
    errors = (runs.server_errors + runs.client_errors).astype(np.float64)
    np.testing.assert_allclose(runs.success_rate + runs.error_rate + runs.timeout_rate, 1.0, atol=1e-6)
    assert (runs.success_rate.astype(np.float64) + runs.error_rate <= 1.0 + 1e-6).all()
    np.testing.assert_allclose(runs.error_rate, errors / total, atol=1e-6)
    np.testing.assert_allclose(runs.timeout_rate, runs.timeout_errors / total, atol=1e-6)
    assert (runs.timeout_errors + errors <= total).all()
    assert (runs.p95_response_time_ms > runs.response_time_ms).all()
    for column in ("cpu_usage", "memory_usage", "disk_usage", "success_rate", "error_rate", "timeout_rate"):
        assert runs[column].between(0.0, 1.0).all(), column
    assert ((runs.anomaly_type == "NONE") == ~runs.is_anomalous).all()
    assert ((runs.anomaly_score == 0) == ~runs.is_anomalous).all()


def test_run_metrics_are_coherent(tables_20k):
    _run_identities(tables_20k["system_runs"])


@pytest.mark.parametrize("overrides, do", [
    (["run.error_rate=0.4", "run.timeout_rate=0.2", "regression.effects.error_rate_increase=0.3"], {}),
    ([], {"has_performance_regression": "true"}),
    ([], {"response_time_ms": "5000"}),
])
def test_run_metrics_are_coherent_in_every_world(tmp_path, overrides, do):
    from causalsynth.engine.interventions import Intervention

    config = load_config(overrides=[SMALL_BLOCKS, *overrides])
    sample_dataset(config=config, n_prs=1_000, seed=5, to=tmp_path / "ds",
                   intervention=Intervention(name="do", do=do))
    _run_identities(read_tables(tmp_path / "ds")["system_runs"])


def test_service_identities(tables_20k, default_config):
    services = tables_20k["service_metrics"]
    thresholds = default_config.get("service.status_thresholds")
    expected = np.where(services.health_score >= thresholds["HEALTHY"], "HEALTHY",
                        np.where(services.health_score >= thresholds["DEGRADED"], "DEGRADED", "UNHEALTHY"))
    assert (services.health_status == expected).all()
    for column in ("health_score", "upstream_health", "downstream_health", "error_rate"):
        assert services[column].between(0.0, 1.0).all(), column
    touched = services.groupby("run_id").is_touched_by_pr.sum()
    runs = tables_20k["system_runs"].merge(tables_20k["pull_requests"][["pr_id", "services_touched"]], on="pr_id")
    assert (touched.reindex(runs.run_id).to_numpy() == runs.services_touched.to_numpy()).all()


def _last_steps(tables) -> pd.DataFrame:
    """Each flow with its last call's step and success, whether that step worked at all
    (any of its calls succeeded), and whether a payment went through."""
    steps = tables["flow_steps"].sort_values("step_id")
    last = steps.groupby("flow_id").last()
    worked = steps.groupby(["flow_id", "step_type"]).success.any()
    last["step_worked"] = worked.reindex(pd.MultiIndex.from_arrays([last.index, last.step_type])).to_numpy()
    paid = steps[steps.step_type == "PAYMENT"].groupby("flow_id").success.any()
    flows = tables["ecommerce_flows"].set_index("flow_id")
    return flows.join(last[["step_type", "success", "step_worked"]]).assign(
        paid=paid.reindex(flows.index, fill_value=False))


def test_flow_identities(tables_20k):
    flows = _last_steps(tables_20k)
    assert (flows.last_step == flows.step_type).all()
    assert (flows.converted == ((flows.step_type == "ORDER_CONFIRMATION") & flows.success)).all()
    assert ((flows.abandonment_reason == "NONE") == flows.converted).all()
    payment = flows[flows.abandonment_reason == "PAYMENT"]
    assert len(payment) > 0 and not payment.paid.any()
    assert ((payment.step_type == "PAYMENT") & ~payment.success).all()
    assert not (flows.paid & (flows.abandonment_reason == "PAYMENT")).any()
    technical = flows[flows.abandonment_reason == "TECHNICAL_ERROR"]
    assert (~technical.step_worked).all() and (technical.step_type != "PAYMENT").all()
    chosen = flows[flows.abandonment_reason.isin(["INVENTORY", "SHIPPING", "USER_EXIT"])]
    assert chosen.step_worked.all()  # the shopper stopped after a step that worked
    assert set(chosen[chosen.abandonment_reason == "SHIPPING"].step_type) == {"CHECKOUT"}
    assert set(chosen[chosen.abandonment_reason == "INVENTORY"].step_type) <= {"PRODUCT_BROWSE", "ADD_TO_CART"}


# --- abandonment has causes of its own --------------------------------------------

def test_abandonment_reasons_follow_their_causes(tables_20k):
    flows = tables_20k["ecommerce_flows"].merge(tables_20k["system_runs"][["run_id", "load_intensity"]], on="run_id")
    at_checkout = flows[flows.last_step == "CHECKOUT"]
    shipping = at_checkout.groupby("region").abandonment_reason.apply(lambda r: (r == "SHIPPING").mean())
    assert shipping["OTHER"] > 2 * shipping["US"]
    browsing = flows[flows.last_step == "PRODUCT_BROWSE"]
    stock_out = (browsing.abandonment_reason == "INVENTORY")
    assert stock_out[browsing.cart_size >= 4].mean() > 1.5 * stock_out[browsing.cart_size == 1].mean()
    busy = browsing.load_intensity > browsing.load_intensity.median()
    assert stock_out[busy].mean() > stock_out[~busy].mean()
    shares = flows.abandonment_reason[~flows.converted].value_counts(normalize=True)
    assert set(shares.index) == {"PAYMENT", "INVENTORY", "SHIPPING", "USER_EXIT", "TECHNICAL_ERROR"}
    assert shares.min() > 0.02 and shares.max() < 0.85, shares


def test_abandonment_reason_carries_information_beyond_last_step(tables_20k):
    from causalsynth.tasks.evaluation import label_information

    flows = tables_20k["ecommerce_flows"].merge(
        tables_20k["system_runs"][["run_id", "pr_id", "load_intensity"]], on="run_id")
    causes = ["cart_size", "cart_value", "region", "device_type", "user_segment", "expected_latency_ms",
              "load_intensity"]
    # A quarter of the PRs (about 50,000 abandoned flows) shows it as plainly as all of them: with the
    # causes 0.74 against 0.49, where all 210,000 give 0.75 against 0.49 in three times the time.
    abandoned = flows[~flows.converted & (flows.pr_id % 4 == 0)]
    scores = label_information(abandoned, "abandonment_reason", ["last_step"], causes, "pr_id")
    assert scores["with_causes"] > scores["given"] + 0.05, scores
    assert scores["given"] > scores["majority"], scores


# --- the hidden confounder ----------------------------------------------------------

def test_team_workload_is_hidden_unless_latents_are_asked_for(tmp_path):
    on = [SMALL_BLOCKS, "team_workload.enabled=true"]
    sample_dataset(config=load_config(overrides=on), n_prs=3_000, seed=2, to=tmp_path / "hidden")
    sample_dataset(config=load_config(overrides=[*on, "sampling.latents=true"]), n_prs=3_000, seed=2,
                   to=tmp_path / "shown")
    hidden, shown = read_tables(tmp_path / "hidden"), read_tables(tmp_path / "shown")
    assert "team_workload" not in hidden["pull_requests"].columns
    prs = shown["pull_requests"]
    pd.testing.assert_frame_equal(hidden["pull_requests"], prs.drop(columns="team_workload"))
    busy = prs.team_workload > prs.team_workload.median()
    assert prs.has_performance_regression[busy].mean() > prs.has_performance_regression[~busy].mean() + 0.05
    runs = shown["system_runs"].merge(prs[["pr_id", "team_workload"]], on="pr_id")
    # Background load: slower runs at the same shopper traffic.
    residual = np.log(runs.response_time_ms) - 0.6 * np.log(runs.load_intensity)
    assert np.corrcoef(runs.team_workload, residual)[0, 1] > 0.1


@pytest.mark.parametrize("override, message", [
    ("calendar.seasons.holiday_shopping.from=13-01", "calendar.seasons.holiday_shopping.from"),
    ("calendar.friday_evening_from_hour=25", "calendar.friday_evening_from_hour"),
    ("sampling.start=garbage", "sampling.start"),
    ("funnel.failure_reason.PAYMENT=LOST", "funnel.failure_reason.PAYMENT"),
])
def test_calendar_and_funnel_config_errors_name_the_key(override, message):
    with pytest.raises(ConfigError, match=message.replace(".", r"\.")):
        load_config(overrides=[override])
