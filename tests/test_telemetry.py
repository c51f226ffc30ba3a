"""Per-service metric series and incidents (`sample --series`), RCA, and RCAEval's layout: on real samples."""

from __future__ import annotations

import importlib.util
import json
import shutil
from pathlib import Path

import jax
import numpy as np
import pandas as pd
import pyarrow.parquet as pq
import pytest
from conftest import SMALL_BLOCKS, part_path, read_table, read_tables, rewrite, with_value
from typer.testing import CliRunner

from causalsynth.cli import app
from causalsynth.config.loading import load_config
from causalsynth.dataset.manifest import read_manifest
from causalsynth.engine.interventions import Intervention
from causalsynth.jobs.sample import sample_dataset, sample_twin
from causalsynth.validate.quality import validate_dataset


def checksums(directory, table):
    return [p["sha256"] for p in read_manifest(directory)["tables"][table]["parts"]]

runner = CliRunner()
N_PRS = 400
SEED = 3


@pytest.fixture(scope="module")
def worlds(tmp_path_factory) -> dict[str, Path]:
    """The same seed without series, with them, and the series world's twin without regressions."""
    root = tmp_path_factory.mktemp("telemetry")
    plain = load_config(overrides=[SMALL_BLOCKS])
    sample_dataset(config=plain, n_prs=N_PRS, seed=SEED, to=root / "plain")
    sample_dataset(config=plain.with_overrides(["telemetry.enabled=true"]), n_prs=N_PRS, seed=SEED,
                   to=root / "series")
    sample_twin(factual_dir=root / "series", to=root / "twin",
                intervention=Intervention(name="do", do={"has_performance_regression": "false"}))
    return {"plain": root / "plain", "series": root / "series", "twin": root / "twin"}


@pytest.fixture(scope="module")
def tables(worlds) -> dict[str, dict[str, pd.DataFrame]]:
    return {name: read_tables(path) for name, path in worlds.items() if name != "plain"}


@pytest.fixture(scope="module")
def points(tables) -> pd.DataFrame:
    """Every tick of the series world beside its twin's, with its service and run."""
    series, twin = tables["series"], tables["twin"]
    runs = series["system_runs"][["run_id", "pr_id", "root_cause_service", "fault_kind", "fault_onset_s",
                                   "is_anomalous"]]
    runs = runs.merge(twin["system_runs"][["run_id", "is_anomalous", "fault_kind"]].rename(
        columns={"is_anomalous": "twin_anomalous", "fault_kind": "twin_fault"}), on="run_id")
    services = series["service_metrics"][["service_metric_id", "run_id", "service_name", "response_time_ms",
                                          "error_rate", "throughput_rps"]]
    return (series["service_timeseries"].merge(twin["service_timeseries"], on="point_id", suffixes=("", "_twin"))
            .merge(services, on="service_metric_id", suffixes=("", "_snapshot")).merge(runs, on="run_id"))


def test_the_other_tables_are_the_same_bytes_with_or_without_series(worlds):
    for table in ("pull_requests", "service_metrics", "ecommerce_flows", "flow_steps"):
        assert checksums(worlds["plain"], table) == checksums(worlds["series"], table)
    plain = read_table(worlds["plain"], "system_runs").to_pandas()
    series = read_table(worlds["series"], "system_runs").to_pandas()
    pd.testing.assert_frame_equal(series[plain.columns], plain)
    assert set(series.columns) - set(plain.columns) == {"root_cause_service", "fault_kind", "fault_onset_s",
                                                        "spurious_event_service"}


def test_the_series_table_has_its_rows_and_validates(worlds, tables, default_config):
    ticks = default_config.get("telemetry.ticks")
    assert len(tables["series"]["service_timeseries"]) == N_PRS * 5 * 5 * ticks  # no gaps by default
    for world in ("series", "twin"):
        checks = validate_dataset(worlds[world])
        assert all(c.passed for c in checks), [(c.check, c.observed) for c in checks if not c.passed]
        names = {c.check: c for c in checks}
        assert names["rows per parent service_metrics → service_timeseries"].expected == f"0 to {ticks}"
        assert names["identity service_timeseries: ticks at their offsets in the run's window"].applicable


def test_mislabelled_incidents_fail_their_identities(worlds, tables, tmp_path):
    """A regression incident elsewhere than the primary service; an injected fault in an anomalous run."""
    copy = tmp_path / "copy"
    shutil.copytree(worlds["series"], copy)
    runs = pq.read_table(part_path(copy, "system_runs")).to_pandas()
    prs = tables["series"]["pull_requests"].set_index("pr_id").primary_service
    row = int(np.flatnonzero(runs.fault_kind == "REGRESSION")[0])
    other = next(s for s in default_services() if s != prs[runs.pr_id.iloc[row]])
    anomaly = int(np.flatnonzero(runs.fault_kind == "PERFORMANCE")[0])
    rewrite(copy, "system_runs", lambda f: with_value(with_value(f, "root_cause_service", [row], other),
                                                      "fault_kind", [anomaly], "CPU_HOG"))
    checks = {c.check: c for c in validate_dataset(copy, resample=0)}
    for identity in ("a regression incident starts at the PR's primary service",
                     "an anomaly incident exactly when anomalous and not regressed",
                     "an injected fault only where nothing else goes on"):
        broken = checks[f"identity system_runs: {identity}"]
        assert not broken.passed and broken.observed.startswith("1 of "), identity
    assert checks["identity system_runs: no root cause exactly without a fault"].passed  # only those rules see it


def test_a_root_cause_outside_the_services_is_refused_not_scored(worlds, tmp_path):
    """A case naming no service of its dataset would be scored against another service: refused."""
    copy = tmp_path / "copy"
    shutil.copytree(worlds["series"], copy)
    runs = pq.read_table(part_path(copy, "system_runs")).to_pandas()
    row = int(np.flatnonzero(runs.fault_kind != "NONE")[0])
    rewrite(copy, "system_runs", lambda f: with_value(f, "root_cause_service", [row], "elsewhere"))
    result = runner.invoke(app, ["export", str(copy), "--format", "rcaeval", "--out", str(tmp_path / "cases")])
    assert result.exit_code != 0 and "'elsewhere' is none of its services" in result.output, result.output
    assert f"run {runs.run_id.iloc[row]}" in result.output and not (tmp_path / "cases").exists()


def default_services() -> list[str]:
    return list(load_config().get("services"))


def test_missing_ticks_are_held_to_the_gap_rate(worlds, tmp_path):
    """No gaps configured: one deleted tick fails. A 20 % gap rate validates, and more gaps than it fail."""
    copy = tmp_path / "copy"
    shutil.copytree(worlds["series"], copy)
    assert {c.check: c for c in validate_dataset(copy, resample=0)}["gaps service_timeseries"].passed
    rewrite(copy, "service_timeseries", lambda f: f.drop(f.index[17]))
    gaps = {c.check: c for c in validate_dataset(copy, resample=0)}["gaps service_timeseries"]
    assert not gaps.passed and gaps.expected.startswith("0.00% ± 0.00%")

    gappy = tmp_path / "gappy"
    config = load_config(overrides=[SMALL_BLOCKS, "telemetry.enabled=true", "telemetry.gap_rate=0.2"])
    sample_dataset(config=config, n_prs=100, seed=SEED, to=gappy)
    gaps = {c.check: c for c in validate_dataset(gappy, resample=0)}["gaps service_timeseries"]
    assert gaps.passed and abs(gaps.value - 0.2) < 0.01, gaps
    rewrite(gappy, "service_timeseries", lambda f: f.iloc[::2])
    gaps = {c.check: c for c in validate_dataset(gappy, resample=0)}["gaps service_timeseries"]
    assert not gaps.passed and abs(gaps.value - 0.6) < 0.02, gaps


def test_healthy_runs_have_no_root_cause_and_incidents_have_theirs(tables):
    runs = tables["series"]["system_runs"].merge(
        tables["series"]["pull_requests"][["pr_id", "has_performance_regression", "primary_service"]], on="pr_id")
    healthy = runs.fault_kind == "NONE"
    assert healthy.any() and (~healthy).any()
    assert (runs.root_cause_service[healthy] == "NONE").all() and (runs.fault_onset_s[healthy] == -1).all()
    assert (runs.root_cause_service[~healthy] != "NONE").all() and (runs.fault_onset_s[~healthy] >= 0).all()
    regression = runs.fault_kind == "REGRESSION"
    assert (regression == runs.has_performance_regression).all()
    assert (runs.root_cause_service[regression] == runs.primary_service[regression]).all()
    anomaly = runs.fault_kind.isin(["PERFORMANCE", "ERROR_RATE", "RESOURCE_USAGE", "BEHAVIOR"])
    assert (anomaly == runs.is_anomalous & ~runs.has_performance_regression).all()
    # A regressed run's anomaly is the regression's symptom, at its service: every fault in a run is labelled.
    injected = ~healthy & ~regression & ~anomaly
    assert not (injected & (runs.is_anomalous | runs.has_performance_regression)).any()
    quiet = ~runs.is_anomalous & ~runs.has_performance_regression
    assert 0.2 < injected[quiet].mean() < 0.3  # telemetry.faults.rate: 0.25
    kinds = runs.fault_kind[injected].astype(str).value_counts(normalize=True)
    assert set(kinds.index) == {"CPU_HOG", "MEMORY_LEAK", "DISK_PRESSURE", "NETWORK_DELAY", "PACKET_LOSS",
                                "SOCKET_EXHAUSTION", "CODE_EXCEPTION"}
    assert kinds.max() - kinds.min() < 0.1, kinds                   # balanced by default
    assert (runs.spurious_event_service == "NONE").all()             # telemetry.spurious_rate: 0


def test_series_summarise_to_their_snapshot(points):
    """Exactly (to float32) without a regression or an event; up to the noise with one."""
    by_series = points.groupby("service_metric_id").agg(
        latency=("latency_ms", "mean"), snapshot=("response_time_ms", "first"), kind=("fault_kind", "first"),
        errors=("error_rate", "mean"), error_snapshot=("error_rate_snapshot", "first"),
        requests=("request_rate", "mean"), request_snapshot=("throughput_rps", "first"),
        anomalous=("is_anomalous", "first"))
    calm = by_series.kind == "NONE"  # no regression, no anomaly event (and no spurious events by default)
    for metric, snapshot in (("latency", "snapshot"), ("errors", "error_snapshot"), ("requests", "request_snapshot")):
        np.testing.assert_allclose(by_series[metric][calm], by_series[snapshot][calm], rtol=2e-6)
    regressed = (by_series.kind == "REGRESSION") & ~by_series.anomalous  # an anomaly's event adds its own excess
    relative = (by_series.latency[regressed] / by_series.snapshot[regressed] - 1).abs()
    # The noise's window mean is 1, the profile's is the snapshot's ratio: they differ by their covariance.
    assert relative.median() < 0.01 and relative.quantile(0.99) < 0.15, relative.describe()


def test_series_behave_like_telemetry(worlds):
    """On the runs without a fault (a seed the priors were not tuned on): each metric has its own
    persistence and spread, latency has heavy tails, latency and CPU rise with the request rate in
    every service, services move together, and CPU levels differ by service."""
    from causalsynth.dataset.reading import Dataset
    from causalsynth.tasks.rca import read_cases, series_statistics

    ds = Dataset(worlds["series"])
    clean = read_cases(ds, clean=True)
    stats = series_statistics(clean, dict(ds.config.model.INCIDENTS.metrics))
    metrics = [m for m in stats if m != "services"]
    assert len(clean) > 1000 and set(metrics) == {"latency", "latency-95", "workload", "error", "cpu", "mem",
                                                  "disk"}
    lag1, cv = [stats[m]["lag1"] for m in metrics], [stats[m]["cv"] for m in metrics]
    assert max(lag1) - min(lag1) > 0.3 and max(cv) / min(cv) > 3, stats
    assert stats["latency"]["kurtosis"] >= 1, stats["latency"]
    assert stats["latency"]["corr_workload"] >= 0.3 and stats["cpu"]["corr_workload"] >= 0.3, stats
    assert stats["services"]["corr"] > 0.2 and stats["services"]["cpu_spread"] > 1.3, stats["services"]


def test_series_statistics_see_a_template():
    """Every metric stamped from one AR(1) template, independent of each other: the figures say so."""
    from causalsynth.tasks.rca import Cases, series_statistics

    rng = np.random.default_rng(0)
    z = rng.standard_normal((300, 3, 3, 60))
    ar = np.zeros_like(z)
    for t in range(60):
        ar[..., t] = z[..., t] if t == 0 else 0.5 * ar[..., t - 1] + np.sqrt(0.75) * z[..., t]
    cases = Cases(run_id=np.arange(300), started_at=np.zeros(300, np.int64), services=("a", "b", "c"),
                  metrics=("lat", "req", "cpu"), series=np.exp(0.07 * ar), tick_s=10.0, onset_s=-np.ones(300),
                  root=-np.ones(300, int), kind=np.full(300, "NONE"))
    stats = series_statistics(cases, {"lat": "latency", "req": "workload", "cpu": "cpu"})
    lag1 = [stats[m]["lag1"] for m in ("latency", "workload", "cpu")]
    assert max(lag1) - min(lag1) < 0.05 and abs(stats["latency"]["kurtosis"]) < 0.3
    assert abs(stats["latency"]["corr_workload"]) < 0.1 and abs(stats["services"]["corr"]) < 0.05
    assert stats["services"]["cpu_spread"] < 1.02


def test_resources_saturate_without_losing_a_fault():
    from causalsynth.models.delivery_commerce.telemetry import saturate

    usage = np.linspace(0.01, 3.0, 300)
    out = np.asarray(saturate(usage))
    assert np.all(np.diff(out) > 0) and out.max() < 1.0
    assert np.allclose(out[usage <= 0.5], usage[usage <= 0.5], rtol=0.01)
    assert float(saturate(1.2)) > 1.5 * float(saturate(0.6))  # a doubled busy service still shows


def random_graphs(rng, n):
    """``n`` random call graphs without cycles (``A[i, j]``: ``i`` calls ``j``; a caller before its callees)
    and a service of each as the faulty one."""
    for _ in range(n):
        size = int(rng.integers(2, 12))
        depends = np.triu(rng.random((size, size)) < rng.uniform(0.2, 0.8), 1).astype(np.float32)
        yield depends, int(rng.integers(size))


def test_no_caller_degrades_more_than_its_root():
    """By construction of the mechanisms, over their parameters: on random call graphs, at every share,
    effect size and base rate, a regression's factor at a caller (latency, errors; requests fall) is
    never beyond the primary service's, and share ** shortest hops, not a sum over the paths."""
    from types import SimpleNamespace

    from causalsynth.models.delivery_commerce.mechanisms import degradation_factors, exposure, hops

    rng = np.random.default_rng(0)
    for depends, root in random_graphs(rng, 200):
        size = len(depends)
        share = float(rng.choice([0.0, 0.3, 0.5, 0.9, 1.0]))
        felt = np.asarray(exposure(depends, (np.arange(size) == root).reshape(-1, 1), share))[:, 0]
        distance = hops(depends)[root]
        expected = np.where(distance < size, share ** np.minimum(distance, size).astype(float), 0.0)
        np.testing.assert_allclose(felt, expected, rtol=1e-6)
        effects = SimpleNamespace(response_time_increase=rng.uniform(0, 3), error_rate_increase=rng.uniform(0, 0.3))
        factor = degradation_factors(effects, rng.uniform(1e-3, 0.05), rng.uniform(0, 3) * felt)
        for metric in ("latency", "errors"):
            assert np.all(np.asarray(factor[metric]) <= np.asarray(factor[metric])[root] + 1e-6), metric
        assert np.all(np.asarray(factor["requests"]) >= np.asarray(factor["requests"])[root] - 1e-6)
    # Two paths from `user` up to `gateway` (direct, and through `order`) used to add up to 1.71 at 0.9.
    depends = np.asarray([[0, 1, 1], [0, 0, 1], [0, 0, 0]], np.float32)      # gateway, order, user
    np.testing.assert_allclose(np.asarray(exposure(depends, np.asarray([[0], [0], [1]]), 0.9))[:, 0],
                               [0.9, 0.9, 1.0], rtol=1e-6)


def test_no_caller_moves_more_than_an_injected_fault():
    """Every injected fault's log-lift, over random graphs, shares, sizes, onsets and ramps: at every tick
    and metric no service moves more than the faulty one, and only latency and errors leave it."""
    from causalsynth.models.delivery_commerce.mechanisms import hops
    from causalsynth.models.delivery_commerce.telemetry import CARRIED, METRICS, injected_lift

    rng = np.random.default_rng(1)
    mid = (np.arange(30) + 0.5) * 10.0
    lifted = jax.jit(injected_lift)  # as the sampler runs it: one compile per graph size, not one per operation
    for depends, root in random_graphs(rng, 200):
        size = len(depends)
        distance = hops(depends)[root].reshape(-1, 1)
        start = rng.uniform(0, 250) + rng.uniform(0, 30) * np.where(distance < size, distance, 0)
        effect = rng.uniform(-2, 2, len(METRICS)).reshape(-1, 1, 1)
        lift = np.asarray(lifted(effect, float(rng.uniform(0, 1)), distance, start, mid, 300.0,
                                 bool(rng.integers(2))))                         # (M, S, T)
        assert np.all(np.abs(lift) <= np.abs(lift[:, root:root + 1]) + 1e-6)
        others = np.arange(size) != root
        assert np.all(lift[~CARRIED][:, others] == 0) and np.all(lift[:, distance[:, 0] >= size] == 0)


def test_twins_are_identical_before_the_onset_and_where_no_fault_is(points, default_config):
    tick_s = default_config.get("telemetry.tick_s")
    start = points.groupby("run_id").started_at.transform("min")
    offset = (points.started_at - start).dt.total_seconds()
    before = offset + tick_s / 2 < points.fault_onset_s  # the tick's middle is before the onset
    # A regressed run's anomaly event is at its service, from its onset; the twin's, where it is drawn.
    regressed = (points.fault_kind == "REGRESSION") & ~points.is_anomalous & ~points.twin_anomalous
    for metric in ("latency_ms", "error_rate", "request_rate", "memory_usage"):
        np.testing.assert_allclose(points[metric][regressed & before], points[f"{metric}_twin"][regressed & before],
                                   rtol=2e-6, err_msg=metric)
    untouched = ~points.pr_id.isin(points.pr_id[points.fault_kind == "REGRESSION"])
    for metric in ("latency_ms", "p95_latency_ms", "request_rate", "error_rate", "cpu_usage", "memory_usage",
                   "disk_usage"):
        assert (points[metric][untouched] == points[f"{metric}_twin"][untouched]).all(), metric
    after = (offset > points.fault_onset_s + 60) & regressed & (points.service_name == points.root_cause_service)
    assert (points.latency_ms[after] > 1.05 * points.latency_ms_twin[after]).mean() > 0.95


def test_onset_and_hop_lag_are_visible(points, default_config):
    """The root cause degrades at the onset; a service one hop up, a hop lag later."""
    tick_s, lag = default_config.get("telemetry.tick_s"), default_config.get("telemetry.hop_lag_s")
    start = points.groupby("run_id").started_at.transform("min")
    offset = (points.started_at - start).dt.total_seconds()
    ratio = points.latency_ms / points.latency_ms_twin
    # No anomaly in either world, and no fault in the twin (a quiet run there may get an injected one).
    incident = (points.fault_kind == "REGRESSION") & ~points.is_anomalous & (points.twin_fault == "NONE")
    root = incident & (points.service_name == points.root_cause_service)
    first_tick_after = root & (offset >= points.fault_onset_s) & (offset < points.fault_onset_s + tick_s)
    assert (ratio[first_tick_after] > 1.05).mean() > 0.9
    callers = {"user": ("gateway", "order"), "product": ("gateway", "order"), "notification": ("order",),
               "order": ("gateway",)}
    caller = incident & pd.Series([s in callers.get(r, ()) for s, r in zip(points.service_name.astype(str),
                                                                          points.root_cause_service.astype(str))],
                                  index=points.index)
    waiting = caller & (offset - tick_s / 2 >= points.fault_onset_s) & (offset + tick_s / 2 < points.fault_onset_s + lag)
    assert waiting.sum() > 20 and np.allclose(ratio[waiting], 1.0, rtol=2e-6)  # reached, but not yet
    reached = caller & (offset > points.fault_onset_s + lag + tick_s)
    assert (ratio[reached] > 1.0 + 1e-4).mean() > 0.95


def test_each_injected_fault_moves_its_own_metric_most_at_its_service(points, default_config):
    """A fault's signature: at its service, from the onset on, the metric its kind's effects name
    largest moves most (median log-ratio of the window after the onset to before it, over the runs)."""
    from causalsynth.models.delivery_commerce.telemetry import INJECTED_FAULTS

    columns = {"latency": "latency_ms", "errors": "error_rate", "requests": "request_rate", "cpu": "cpu_usage",
               "memory": "memory_usage", "disk": "disk_usage"}
    effects = default_config.get("telemetry.faults.effects")
    start = points.groupby("run_id").started_at.transform("min")
    after = (points.started_at - start).dt.total_seconds() + default_config.get("telemetry.tick_s") / 2 \
        >= points.fault_onset_s
    at_root = points[points.service_name.astype(str) == points.root_cause_service.astype(str)].assign(
        after=after)
    for kind in INJECTED_FAULTS:
        rows = at_root[at_root.fault_kind == kind]
        means = rows.groupby(["run_id", "after"])[list(columns.values())].mean().unstack("after")
        moved = {m: np.median(np.log(means[(c, True)] / means[(c, False)])) for m, c in columns.items()}
        named = max(effects[kind], key=lambda m: abs(effects[kind][m]))
        assert rows.run_id.nunique() >= 15, kind
        assert max(moved, key=lambda m: abs(moved[m])) == named, (kind, moved)
        assert abs(moved[named]) > 0.25, (kind, moved)   # a leak grows: half its size on average


def test_rcaeval_layout_round_trips(worlds, tables, tmp_path):
    out = tmp_path / "cases"
    result = runner.invoke(app, ["export", str(worlds["series"]), "--format", "rcaeval", "--out", str(out)])
    assert result.exit_code == 0, result.output
    manifest = json.loads((out / "cases.json").read_text())
    runs = tables["series"]["system_runs"].set_index("run_id")
    incidents = runs[runs.fault_kind != "NONE"]
    assert len(manifest["cases"]) == len(incidents)
    ticks = tables["series"]["service_timeseries"].merge(
        tables["series"]["service_metrics"][["service_metric_id", "run_id", "service_name"]], on="service_metric_id")
    for case in manifest["cases"][:: max(1, len(manifest["cases"]) // 25)]:
        folder = out / case["case"]
        service, fault = folder.parent.name.split("_")
        assert service == case["root_cause_service"] == runs.root_cause_service[case["run_id"]]
        data = pd.read_csv(folder / "data.csv")
        assert list(data.columns) == manifest["columns"] and data.columns[0] == "time"
        start = int(runs.started_at[case["run_id"]].timestamp())
        assert data.time.iloc[0] == start and (np.diff(data.time) == case["tick_s"]).all()
        inject = int((folder / "inject_time.txt").read_text().strip())
        # The start of the first tick the fault is in: the first whose middle is at or past the onset.
        first = np.ceil(runs.fault_onset_s[case["run_id"]] / case["tick_s"] - 0.5)
        assert inject == case["inject_time"] == start + int(first * case["tick_s"])
        mine = ticks[ticks.run_id == case["run_id"]]
        for metric, suffix in (("latency_ms", "latency"), ("error_rate", "error"), ("request_rate", "workload")):
            wide = mine.pivot(index="tick_index", columns="service_name", values=metric)
            for svc in wide.columns:
                np.testing.assert_array_equal(data[f"{svc}_{suffix}"].to_numpy(),
                                              wide[svc].to_numpy(np.float32).astype(np.float64))


def _rcaeval_baro():
    """RCAEval's own BARO (PyPI RCAEval 1.8.1). Its ``RCAEval.e2e`` package imports optional
    methods on Python 3.11, so the module is loaded from its file, unchanged."""
    import RCAEval

    spec = importlib.util.spec_from_file_location("rcaeval_baro", Path(RCAEval.__path__[0]) / "e2e" / "baro.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module.baro


@pytest.mark.slow
def test_force_replaces_only_incident_cases_it_wrote(worlds, tmp_path):
    """A directory of the user's own, whose cases.json merely has a "cases" key, is refused; an export's
    own output is replaced (every incident layout checks the same marker, ``tasks.rcaeval.OWNED_CASES``)."""
    layout = "rcaeval"
    out = tmp_path / "mine"
    (out / "notes").mkdir(parents=True)
    (out / "cases.json").write_text('{"cases": []}')
    (out / "notes" / "thesis.txt").write_text("x")
    result = runner.invoke(app, ["export", str(worlds["series"]), "--format", layout, "--out", str(out), "--force"])
    assert result.exit_code == 2 and "holds files that are not" in result.output, result.output
    assert (out / "notes" / "thesis.txt").read_text() == "x" and (out / "cases.json").read_text() == '{"cases": []}'
    ours = tmp_path / "ours"
    for _ in range(2):
        result = runner.invoke(app, ["export", str(worlds["series"]), "--format", layout, "--out", str(ours),
                                     "--force"])
        assert result.exit_code == 0, result.output
    assert json.loads((ours / "cases.json").read_text())["format"] == "causalsynth-incident-cases"


def test_an_unknown_export_format_names_every_allowed_one(worlds, tmp_path):
    result = runner.invoke(app, ["export", str(worlds["series"]), "--format", "rcaevl"])
    assert result.exit_code == 2
    assert "--format rcaevl" in result.output and all(f in result.output for f in ("csv", "re2", "rcabench", "otlp"))
    result = runner.invoke(app, ["export", str(worlds["series"]), "--format", "RCAEval", "--out", str(tmp_path / "c")])
    assert result.exit_code == 0, result.output   # names are case-insensitive


def test_rcaeval_baro_reads_our_cases_and_agrees_with_ours(worlds, tmp_path):
    import warnings

    from causalsynth.tasks.rca import baro, ranks, read_cases

    out = tmp_path / "cases"
    assert runner.invoke(app, ["export", str(worlds["series"]), "--format", "rcaeval", "--out", str(out)]).exit_code == 0
    theirs = _rcaeval_baro()
    cases = read_cases(worlds["series"])
    ours = ranks(baro(cases))
    row = {int(r): i for i, r in enumerate(cases.run_id)}
    agree, hits, ours_hits = 0, 0, 0
    listed = json.loads((out / "cases.json").read_text())["cases"]
    listed = [listed[i] for i in np.linspace(0, len(listed) - 1, 100).astype(int)]  # a spread of 100
    for case in listed:
        data = pd.read_csv(out / case["case"] / "data.csv").ffill().fillna(0)  # as RCAEval's main.py does
        inject = int((out / case["case"] / "inject_time.txt").read_text().splitlines()[0])
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            ranked = theirs(data, inject, dataset="re1-ob")["ranks"]
        top = next(iter(dict.fromkeys(r.split("_")[0] for r in ranked)), None)
        mine = cases.services[ours[row[case["run_id"]], 0]]
        agree += top == mine
        hits += top == case["root_cause_service"]
        ours_hits += mine == case["root_cause_service"]
    assert len(listed) >= 100 and agree / len(listed) > 0.95
    assert abs(hits - ours_hits) / len(listed) < 0.03


def test_evaluate_scores_root_cause_methods_beside_a_constant(worlds):
    from causalsynth.tasks.evaluation import evaluate

    results = evaluate(worlds["series"], tasks=["root_cause"])["root_cause"]
    assert results["_cases"]["n"] > 100
    for method in ("baro", "nsigma", "mechanism"):
        at1, at3, avg5 = (results[f"{method}.{m}"]["value"] for m in ("AC@1", "AC@3", "Avg@5"))
        assert 0 <= at1 <= at3 <= 1 and at1 <= avg5 <= 1
    constant = results["baro.AC@1"]["majority"]
    assert results["mechanism.AC@1"]["value"] > constant + 0.3  # knowing the mechanism finds the root
    assert results["baro.AC@1"]["value"] > constant
    # Per fault kind: every kind the model injects, the counts adding up, the scores their weighted mean.
    counts = results["_cases"]["by_fault"]
    assert set(counts) == {"REGRESSION", "PERFORMANCE", "ERROR_RATE", "RESOURCE_USAGE", "BEHAVIOR", "CPU_HOG",
                           "MEMORY_LEAK", "DISK_PRESSURE", "NETWORK_DELAY", "PACKET_LOSS", "SOCKET_EXHAUSTION",
                           "CODE_EXCEPTION"}
    assert sum(counts.values()) == results["_cases"]["n"]
    for method in ("constant", "baro", "nsigma", "mechanism"):
        by_fault = results["_by_fault"][method]
        overall = constant if method == "constant" else results[f"{method}.AC@1"]["value"]
        weighted = sum(by_fault[kind]["AC@1"] * n for kind, n in counts.items()) / results["_cases"]["n"]
        assert weighted == pytest.approx(overall, abs=1e-12), method


@pytest.fixture(scope="module")
def variant_worlds(tmp_path_factory) -> dict[str, Path]:
    """The series world sampled under the shipped variants rca_easy, rca_medium and rca_hard."""
    from causalsynth.engine.interventions import load_variant

    root = tmp_path_factory.mktemp("rca-variants")
    config = load_config(overrides=[SMALL_BLOCKS, "telemetry.enabled=true"])
    variants = ("rca_easy", "rca_medium", "rca_hard")
    for variant in variants:
        sample_dataset(config=config, n_prs=N_PRS, seed=SEED, to=root / variant, intervention=load_variant(variant))
    return {variant: root / variant for variant in variants}


def _variant_cases(path: Path):
    """The incident cases of a world sampled under a variant, and the world's config."""
    from causalsynth.dataset.reading import Dataset
    from causalsynth.tasks.rca import read_cases, world_config

    return read_cases(Dataset(path)), world_config(Dataset(path))


def test_a_variant_that_sets_the_tick_length_is_read_and_validated_at_it(variant_worlds):
    """The rca_* variants set telemetry.tick_s (10 s, where the default's is 5 s): the ticks are 10 s
    apart, the cases and their RCAEval export read them so, and validate holds them to it."""
    from causalsynth.tasks.rca import read_cases

    hard = variant_worlds["rca_hard"]
    tables = read_tables(hard)
    points = (tables["service_timeseries"].merge(tables["service_metrics"][["service_metric_id", "run_id"]])
              .merge(tables["system_runs"][["run_id", "started_at"]], on="run_id", suffixes=("", "_run")))
    offset = (points.started_at - points.started_at_run).dt.total_seconds()
    assert (offset.to_numpy() == points.tick_index.to_numpy() * 10.0).all()
    assert read_cases(hard).tick_s == 10.0
    checks = {c.check: c for c in validate_dataset(hard, resample=0)}
    assert all(c.passed for c in checks.values()), [(n, c.observed) for n, c in checks.items() if not c.passed]
    assert checks["identity service_timeseries: ticks at their offsets in the run's window"].applicable


def test_on_rca_easy_baro_finds_every_kind_of_fault(variant_worlds):
    """rca_easy's series are quiet (no bursts, 3 % noise) and its faults stay at their service: BARO, which
    ranks rises (RCAEval's scores the largest robust z-score, not its size), ranks the root among its
    first services in every fault kind. Every kind raises a metric at its root: BEHAVIOR's dropped
    requests, the errors of those it refuses."""
    from causalsynth.tasks.rca import Cases, accuracy, baro

    cases, _ = _variant_cases(variant_worlds["rca_easy"])
    assert "BEHAVIOR" in set(cases.kind)
    for kind in sorted(set(cases.kind)):
        of_kind = Cases(**{k: v[cases.kind == kind] if isinstance(v, np.ndarray) else v
                           for k, v in cases.__dict__.items()})
        assert accuracy(of_kind, baro(of_kind))["Avg@5"] >= 0.9, kind


def test_the_mechanism_method_takes_out_rca_mediums_unrelated_event(variant_worlds):
    """rca_medium puts an unrelated latency event (x2, a minute, from any moment) at another service than
    the root in 30 % of runs: the mechanism-aware method finds it by its size and length at the labelled
    service in about half of them (in 10 % noise, a minute of a doubling is often within the tolerance
    of a burst's or the run's motion), and rarely finds one in a run without."""
    from causalsynth.models.delivery_commerce.rca import unrelated_event

    cases, world = _variant_cases(variant_worlds["rca_medium"])
    tm = world.get("telemetry")
    labelled = pd.Index(cases.services).get_indexer(cases.spurious)
    assert 0.2 < (labelled >= 0).mean() < 0.4 and (labelled != cases.root).all()
    found, _ = unrelated_event(cases, np.log1p(tm["spurious_size"]), tm["spurious_s"])
    event = labelled >= 0
    assert np.mean(found[event] == labelled[event]) > 0.4      # 0.51 at this seed
    assert np.mean(found[~event] >= 0) < 0.1                   # 0.04


def test_an_unrelated_event_near_the_onset_starts_two_ticks_to_spurious_near_off_it():
    """telemetry.spurious_near moves the unrelated event's start from anywhere in the window to 20-60 s
    (two ticks of 10 s to 10 % of 600 s) before or after the onset, half of them each side, never on its
    tick; without it the start is the uniform's share of the window, as before (the default's bytes are
    pinned: tests/test_bytes_pinned.py)."""
    from causalsynth.models.delivery_commerce.telemetry import unrelated_start

    u = (np.arange(2000) + 0.5) / 2000
    onset, window = 285.0, 600.0
    near = load_config(overrides=["telemetry.tick_s=10.0", "telemetry.spurious_near=0.1"]).params.telemetry
    off = np.asarray(unrelated_start(near, u, onset, window)) - onset
    assert np.all((np.abs(off) >= 20.0 - 1e-3) & (np.abs(off) <= 60.0 + 1e-3))
    assert np.mean(off < 0) == 0.5 and np.ptp(np.abs(off)) > 39.0
    anywhere = load_config(overrides=["telemetry.tick_s=10.0"]).params.telemetry
    np.testing.assert_allclose(np.asarray(unrelated_start(anywhere, u, onset, window)), window * u, rtol=1e-6)


def test_rca_hards_unrelated_event_is_the_incident_again_at_another_service(variant_worlds):
    """rca_hard gives every incident run an unrelated event at another service: the incident itself,
    1.25 times its size (telemetry.spurious_mimic), from two to six ticks before or after its onset. At
    the window's end both are under way, so the metric the root moved most moved at the event's service
    too, the same way, at least as much; BARO takes it for the root, the mechanism-aware method mostly
    does not."""
    from causalsynth.models.delivery_commerce.rca import mechanism
    from causalsynth.tasks.rca import accuracy, baro

    cases, world = _variant_cases(variant_worlds["rca_hard"])
    labelled = pd.Index(cases.services).get_indexer(cases.spurious)
    assert len(cases) > 500 and (labelled >= 0).all() and (labelled != cases.root).all()
    with np.errstate(divide="ignore", invalid="ignore"):
        logs = np.log(cases.series)
    change = np.nanmean(logs[..., -10:], -1) - np.nanmean(logs[..., :10], -1)                   # (C, S, M)
    at = np.arange(len(cases))
    moved = np.nanargmax(np.abs(change[at, cases.root]), -1)
    root, event = change[at, cases.root, moved], change[at, labelled, moved]
    assert np.mean((np.sign(event) == np.sign(root)) & (np.abs(event) > 0.8 * np.abs(root))) > 0.9
    assert accuracy(cases, baro(cases))["AC@1"] < 0.35
    assert accuracy(cases, mechanism(cases, world))["AC@1"] > 0.75


def test_a_fault_the_model_names_no_rcaeval_fault_for_is_one_clear_error(worlds, tmp_path, monkeypatch):
    from dataclasses import replace

    from causalsynth.dataset.reading import Dataset
    from causalsynth.errors import ConfigError
    from causalsynth.tasks.rcaeval import write_rcaeval

    model = Dataset(worlds["series"]).config.model
    faults = {k: v for k, v in model.INCIDENTS.faults.items() if k != "REGRESSION"}
    monkeypatch.setattr(model, "INCIDENTS", replace(model.INCIDENTS, faults=faults))
    with pytest.raises(ConfigError, match="names no RCAEval fault for REGRESSION"):
        write_rcaeval(worlds["series"], tmp_path / "cases")
    assert not (tmp_path / "cases").exists()


@pytest.mark.parametrize("args, words", [
    (["export", "{plain}", "--format", "rcaeval"], "sample it with --series"),
    (["export", "{series}", "--format", "rcaeval,csv"], "--format rcaeval"),
    (["evaluate", "{plain}", "--tasks", "root_cause"], "sample it with --series"),
    (["sample", "--n-prs", "5", "--out", "{tmp}/x", "--series", "--set", "telemetry.onset.from=0.9"],
     "telemetry.onset"),
    (["sample", "--n-prs", "5", "--out", "{tmp}/x", "--series", "--set", "telemetry.faults.ramp=[DISK_FULL]"],
     "telemetry.faults.ramp: 'DISK_FULL' is not one of"),
    (["sample", "--n-prs", "5", "--out", "{tmp}/x", "--set", "services.notification.error_rate=0.2"],
     "services.notification.error_rate: with regression.effects.error_rate_increase"),
])
def test_bad_input(worlds, tmp_path, args, words):
    args = [a.format(plain=worlds["plain"], series=worlds["series"], tmp=tmp_path) for a in args]
    result = runner.invoke(app, args)
    assert result.exit_code == 2 and words in result.output, result.output
    assert not (tmp_path / "x").exists() and not (worlds["plain"] / "rcaeval").exists()
