"""`causalsynth export DATASET --format re2`: incident cases in RCAEval's RE2 (multi-source) layout.

One folder per case, ``<service>_<fault>/<n>/``, named as RCAEval's RE1 export names them, holding
what RCAEval's multi-source methods (``mmbaro``, ``mmnsigma``, ``mmcirca``) and its trace methods
(``tracerca``, ``microrank``) read, in the columns and units of RCAEval's own RE2 cases:

- ``simple_metrics.csv``: ``time`` (Unix seconds, one row a second, as RE2's metrics are: a tick's
  value held over its seconds, as a query at a 1 s step over a slower scrape returns it) and one
  ``<service>_<metric>`` column per series; ``metrics.json`` the same series as RCAEval's
  ``utility.read_metrics`` reads them (``{column: [[time, value], …]}``, one point a tick);
- ``logts.csv``, ``tracets_lat.csv``, ``tracets_err.csv``: 15 s buckets (``time``, the bucket's
  start in Unix seconds): log lines per ``<service>_<template number>`` (the template's position
  in the dataset's levels, from 1); the mean span duration (ms) and the failed spans per
  ``<service>_<operation>`` (empty where a bucket has no span of it);
- ``traces.csv``: ``time`` (HH:MM), ``traceID``, ``spanID``, ``serviceName``, ``methodName``,
  ``operationName``, ``startTimeMillis``, ``startTime`` and ``duration`` (µs), ``statusCode``
  (OpenTelemetry's: 0 unset, 2 error) and ``parentSpanID`` (empty at a root), as Jaeger exports them;
- ``logs.csv``: ``time`` (HH:MM), ``timestamp`` (Unix ns), ``container_name``, ``message`` (the
  template), ``level``, ``req_path`` (the span's operation) and ``error`` (true on ERROR lines);
- ``inject_time.txt``: the start of the first tick the fault is in, integer Unix seconds;
- ``labels.json``: the case's ground truth (``cases.json`` holds every case's).

Beside ``cases.json``, ``croissant.json`` describes the cases' metrics, spans and log lines as a
Croissant 1.0 card (``tasks.croissant``).
"""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pandas as pd
import pyarrow as pa
import pyarrow.csv as pacsv

from causalsynth.dataset.reading import Dataset
from causalsynth.dataset.staging import staged_directory
from causalsynth.tasks.rcaeval import OWNED_CASES, incident_cases, inject_time, labelled_case, write_index
from causalsynth.tasks.spans import by_run, hex_ids, read_spans

BUCKET_S = 15
STATUS_CODE = {"OK": 0, "ERROR": 2}


def write_re2(directory: str | Path, out: str | Path | None = None, force: bool = False,
              on_case=lambda path: None) -> Path:
    """Write every incident run of the dataset (sampled with traces and logs) as an RE2 case."""
    ds = Dataset(directory)
    cases, names, truth = incident_cases(ds)
    spans, logs = read_spans(ds, cases.run_id)
    incidents = ds.config.model.INCIDENTS
    run_key = ds.manifest["tables"][incidents.runs]["key"]
    templates = {t: i + 1 for i, t in enumerate(logs["template"].cat.categories)}
    spans_of, logs_of = by_run(spans, run_key), by_run(logs, run_key)
    columns = [f"{service}_{incidents.metrics[m]}" for service in cases.services for m in cases.metrics]
    n_ticks = cases.series.shape[-1]
    window_s = int(round(n_ticks * cases.tick_s))
    out = out if out else ds.beside("re2")
    with staged_directory(out, force=force, what="causalsynth's RCAEval RE2 cases",
                          owned=OWNED_CASES) as staging:
        for c, name in enumerate(names):
            folder = staging / name
            folder.mkdir(parents=True)
            start = int(cases.started_at[c])
            values = cases.series[c].reshape(-1, n_ticks).T                         # (T, S*M)
            second = np.arange(window_s)
            metrics = pd.DataFrame(values[np.minimum((second // cases.tick_s).astype(int), n_ticks - 1)],
                                   columns=columns)
            metrics.insert(0, "time", start + second)
            _csv(metrics, folder / "simple_metrics.csv")
            tick_times = start + (np.arange(n_ticks) * cases.tick_s).astype(np.int64)
            (folder / "metrics.json").write_text(json.dumps({
                column: [[int(t), float(v)] for t, v in zip(tick_times, values[:, j]) if np.isfinite(v)]
                for j, column in enumerate(columns)}))
            run = int(cases.run_id[c])
            run_spans, run_logs = spans_of(run), logs_of(run)
            buckets = start + BUCKET_S * np.arange(-(-window_s // BUCKET_S))
            template = run_logs["service_name"].astype(str) + "_" + run_logs["template"].map(templates).astype(str)
            _csv(_bucketed(run_logs["logged_at_ms"], buckets, template, None, "count"), folder / "logts.csv")
            op = run_spans["service_name"].astype(str) + "_" + run_spans["operation"].astype(str)
            _csv(_bucketed(run_spans["started_at_ms"], buckets, op, run_spans["duration_ms"], "mean"),
                 folder / "tracets_lat.csv")
            _csv(_bucketed(run_spans["started_at_ms"], buckets, op, run_spans["status"].astype(str) == "ERROR", "sum"),
                 folder / "tracets_err.csv")
            _csv(_traces_csv(run_spans), folder / "traces.csv")
            _csv(_logs_csv(run_logs, run_spans), folder / "logs.csv")
            (folder / "inject_time.txt").write_text(f"{inject_time(cases, c)}\n")
            truth[c] = labelled_case(truth[c], cases, c, run_spans, incidents.counterfactual)
            (folder / "labels.json").write_text(json.dumps(truth[c], indent=1) + "\n")
            on_case(folder)
        write_index(staging, ds, truth, layout="RE2", metrics=columns)
        _card(staging, ds, columns, len(names))
    return Path(out)


def _card(directory: Path, ds: Dataset, columns: list[str], n_cases: int) -> None:
    """The export's Croissant card: its metrics, spans and log lines as record sets."""
    from importlib.metadata import version

    from causalsynth.tasks.croissant import record_set, write_card

    metrics = {"time": ("int", "Unix seconds")} | {c: ("float", "A service's metric (<service>_<metric>)")
                                                    for c in columns}
    spans = {"traceID": ("text", "Trace id, 32 hexadecimal digits"), "spanID": ("text", "Span id, 16 digits"),
             "parentSpanID": ("text", "The calling span's id (empty at a root)"),
             "serviceName": ("text", "Service that served the call"), "operationName": ("text", "Its operation"),
             "startTime": ("int", "Start, Unix µs"), "duration": ("int", "Duration, µs"),
             "statusCode": ("int", "0, or 2 for an error")}
    logs = {"timestamp": ("int", "Unix ns"), "container_name": ("text", "Service that wrote the line"),
            "message": ("text", "Its template, <*> for the variable parts"), "level": ("text", "INFO, WARN or ERROR"),
            "req_path": ("text", "The operation of its span")}
    write_card(directory, f"{ds.config.model.NAME}-incidents-re2",
               f"{n_cases:,} incident cases of a causalsynth dataset (model {ds.config.model.NAME}, seed "
               f"{ds.manifest['seed']}) in RCAEval's RE2 layout: each case's folder, <service>_<fault>/<n>, names its "
               f"root cause and fault; labels.json and cases.json hold the ground truth.",
               [record_set("metrics", "metric-files", "*/*/simple_metrics.csv", "Each case's metric series, a row "
                           "a second", metrics),
                record_set("spans", "trace-files", "*/*/traces.csv", "Each case's trace spans", spans),
                record_set("logs", "log-files", "*/*/logs.csv", "Each case's log lines", logs)],
               version("causalsynth"))


def _bucketed(time_ms: pd.Series, buckets: np.ndarray, column: pd.Series, value: pd.Series | None,
              how: str) -> pd.DataFrame:
    """A wide frame: one row per bucket (``time``, its start), one column per ``column`` level seen, the
    ``how`` ("count", "sum" or "mean") of ``value`` in the bucket; 0 for a count or sum without rows,
    empty for a mean."""
    bucket = np.clip((time_ms.to_numpy() // 1000 - buckets[0]) // BUCKET_S, 0, len(buckets) - 1)
    codes, names = pd.factorize(column.to_numpy(), sort=True)
    cell = bucket * len(names) + codes
    shape = (len(buckets), len(names))
    n = np.bincount(cell, minlength=shape[0] * shape[1]).reshape(shape)
    if how == "count":
        wide = n
    else:
        total = np.bincount(cell, weights=value.to_numpy(np.float64), minlength=n.size).reshape(shape)
        wide = total.astype(np.int64) if how == "sum" else np.where(n > 0, total / np.maximum(n, 1), np.nan)
    frame = pd.DataFrame(wide, columns=names)
    frame.insert(0, "time", buckets)
    return frame


def _csv(frame: pd.DataFrame, path: Path) -> None:
    """``frame`` as CSV without an index, by pyarrow's writer (pandas' is a case's main cost): strings
    quoted only where needed, missing values empty, booleans as true/false."""
    pacsv.write_csv(pa.Table.from_pandas(frame, preserve_index=False), path,
                    pacsv.WriteOptions(quoting_style="needed"))


def _clock(ms: pd.Series) -> np.ndarray:
    return pd.to_datetime(ms, unit="ms", utc=True).dt.strftime("%H:%M").to_numpy()


def _traces_csv(spans: pd.DataFrame) -> pd.DataFrame:
    operation = spans["operation"].astype(str).to_numpy()
    return pd.DataFrame({
        "time": _clock(spans["started_at_ms"]), "traceID": hex_ids(spans["trace_id"], 32),
        "spanID": hex_ids(spans["span_id"], 16), "serviceName": spans["service_name"].astype(str).to_numpy(),
        "methodName": operation, "operationName": operation, "startTimeMillis": spans["started_at_ms"].to_numpy(),
        "startTime": spans["started_at_ms"].to_numpy() * 1000,
        "duration": np.round(spans["duration_ms"].to_numpy(np.float64) * 1000).astype(np.int64),
        "statusCode": spans["status"].astype(str).map(STATUS_CODE).to_numpy(),
        "parentSpanID": hex_ids(spans["parent_span_id"], 16)})


def _logs_csv(logs: pd.DataFrame, spans: pd.DataFrame) -> pd.DataFrame:
    operation = pd.Series(spans["operation"].astype(str).to_numpy(), index=spans["span_id"].to_numpy())
    level = logs["level"].astype(str).to_numpy()
    return pd.DataFrame({
        "time": _clock(logs["logged_at_ms"]), "timestamp": logs["logged_at_ms"].to_numpy(np.int64) * 1_000_000,
        "container_name": logs["service_name"].astype(str).to_numpy(),
        "message": logs["template"].astype(str).to_numpy(),
        "level": level, "req_path": operation.reindex(logs["span_id"]).to_numpy(), "error": level == "ERROR"})
