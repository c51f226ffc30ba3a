"""Traces, spans and log lines (`sample --series --traces --logs`), the propagation labels of
`--counterfactual`, and the RE2 and OTLP layouts: on real samples, loaded by RCAEval's own methods and
parsed by OpenTelemetry's own protobuf messages."""

from __future__ import annotations

import base64
import json
import warnings
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
from conftest import SMALL_BLOCKS, read_tables, rewrite
from typer.testing import CliRunner

from causalsynth.cli import app
from causalsynth.config.loading import load_config
from causalsynth.dataset.manifest import read_manifest
from causalsynth.engine.interventions import Intervention
from causalsynth.jobs.sample import sample_dataset, sample_twin
from causalsynth.validate.quality import validate_dataset

runner = CliRunner()
N_PRS = 60
SEED = 5
TRACED = ["telemetry.enabled=true", "telemetry.traces.enabled=true", "telemetry.logs.enabled=true"]
METRICS = ["latency_ms", "p95_latency_ms", "request_rate", "error_rate", "cpu_usage", "memory_usage", "disk_usage"]


@pytest.fixture(scope="module")
def traced(tmp_path_factory) -> Path:
    out = tmp_path_factory.mktemp("traces") / "traced"
    sample_dataset(config=load_config(overrides=[SMALL_BLOCKS, *TRACED]), n_prs=N_PRS, seed=SEED, to=out)
    return out


@pytest.fixture(scope="module")
def tables(traced) -> dict[str, pd.DataFrame]:
    return read_tables(traced)


@pytest.fixture(scope="module")
def spans(tables) -> pd.DataFrame:
    """Every span with its run's incident and its service's series value at the trace's tick."""
    t = tables
    runs = t["system_runs"][["run_id", "started_at", "root_cause_service", "fault_kind", "fault_onset_s",
                             "fault_operation"]].rename(
        columns={"started_at": "run_at"})
    out = t["trace_spans"].merge(t["traces"][["trace_id", "run_id", "started_at"]].rename(
        columns={"started_at": "trace_at"}), on="trace_id").merge(runs, on="run_id")
    out["tick_index"] = ((out.trace_at - out.run_at).dt.total_seconds() // 5.0).astype(int)
    series = t["service_timeseries"].merge(t["service_metrics"][["service_metric_id", "run_id", "service_name"]],
                                           on="service_metric_id")[["run_id", "service_name", "tick_index",
                                                                    "latency_ms", "error_rate"]]
    out = out.merge(series, on=["run_id", "service_name", "tick_index"], how="left")
    out["service_name"] = out.service_name.astype(str)
    out["status"] = out.status.astype(str)
    return out


def test_traces_and_logs_pass_validate(traced, tables):
    report = validate_dataset(traced)
    checks = {c.check: c for c in report}
    assert all(c.passed for c in report), [(c.check, c.observed) for c in report if not c.passed]
    for name in ("reference trace_spans.parent_span_id → trace_spans", "tree trace_spans.parent_span_id",
                 "reference trace_logs.span_id → trace_spans", "time order trace_spans ≤ trace_logs by span_id",
                 "foreign key trace_logs.trace_id → traces", "rows per parent traces → trace_spans"):
        assert checks[name].passed
    n_runs = len(tables["system_runs"])
    assert len(tables["traces"]) == n_runs * 20 and len(tables["trace_spans"]) == n_runs * 20 * 7


def test_a_span_tree_is_the_call_graph_and_callers_enclose_their_calls(spans):
    by_id = spans.set_index("span_id")
    child = spans[spans.parent_span_id.notna()]
    parent = by_id.loc[child.parent_span_id.astype(np.int64)]
    # gateway calls user, product, order; order calls user, product, notification: 7 spans a trace.
    calls = set(zip(parent.service_name.astype(str), child.service_name.astype(str)))
    assert calls == {("gateway", "user"), ("gateway", "product"), ("gateway", "order"), ("order", "user"),
                     ("order", "product"), ("order", "notification")}
    assert (child.trace_id.to_numpy() == parent.trace_id.to_numpy()).all()
    assert (child.started_at.to_numpy() >= parent.started_at.to_numpy()).all()
    def end_ms(f):  # the start is written to the millisecond
        return (f.started_at - pd.Timestamp(0, tz="UTC")).dt.total_seconds().to_numpy() * 1e3 + f.duration_ms.to_numpy()

    assert (end_ms(child) <= end_ms(parent) + 1.0).all()
    calls_total = child.groupby("parent_span_id").duration_ms.sum()
    assert (by_id.loc[calls_total.index.astype(np.int64), "duration_ms"].to_numpy() > calls_total.to_numpy()).all()


def test_spans_read_their_service_series_at_the_tick(spans):
    leaves = spans[spans.service_name.isin(["user", "product", "notification"])]
    ratio = np.log(leaves.duration_ms / leaves.latency_ms)
    assert abs(ratio.median()) < 0.03 and abs(ratio.std() - 0.3) < 0.03     # telemetry.traces.span_sd
    # Failures follow the series' error rate at the tick (own failures: leaves have no calls).
    assert abs((leaves.status == "ERROR").mean() - leaves.error_rate.mean()) < 0.3 * leaves.error_rate.mean() + 2e-3


def test_a_fault_shows_in_its_service_spans_from_the_onset(spans):
    at_root = spans[(spans.service_name == spans.root_cause_service.astype(str))
                    & spans.fault_kind.astype(str).isin(["NETWORK_DELAY", "REGRESSION", "PERFORMANCE"])]
    assert len(at_root) > 200
    after = (at_root.trace_at - at_root.run_at).dt.total_seconds() >= at_root.fault_onset_s + 60
    before = (at_root.trace_at - at_root.run_at).dt.total_seconds() < at_root.fault_onset_s
    lift = np.log(at_root[after].duration_ms).mean() - np.log(at_root[before].duration_ms).mean()
    assert lift > 0.3


def test_a_fault_in_one_operation_fails_that_operation(tables, spans):
    config = load_config()
    runs = tables["system_runs"]
    labelled = runs.fault_operation.astype(str) != "NONE"
    assert (labelled == runs.fault_kind.astype(str).isin(config.get("telemetry.traces.one_operation"))).all()
    operations = config.get("telemetry.traces.operations")
    assert all(op in operations[service] for op, service in zip(runs.fault_operation[labelled].astype(str),
                                                                runs.root_cause_service[labelled].astype(str)))
    at_root = spans[(spans.service_name == spans.root_cause_service.astype(str))
                    & (spans.fault_operation.astype(str) != "NONE")
                    & ((spans.trace_at - spans.run_at).dt.total_seconds() >= spans.fault_onset_s)]
    in_op = at_root.operation.astype(str) == at_root.fault_operation.astype(str)
    failed = at_root.status == "ERROR"
    assert in_op.sum() > 100 and (~in_op).sum() > 100
    assert failed[in_op].mean() > 4 * failed[~in_op].mean(), (failed[in_op].mean(), failed[~in_op].mean())


def test_log_lines_follow_their_spans_and_the_fault(tables, spans):
    t = tables
    logs = t["trace_logs"].merge(spans[["span_id", "status", "service_name", "root_cause_service", "fault_kind",
                                        "fault_onset_s", "run_at", "operation", "fault_operation"]].rename(
        columns={"service_name": "span_service"}), on="span_id")
    level = logs.level.astype(str)
    assert (logs.service_name.astype(str) == logs.span_service).all()
    outcome = logs[level != "INFO"]
    assert not outcome.span_id.duplicated().any()          # at most one outcome line a span
    assert ((level[level != "INFO"] == "ERROR") == (outcome.status == "ERROR")).all()
    failed = set(spans.span_id[spans.status == "ERROR"])
    assert failed == set(outcome.span_id[outcome.level.astype(str) == "ERROR"])
    config = load_config()
    faults = config.get("telemetry.logs.faults")
    generic = {config.get(f"telemetry.logs.{k}") for k in ("request", "slow", "error", "upstream_error")}
    specific = logs[~logs.template.astype(str).isin(generic)]
    assert len(specific) > 20
    assert (specific.span_service == specific.root_cause_service.astype(str)).all()
    assert (specific.template.astype(str) == specific.fault_kind.astype(str).map(faults)).all()
    # A fault in one operation's code names itself in that operation's lines only.
    in_code = specific.fault_operation.astype(str) != "NONE"
    assert in_code.sum() > 5
    assert (specific.operation[in_code].astype(str) == specific.fault_operation[in_code].astype(str)).all()
    # Written from the onset on: the trace starts at or after it, the line after its span's start.
    assert ((specific.logged_at - specific.run_at).dt.total_seconds() >= specific.fault_onset_s).all()


def test_traces_are_deterministic(traced, tmp_path):
    again = tmp_path / "again"
    sample_dataset(config=load_config(overrides=[SMALL_BLOCKS, *TRACED]), n_prs=N_PRS, seed=SEED, to=again)
    for table in ("traces", "trace_spans", "trace_logs"):
        ours = [p["sha256"] for p in read_manifest(traced)["tables"][table]["parts"]]
        assert ours == [p["sha256"] for p in read_manifest(again)["tables"][table]["parts"]]


@pytest.mark.parametrize(("args", "says"), [
    (["--traces"], "telemetry.traces.enabled: traces are read off the series"),
    (["--series", "--logs"], "telemetry.logs.enabled: log lines are written by spans"),
    (["--counterfactual"], "telemetry.counterfactual: is each series value without the run's fault"),
    (["--series", "--traces", "--set", "telemetry.traces.error_propagation=1.5"], "error_propagation"),
    (["--series", "--traces", "--set", "telemetry.traces.operations.user=[]"],
     "telemetry.traces.operations.user: needs at least one operation"),
])
def test_bad_trace_options_are_one_clear_error(tmp_path, args, says):
    out = tmp_path / "out"
    result = runner.invoke(app, ["sample", "--n-prs", "10", "--out", str(out), *args])
    assert result.exit_code == 2 and says in result.output, result.output
    assert not out.exists()


@pytest.mark.parametrize(("table", "column", "value", "failing"), [
    ("trace_spans", "parent_span_id", 9, "reference trace_spans.parent_span_id → trace_spans"),   # another trace
    ("trace_spans", "parent_span_id", 6, "tree trace_spans.parent_span_id"),                     # a later span
    ("trace_logs", "span_id", 10**9, "reference trace_logs.span_id → trace_spans"),
])
def test_validate_finds_broken_references(traced, tmp_path, table, column, value, failing):
    import shutil

    import pyarrow as pa

    copy = tmp_path / "copy"
    shutil.copytree(traced, copy)

    def change(t: pa.Table) -> pa.Table:
        values = t.column(column).to_pylist()
        values[1] = value                               # span 2 (parent 1), or the first log line
        return t.set_column(t.schema.get_field_index(column), t.schema.field(column), pa.array(values, pa.int64()))

    change.on_arrow = True
    rewrite(copy, table, change)
    checks = {c.check: c for c in validate_dataset(copy, resample=0)}
    assert not checks[failing].passed


@pytest.fixture(scope="module")
def re2(traced, tmp_path_factory) -> Path:
    out = tmp_path_factory.mktemp("re2") / "re2"
    result = runner.invoke(app, ["export", str(traced), "--format", "re2", "--out", str(out)])
    assert result.exit_code == 0, result.output
    return out


@pytest.mark.slow
def test_re2_cases_run_through_rcaeval_multi_source_methods(re2):
    from RCAEval.e2e.baro import mmbaro, mmnsigma
    from RCAEval.e2e.circa import mmcirca
    from RCAEval.e2e.tracerca import tracerca
    from RCAEval.utility import read_logs, read_metrics, read_traces

    out = re2
    truth = json.loads((out / "cases.json").read_text())["cases"]
    assert len(truth) > 20
    services = set(load_config().get("services"))
    ran = 0
    for case in truth[:3]:
        folder = out / case["case"]
        assert json.loads((folder / "labels.json").read_text()) == case
        inject = int((folder / "inject_time.txt").read_text())
        metric = pd.read_csv(folder / "simple_metrics.csv")
        assert (np.diff(metric.time) == 1).all() and metric.time.iloc[0] < inject <= metric.time.iloc[-1]
        assert read_metrics(folder).shape[1] == metric.shape[1]
        traces, logs = read_traces(folder), read_logs(folder)
        assert {"traceID", "spanID", "parentSpanID", "startTime", "duration", "statusCode"} <= set(traces.columns)
        assert set(logs.container_name) <= services
        data = {name: pd.read_csv(folder / f"{name}.csv") for name in ("logts", "tracets_err", "tracets_lat")}
        data["metric"] = metric.ffill().fillna(0)
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            for method in (mmbaro, mmnsigma, mmcirca):
                ranks = method(data, inject, dataset="re2-tt", anomalies=None, dk_select_useful=False, sli=None,
                               verbose=False, n_iter=metric.shape[1] - 1)["ranks"]
                assert {r.split("_")[0] for r in ranks} <= services and len(ranks) > 10
            try:
                ranks = tracerca(pd.read_csv(folder / "traces.csv"), inject * 1_000_000, dataset="re2-tt")["ranks"]
            except KeyError:  # RCAEval's tracerca needs every operation seen before the onset
                continue
        assert {r.split("_")[0] for r in ranks} <= services
        ran += 1
    assert ran >= 1


@pytest.mark.slow
def test_the_croissant_card_lists_every_case_record(re2, tables):
    import itertools

    import mlcroissant as mlc

    card = mlc.Dataset(jsonld=str(re2 / "croissant.json"))
    truth = json.loads((re2 / "cases.json").read_text())["cases"]
    incident_runs = {case["run_id"] for case in truth}
    traces = tables["traces"][tables["traces"].run_id.isin(incident_runs)]
    spans = tables["trace_spans"][tables["trace_spans"].trace_id.isin(traces.trace_id)]
    records = list(card.records("spans"))
    assert len(records) == len(spans)
    first = records[0]
    assert first["spans/case"].decode().endswith("/traces.csv") and len(first["spans/traceID"]) == 32
    metrics = next(iter(card.records("metrics")))
    assert {"metrics/time", "metrics/gateway_latency", "metrics/notification_mem"} <= set(metrics)
    assert next(itertools.islice(card.records("logs"), 0, None))["logs/level"] in (b"INFO", b"WARN", b"ERROR")


def _hex_to_base64(node):
    """OTLP's JSON writes ids in hexadecimal, protobuf's JSON mapping reads bytes as base64."""
    if isinstance(node, dict):
        return {k: (base64.b64encode(bytes.fromhex(v)).decode() if k in ("traceId", "spanId", "parentSpanId")
                    else _hex_to_base64(v)) for k, v in node.items()}
    if isinstance(node, list):
        return [_hex_to_base64(v) for v in node]
    return node


def test_otlp_files_parse_as_opentelemetry_requests(traced, tables, tmp_path):
    from google.protobuf import json_format
    from opentelemetry.proto.collector.logs.v1.logs_service_pb2 import ExportLogsServiceRequest
    from opentelemetry.proto.collector.metrics.v1.metrics_service_pb2 import ExportMetricsServiceRequest
    from opentelemetry.proto.collector.trace.v1.trace_service_pb2 import ExportTraceServiceRequest

    out = tmp_path / "otlp"
    result = runner.invoke(app, ["export", str(traced), "--format", "otlp", "--out", str(out)])
    assert result.exit_code == 0, result.output
    truth = json.loads((out / "cases.json").read_text())["cases"]
    spans_per_run = tables["trace_spans"].merge(tables["traces"][["trace_id", "run_id"]]).groupby("run_id").size()
    logs_per_run = tables["trace_logs"].merge(tables["traces"][["trace_id", "run_id"]]).groupby("run_id").size()
    lines = {s: (out / f"{s}.jsonl").read_text().splitlines() for s in ("traces", "metrics", "logs")}
    assert all(len(v) == len(truth) for v in lines.values())
    for case in truth[:10]:
        i = case["line"] - 1
        traces = json_format.Parse(json.dumps(_hex_to_base64(json.loads(lines["traces"][i]))),
                                   ExportTraceServiceRequest())
        found = [s for r in traces.resource_spans for ss in r.scope_spans for s in ss.spans]
        assert len(found) == spans_per_run[case["run_id"]]
        assert all(len(s.trace_id) == 16 and len(s.span_id) == 8 and s.end_time_unix_nano > s.start_time_unix_nano
                   for s in found)
        assert sum(not s.parent_span_id for s in found) == 20                 # a root per trace
        metrics = json_format.Parse(lines["metrics"][i], ExportMetricsServiceRequest())
        assert {r.resource.attributes[0].value.string_value for r in metrics.resource_metrics} == set(
            load_config().get("services"))
        assert all(len(m.gauge.data_points) == 60 for r in metrics.resource_metrics for sm in r.scope_metrics
                   for m in sm.metrics)
        logs = json_format.Parse(json.dumps(_hex_to_base64(json.loads(lines["logs"][i]))),
                                 ExportLogsServiceRequest())
        records = [rec for r in logs.resource_logs for sl in r.scope_logs for rec in sl.log_records]
        assert len(records) == logs_per_run.get(case["run_id"], 0)
        assert {rec.trace_id for rec in records} <= {s.trace_id for s in found}


@pytest.mark.slow
def test_rcabench_datapacks_load_and_rank_with_rcabench_platform(traced, tables, tmp_path):
    import polars as pl
    from rcabench_platform.v2.algorithms.rcaeval.baro import Baro
    from rcabench_platform.v2.algorithms.spec import AlgorithmArgs
    from rcabench_platform.v2.config import Config, current_config
    from rcabench_platform.v2.datasets.spec import get_datapack_labels, get_datapack_list
    from rcabench_platform.v2.graphs.sdg.build_.rcabench import load_inject_time
    from rcabench_platform.v2.sources.convert import validate_logs, validate_metrics, validate_traces

    out = tmp_path / "rcabench"
    result = runner.invoke(app, ["export", str(traced), "--format", "rcabench", "--out", str(out)])
    assert result.exit_code == 0, result.output
    truth = json.loads((out / "cases.json").read_text())["cases"]
    dataset = "rcabench_delivery_commerce"
    spans_per_run = tables["trace_spans"].merge(tables["traces"][["trace_id", "run_id"]]).groupby("run_id").size()
    logs_per_run = tables["trace_logs"].merge(tables["traces"][["trace_id", "run_id"]]).groupby("run_id").size()
    services = set(load_config().get("services"))
    config = Config(env_mode="test", data=out, output=tmp_path / "output", temp=tmp_path / "temp", base_url="")
    with current_config(config), warnings.catch_warnings():
        warnings.simplefilter("ignore")
        packs = get_datapack_list(dataset)
        assert sorted(packs) == sorted(case["case"].replace("/", "_") for case in truth)
        hits = 0
        for case in truth[:30]:
            pack = case["case"].replace("/", "_")
            folder = out / "data" / dataset / pack
            assert [(label.level, label.name) for label in get_datapack_labels(dataset, pack)] == [
                ("service", case["root_cause_service"])]
            assert int(load_inject_time(folder).timestamp()) == case["inject_time"]
            read = {f"{period}_{t}": pl.scan_parquet(folder / f"{period}_{t}.parquet")
                    for period in ("normal", "abnormal") for t in ("traces", "metrics", "logs", "metrics_histogram")}
            for period in ("normal", "abnormal"):
                validate_traces(read[f"{period}_traces"])
                validate_metrics(read[f"{period}_metrics"])
                validate_logs(read[f"{period}_logs"])
            inject = pd.Timestamp(case["inject_time"], unit="s", tz="UTC")
            for table in ("traces", "metrics", "logs", "metrics_histogram"):
                assert read[f"normal_{table}"].filter(pl.col("time") >= inject).select(pl.len()).collect().item() == 0
                assert read[f"abnormal_{table}"].filter(pl.col("time") < inject).select(pl.len()).collect().item() == 0
            rows = {t: sum(read[f"{p}_{t}"].select(pl.len()).collect().item() for p in ("normal", "abnormal"))
                    for t in ("traces", "logs", "metrics")}
            assert rows["traces"] == spans_per_run[case["run_id"]]
            assert rows["logs"] == logs_per_run.get(case["run_id"], 0)
            assert rows["metrics"] == 5 * len(METRICS) * 60   # every service, metric and tick (no gaps here)
            histogram = pl.concat([read["normal_metrics_histogram"], read["abnormal_metrics_histogram"]]).collect()
            assert histogram["count"].sum() == spans_per_run[case["run_id"]]
            ranks = Baro()(AlgorithmArgs(dataset=dataset, datapack=pack, input_folder=folder,
                                         output_folder=tmp_path / "output" / pack))
            assert {answer.name for answer in ranks} == services
            hits += ranks[0].name == case["root_cause_service"]
    assert hits >= 15   # RCABench's BARO finds most roots (a constant guess: about a quarter)


def test_span_layouts_need_the_traces(tmp_path):
    plain = tmp_path / "series"
    sample_dataset(config=load_config(overrides=[SMALL_BLOCKS, "telemetry.enabled=true"]), n_prs=10, seed=1, to=plain)
    for layout in ("re2", "rcabench", "otlp"):
        result = runner.invoke(app, ["export", str(plain), "--format", layout])
        assert result.exit_code == 2 and "has no trace_spans table; sample it with --series --traces" in result.output
        assert not (plain.parent / f"series-{layout}").exists() and not (plain / layout).exists()


@pytest.fixture(scope="module")
def counterfactual(tmp_path_factory) -> dict[str, Path]:
    """The traced world's seed with the counterfactual columns (series and spans), and its twin without
    regressions."""
    root = tmp_path_factory.mktemp("counterfactual")
    config = load_config(overrides=[SMALL_BLOCKS, *TRACED, "telemetry.counterfactual=true"])
    sample_dataset(config=config, n_prs=N_PRS, seed=SEED, to=root / "world")
    sample_twin(factual_dir=root / "world", to=root / "twin",
                intervention=Intervention(name="do", do={"has_performance_regression": "false"}))
    return {"world": root / "world", "twin": root / "twin"}


def _labels(world: Path, out: Path) -> list[dict]:
    result = runner.invoke(app, ["export", str(world), "--format", "rcaeval", "--out", str(out)])
    assert result.exit_code == 0, result.output
    return json.loads((out / "cases.json").read_text())["cases"]


@pytest.fixture(scope="module")
def labelled(counterfactual, tmp_path_factory) -> list[dict]:
    return _labels(counterfactual["world"], tmp_path_factory.mktemp("labels") / "rcaeval")


@pytest.fixture(scope="module")
def concurrent(tmp_path_factory) -> tuple[Path, list[dict]]:
    """A world where a third of the incidents have a second root cause, and its labelled cases."""
    world = tmp_path_factory.mktemp("concurrent") / "world"
    sample_dataset(config=load_config(overrides=[SMALL_BLOCKS, "telemetry.enabled=true", "telemetry.counterfactual=true",
                                                 "telemetry.faults.concurrent.enabled=true"]),
                   n_prs=N_PRS, seed=SEED, to=world)
    return world, _labels(world, world.parent / "rcaeval")


def _ticks(directory: Path) -> pd.DataFrame:
    t = read_tables(directory)
    return t["service_timeseries"].merge(t["service_metrics"][["service_metric_id", "run_id", "service_name"]],
                                         on="service_metric_id").merge(
        t["system_runs"][["run_id", "fault_kind", "fault_onset_s", "is_anomalous"]], on="run_id")


def test_counterfactual_columns_leave_the_factual_series_as_they_were(counterfactual, traced):
    """The same values up to float32 rounding: in the larger program XLA may round a value of the injected
    faults' path in its last bit (about one value in a thousand, by 2e-7)."""
    with_cf, without_cf = (read_tables(d)["service_timeseries"] for d in (counterfactual["world"], traced))
    assert set(with_cf.columns) - set(without_cf.columns) == {f"{m}_without_fault" for m in METRICS}
    assert with_cf[["point_id", "service_metric_id", "started_at", "tick_index"]].equals(
        without_cf[["point_id", "service_metric_id", "started_at", "tick_index"]])
    for m in METRICS:
        np.testing.assert_allclose(with_cf[m], without_cf[m], rtol=1e-6)
        assert (with_cf[m] != without_cf[m]).mean() < 0.005


def test_the_counterfactual_is_the_twins_series(counterfactual):
    """A regression's counterfactual is the twin without it, tick for tick, in the runs where the regression
    is the only cause that changes: do(regression = false) also changes whether a run is anomalous (and so
    its snapshot) or gets an injected fault."""
    world, twin = _ticks(counterfactual["world"]), _ticks(counterfactual["twin"])
    both = world.merge(twin, on="point_id", suffixes=("", "_twin"))
    regressed = both[(both.fault_kind.astype(str) == "REGRESSION") & (both.fault_kind_twin.astype(str) == "NONE")
                     & ~both.is_anomalous]
    assert regressed.run_id.nunique() > 20
    for m in METRICS:
        np.testing.assert_allclose(regressed[f"{m}_without_fault"], regressed[f"{m}_twin"], rtol=2e-6)
    calm = both[both.fault_kind.astype(str) == "NONE"]
    for m in METRICS:                                 # no fault: the counterfactual is the factual, bit for bit
        assert (calm[m] == calm[f"{m}_without_fault"]).all()


def test_propagation_labels_agree_with_the_two_worlds(counterfactual, labelled):
    kinds = {case["fault_kind"] for case in labelled}
    assert {"REGRESSION", "NETWORK_DELAY", "CPU_HOG", "PACKET_LOSS"} <= kinds
    _check_labels(counterfactual["world"], labelled)


def test_propagation_labels_hold_beside_rca_hards_echo_of_the_incident(tmp_path):
    """rca_hard repeats each incident at another service (telemetry.spurious_mimic): an unrelated event, so
    the world without the fault keeps it, and that service is off every labelled path unless the fault
    reaches it."""
    from causalsynth.engine.interventions import load_variant

    world = tmp_path / "world"
    # The counterfactual world's structure: a variant's priors are numbers, so its sampler is compiled already.
    sample_dataset(config=load_config(overrides=[SMALL_BLOCKS, *TRACED, "telemetry.counterfactual=true"]),
                   n_prs=N_PRS, seed=SEED, to=world, intervention=load_variant("rca_hard"))
    labelled = _labels(world, tmp_path / "rcaeval")
    echoed = [case for case in labelled if case["spurious_event_service"] != "NONE"]
    assert len(echoed) == len(labelled) > 20
    _check_labels(world, labelled)


def test_two_root_causes_are_both_labelled(concurrent):
    world, labelled = concurrent
    two = [case for case in labelled if len(case["root_causes"]) == 2]
    assert 0.2 < len(two) / len(labelled) < 0.4                      # telemetry.faults.concurrent.rate 0.3
    faults = set(load_config().get("telemetry.faults.kind.shares"))
    for case in two:
        first, second = case["root_causes"]
        assert first == {"service": case["root_cause_service"], "fault_kind": case["fault_kind"]}
        assert second["service"] != first["service"] and second["fault_kind"] in faults
    assert all(len(case["root_causes"]) == 1 for case in labelled if case not in two)
    _check_labels(world, labelled)


def _check_labels(world: Path, labelled: list[dict]) -> None:
    """Each label against the two worlds: effects, what moved, unaffected services unchanged bit for bit,
    paths along the calls from a root cause (or through the run's load, for a regression)."""
    ticks = _ticks(world)
    ticks["service_name"] = ticks.service_name.astype(str)
    names = load_config().model.INCIDENTS.metrics
    calls = load_config().get("service.depends_on")
    for case in labelled:
        run = ticks[ticks.run_id == case["run_id"]]
        onset_tick = (case["inject_time"] - case["window_start"]) / case["tick_s"]
        roots = [r["service"] for r in case.get("root_causes", [{"service": case["root_cause_service"]}])]
        by_service = {e["service"]: e for e in case["propagation"]}
        for root in roots:
            assert by_service[root]["affected"] and [root] in by_service[root]["paths"]
        for service, rows in run.groupby("service_name"):
            label = by_service[service]
            after = rows[rows.tick_index >= onset_tick]
            clean = rows[rows.tick_index < onset_tick]     # before the inject time: as without the fault
            assert all((clean[m] == clean[f"{m}_without_fault"]).all() for m in METRICS), (case["case"], service)
            for m in METRICS:
                entry = label["metrics"][names[m]]
                factual, without = after[m].astype(np.float64).mean(), after[f"{m}_without_fault"].astype(np.float64).mean()
                assert entry["effect"] == pytest.approx(factual - without, rel=1e-6, abs=1e-9)
                assert entry["moved"] == bool((rows[m] != rows[f"{m}_without_fault"]).any())
            if not label["affected"]:             # off every path: the same bits in both worlds
                assert all((rows[m] == rows[f"{m}_without_fault"]).all() for m in METRICS)
            for path in label["paths"]:
                assert path[0] in roots and path[-1] == service
                for callee, caller in zip(path, path[1:]):
                    assert callee in calls.get(caller, []) or "run" in (callee, caller)
        if case["fault_kind"] not in ("REGRESSION",):
            # An injected fault or an anomaly event reaches only the services its calls carry it to.
            reached = {s for s, e in by_service.items() if e["affected"]}
            assert all("run" not in p for s in reached for p in by_service[s]["paths"])


def test_span_operations_are_labelled_from_the_two_worlds(counterfactual, tmp_path):
    world = counterfactual["world"]
    result = runner.invoke(app, ["export", str(world), "--format", "re2", "--out", str(tmp_path / "re2")])
    assert result.exit_code == 0, result.output
    truth = json.loads((tmp_path / "re2" / "cases.json").read_text())["cases"]
    t = read_tables(world)
    spans = t["trace_spans"].merge(t["traces"][["trace_id", "run_id"]], on="trace_id")
    spans["service_name"], spans["operation"] = spans.service_name.astype(str), spans.operation.astype(str)
    calls = load_config().get("service.depends_on")

    def calls_into(caller: str, callee: str) -> bool:
        return any(c == callee or calls_into(c, callee) for c in calls.get(caller, []))

    checked, by_run = 0, dict(tuple(spans.groupby("run_id")))
    for case in truth:
        run = by_run.get(case["run_id"], spans.iloc[:0])
        onset = pd.Timestamp(case["inject_time"], unit="s", tz="UTC")
        after = run[run.started_at >= onset]
        roots = [r["service"] for r in case.get("root_causes", [{"service": case["root_cause_service"]}])]
        for entry in case["propagation"]:
            own = run[run.service_name == entry["service"]]
            if not entry["affected"]:     # the fault did not reach it: its spans' own time is unchanged
                leaves = own[~own.span_id.isin(run.parent_span_id.dropna())]
                assert (leaves.duration_ms == leaves.duration_ms_without_fault).all()
                # ... and neither is any span of it that waits on no root cause (a span lasts as long as
                # its callees', so a caller's spans move even where its series do not)
                if not any(calls_into(entry["service"], r) for r in roots):
                    assert not any(op["moved"] for op in entry["operations"].values()), (case["case"], entry)
            for operation, label in entry["operations"].items():
                rows = after[(after.service_name == entry["service"]) & (after.operation == operation)]
                assert label["spans"] == len(rows)
                assert label["effect_ms"] == pytest.approx(
                    (rows.duration_ms.astype(float) - rows.duration_ms_without_fault.astype(float)).mean(), abs=1e-6)
                checked += 1
    root_moved = [op["moved"] for case in truth for e in case["propagation"] if e["service"] == case["root_cause_service"]
                  and case["fault_kind"] in ("NETWORK_DELAY", "REGRESSION") for op in e["operations"].values()]
    assert checked > 500 and np.mean(root_moved) > 0.9
