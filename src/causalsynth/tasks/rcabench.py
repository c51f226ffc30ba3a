"""`causalsynth export DATASET --format rcabench`: incident cases as RCABench datapacks.

RCABench's platform (``rcabench-platform``) keeps a dataset as an index and labels beside one folder
per case, its *datapack*, of long-format Parquet tables split at the fault's injection into a normal
and an abnormal period, as its converter writes them:

- ``meta/<dataset>/index.parquet``: ``dataset``, ``datapack``; ``meta/<dataset>/labels.parquet``:
  ``dataset``, ``datapack``, ``gt.level`` (``service``) and ``gt.name``, a row per root cause;
- ``data/<dataset>/<datapack>/``, for ``normal`` and ``abnormal`` each:

  - ``<period>_metrics.parquet``: ``time``, ``metric`` (the series' column), ``value``,
    ``service_name``, a row per service, metric and tick, and the converter's Kubernetes resource
    attributes (``attr.k8s.pod.name`` …), null: a sampled world runs on no cluster;
  - ``<period>_metrics_histogram.parquet``: per service and tick, the tick's spans as OpenTelemetry's
    ``http.server.request.duration`` histogram summarises them: ``count``, ``sum``, ``min``,
    ``max`` (seconds);
  - ``<period>_traces.parquet``: ``time``, ``trace_id``, ``span_id``, ``parent_span_id`` (empty at a
    root), ``service_name``, ``span_name`` (the operation), ``duration`` (ns, unsigned),
    ``attr.status_code`` (0 unset, 2 error);
  - ``<period>_logs.parquet``: ``time``, ``trace_id``, ``span_id``, ``service_name``, ``level``,
    ``message`` (the template);

  and ``env.json`` (``NORMAL_START`` … ``ABNORMAL_END``, Unix seconds, from which the platform reads
  the injection time), ``injection.json`` (``fault_type``, ``ground_truth``: a ``service`` list per
  root cause) and ``labels.json``, the case's full ground truth as the RE2 export writes it.

Times are nanoseconds, UTC. Datapacks are named ``<service>_<fault>_<n>`` (the RE1 and RE2 cases'
folders, flattened). The dataset is ``rcabench_<model>``: the platform picks its loaders for this
layout by the ``rcabench`` prefix. ``cases.json`` at the top holds every case's ground truth.
RCABench's collection also keeps Kubernetes state (``k8s.json``), counter metrics
(``*_metrics_sum``) and trace-id timestamps (``*_trace_id_ts``); a sampled world has none of them,
so they are not written.
"""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pandas as pd
import pyarrow as pa
import pyarrow.parquet as pq

from causalsynth.dataset.reading import Dataset
from causalsynth.dataset.staging import staged_directory
from causalsynth.tasks.rca import roots
from causalsynth.tasks.rcaeval import OWNED_CASES, incident_cases, inject_time, labelled_case, write_index
from causalsynth.tasks.spans import by_run, hex_ids, read_spans

STATUS_CODE = {"OK": 0, "ERROR": 2}
HISTOGRAM = "http.server.request.duration"
TIME = pa.timestamp("ns", tz="UTC")
# The resource attributes RCABench's converter gives every metric row and its loaders read first for a
# row's service: a sampled world runs on no cluster, so they are null and ``service_name`` names it.
K8S_ATTRIBUTES = [f"attr.k8s.{a}.name" for a in ("node", "namespace", "statefulset", "deployment", "replicaset",
                                                 "pod", "container")]


def write_rcabench(directory: str | Path, out: str | Path | None = None, force: bool = False,
                   on_case=lambda path: None) -> Path:
    """Write every incident run of the dataset (sampled with traces and logs) as an RCABench datapack."""
    ds = Dataset(directory)
    cases, names, truth = incident_cases(ds)
    spans, logs = read_spans(ds, cases.run_id)
    incidents = ds.config.model.INCIDENTS
    run_key = ds.manifest["tables"][incidents.runs]["key"]
    spans_of, logs_of = by_run(spans, run_key), by_run(logs, run_key)
    dataset = f"rcabench_{ds.config.model.NAME}"
    n_ticks = cases.series.shape[-1]
    window_s = int(round(n_ticks * cases.tick_s))
    out = out if out else ds.beside("rcabench")
    index, labels = [], []
    with staged_directory(out, force=force, what="causalsynth's RCABench datapacks",
                          owned=OWNED_CASES) as staging:
        for c, name in enumerate(names):
            datapack = name.replace("/", "_")
            folder = staging / "data" / dataset / datapack
            folder.mkdir(parents=True)
            start, inject = int(cases.started_at[c]), inject_time(cases, c)
            run = int(cases.run_id[c])
            run_spans, run_logs = spans_of(run), logs_of(run)
            tick_ns = (start + np.arange(n_ticks) * cases.tick_s) * 1e9
            for file, (time_ns, frame) in {
                    "metrics.parquet": _metrics(cases.series[c], cases.services, cases.metrics, tick_ns),
                    "metrics_histogram.parquet": _histogram(run_spans, start, cases.tick_s, n_ticks),
                    "traces.parquet": _traces(run_spans), "logs.parquet": _logs(run_logs)}.items():
                abnormal = time_ns >= inject * 1_000_000_000
                pq.write_table(frame.filter(pa.array(~abnormal)), folder / f"normal_{file}")
                pq.write_table(frame.filter(pa.array(abnormal)), folder / f"abnormal_{file}")
            (folder / "env.json").write_text(json.dumps({
                "NORMAL_START": str(start), "NORMAL_END": str(inject), "ABNORMAL_START": str(inject),
                "ABNORMAL_END": str(start + window_s), "TIMEZONE": "UTC"}, indent=1) + "\n")
            causes = roots(cases, c)
            (folder / "injection.json").write_text(json.dumps({
                "fault_type": truth[c]["fault_kind"], "start_time": inject,
                "ground_truth": [{"service": [service], "fault_kind": kind} for service, kind in causes]},
                indent=1) + "\n")
            truth[c] = labelled_case(truth[c], cases, c, run_spans, incidents.counterfactual)
            (folder / "labels.json").write_text(json.dumps(truth[c], indent=1) + "\n")
            index.append({"dataset": dataset, "datapack": datapack})
            labels += [{"dataset": dataset, "datapack": datapack, "gt.level": "service", "gt.name": service}
                       for service in dict.fromkeys(service for service, _ in causes)]
            on_case(folder)
        meta = staging / "meta" / dataset
        meta.mkdir(parents=True)
        order = ["dataset", "datapack"]
        pq.write_table(pa.Table.from_pandas(pd.DataFrame(index, columns=order).sort_values(order),
                                            preserve_index=False), meta / "index.parquet")
        label_columns = [*order, "gt.level", "gt.name"]
        pq.write_table(pa.Table.from_pandas(pd.DataFrame(labels, columns=label_columns).sort_values(label_columns),
                                            preserve_index=False), meta / "labels.parquet")
        write_index(staging, ds, truth, layout="RCABench", rcabench_dataset=dataset)
    return Path(out)


def _time(ns) -> pa.Array:
    return pa.array(np.asarray(ns, np.int64), pa.int64()).cast(TIME)


def _metrics(series: np.ndarray, services, metrics, tick_ns: np.ndarray) -> tuple[np.ndarray, pa.Table]:
    """One case's series ``(S, M, T)`` in long format, a row per present value."""
    n_svc, n_metrics, n_ticks = series.shape
    present = np.isfinite(series).ravel()
    time_ns = np.broadcast_to(tick_ns, series.shape).ravel()[present].astype(np.int64)
    return time_ns, pa.table({
        "time": _time(time_ns),
        "metric": pa.array(np.repeat(np.tile(np.asarray(metrics, object), n_svc), n_ticks)[present], pa.string()),
        "value": pa.array(series.ravel()[present], pa.float64()),
        "service_name": pa.array(np.repeat(np.asarray(services, object), n_metrics * n_ticks)[present], pa.string()),
        **{column: pa.nulls(int(present.sum()), pa.string()) for column in K8S_ATTRIBUTES}})


def _histogram(spans: pd.DataFrame, start: int, tick_s: float, n_ticks: int) -> tuple[np.ndarray, pa.Table]:
    """Per service and tick, the spans that start in it as a duration histogram's summary (seconds)."""
    tick = np.clip((spans["started_at_ms"].to_numpy() / 1000.0 - start) // tick_s, 0, n_ticks - 1).astype(np.int64)
    seconds = spans["duration_ms"].to_numpy(np.float64) / 1000.0
    frame = pd.DataFrame({"service_name": spans["service_name"].astype(str).to_numpy(), "tick": tick, "s": seconds})
    summary = frame.groupby(["tick", "service_name"], sort=True)["s"].agg(["count", "sum", "min", "max"]).reset_index()
    time_ns = np.round((start + summary["tick"].to_numpy() * tick_s) * 1e9).astype(np.int64)
    return time_ns, pa.table({
        "time": _time(time_ns), "metric": pa.array([HISTOGRAM] * len(summary), pa.string()),
        "service_name": pa.array(summary["service_name"].to_numpy(object), pa.string()),
        **{column: pa.array(summary[column].to_numpy(np.float64), pa.float64())
           for column in ("count", "sum", "min", "max")}})


def _traces(spans: pd.DataFrame) -> tuple[np.ndarray, pa.Table]:
    time_ns = spans["started_at_ms"].to_numpy(np.int64) * 1_000_000
    return time_ns, pa.table({
        "time": _time(time_ns), "trace_id": pa.array(hex_ids(spans["trace_id"], 32), pa.string()),
        "span_id": pa.array(hex_ids(spans["span_id"], 16), pa.string()),
        "parent_span_id": pa.array(hex_ids(spans["parent_span_id"], 16), pa.string()),
        "service_name": pa.array(spans["service_name"].astype(str).to_numpy(object), pa.string()),
        "span_name": pa.array(spans["operation"].astype(str).to_numpy(object), pa.string()),
        "duration": pa.array(np.round(spans["duration_ms"].to_numpy(np.float64) * 1e6).astype(np.uint64),
                             pa.uint64()),
        "attr.status_code": pa.array(spans["status"].astype(str).map(STATUS_CODE).to_numpy(np.int16), pa.int16())})


def _logs(logs: pd.DataFrame) -> tuple[np.ndarray, pa.Table]:
    time_ns = logs["logged_at_ms"].to_numpy(np.int64) * 1_000_000
    return time_ns, pa.table({
        "time": _time(time_ns), "trace_id": pa.array(hex_ids(logs["trace_id"], 32), pa.string()),
        "span_id": pa.array(hex_ids(logs["span_id"], 16), pa.string()),
        "service_name": pa.array(logs["service_name"].astype(str).to_numpy(object), pa.string()),
        "level": pa.array(logs["level"].astype(str).to_numpy(object), pa.string()),
        "message": pa.array(logs["template"].astype(str).to_numpy(object), pa.string())})
