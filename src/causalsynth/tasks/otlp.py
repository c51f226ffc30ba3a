"""`causalsynth export DATASET --format otlp`: incident runs as OpenTelemetry's file format.

Three files, one signal each, one line per incident run: ``traces.jsonl`` holds an
``ExportTraceServiceRequest``, ``metrics.jsonl`` an ``ExportMetricsServiceRequest`` (each series a
gauge, one point a tick) and ``logs.jsonl`` an ``ExportLogsServiceRequest`` (written only where the
dataset has log lines), in OTLP's JSON encoding: a resource per service (``service.name``), ids as
hexadecimal strings, times as nanoseconds since the Unix epoch in decimal strings, enums as numbers.
That is what an OpenTelemetry Collector's ``otlpjsonfile`` receiver replays and its ``file``
exporter writes. ``cases.json`` holds each run's ground truth and its line number in the files.
"""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pandas as pd

from causalsynth.dataset.reading import Dataset
from causalsynth.dataset.staging import staged_directory
from causalsynth.tasks.rcaeval import OWNED_CASES, incident_cases, write_index
from causalsynth.tasks.spans import by_run, hex_ids, read_spans

TRACES, METRICS, LOGS = "traces.jsonl", "metrics.jsonl", "logs.jsonl"     # one signal a file
SCOPE = {"name": "causalsynth"}
SPAN_KIND_SERVER = 2
STATUS = {"OK": {}, "ERROR": {"code": 2}}                   # STATUS_CODE_UNSET: no field; STATUS_CODE_ERROR
SEVERITY = {"INFO": 9, "WARN": 13, "ERROR": 17}           # SEVERITY_NUMBER_INFO, _WARN, _ERROR
UNITS = {"latency": "ms", "latency-95": "ms", "workload": "{request}/s", "error": "1", "cpu": "1", "mem": "1"}


def write_otlp(directory: str | Path, out: str | Path | None = None, force: bool = False,
               on_case=lambda path: None) -> Path:
    """Write every incident run's traces, metrics and (where sampled) logs as OTLP JSON Lines."""
    ds = Dataset(directory)
    cases, names, truth = incident_cases(ds)
    inc = ds.config.model.INCIDENTS
    with_logs = bool(inc.logs) and inc.logs in ds.manifest["tables"]
    spans, logs = read_spans(ds, cases.run_id, logs=with_logs)
    run_key = ds.manifest["tables"][inc.runs]["key"]
    spans = spans.assign(trace=hex_ids(spans["trace_id"], 32), span=hex_ids(spans["span_id"], 16),
                         parent=hex_ids(spans["parent_span_id"], 16))
    spans_of = by_run(spans, run_key)
    if with_logs:
        logs = logs.assign(trace=hex_ids(logs["trace_id"], 32), span=hex_ids(logs["span_id"], 16))
        logs_of = by_run(logs, run_key)
    n_ticks = cases.series.shape[-1]
    out = out if out else ds.beside("otlp")
    with staged_directory(out, force=force, what="causalsynth's OTLP files",
                          owned=OWNED_CASES) as staging:
        names_of_files = (TRACES, METRICS, *((LOGS,) if with_logs else ()))
        files = {file: (staging / file).open("w") for file in names_of_files}
        try:
            for c, name in enumerate(names):
                run = int(cases.run_id[c])
                files[TRACES].write(json.dumps(_traces(spans_of(run))) + "\n")
                tick_ns = (cases.started_at[c] * 1_000_000_000
                           + np.round(np.arange(n_ticks) * cases.tick_s * 1e9).astype(np.int64))
                files[METRICS].write(json.dumps(_metrics(cases, c, tick_ns, inc.metrics)) + "\n")
                if with_logs:
                    files[LOGS].write(json.dumps(_logs(logs_of(run))) + "\n")
                truth[c] = truth[c] | {"line": c + 1}
                on_case(name)
        finally:
            for f in files.values():
                f.close()
        write_index(staging, ds, truth, layout="OTLP JSON Lines", files=list(files))
    return Path(out)


def _resource(service: str) -> dict:
    return {"attributes": [{"key": "service.name", "value": {"stringValue": service}}]}


def _ns(ms) -> np.ndarray:
    return np.asarray(ms, np.int64) * 1_000_000


def _traces(spans: pd.DataFrame) -> dict:
    start = _ns(spans["started_at_ms"])
    end = start + np.round(spans["duration_ms"].to_numpy(np.float64) * 1e6).astype(np.int64)
    by_service: dict[str, list] = {}
    for row, s, e in zip(spans.itertuples(index=False), start, end):
        span = {"traceId": row.trace, "spanId": row.span, "name": str(row.operation), "kind": SPAN_KIND_SERVER,
                "startTimeUnixNano": str(s), "endTimeUnixNano": str(e), "status": STATUS[str(row.status)]}
        if row.parent:
            span["parentSpanId"] = row.parent
        by_service.setdefault(str(row.service_name), []).append(span)
    return {"resourceSpans": [{"resource": _resource(service), "scopeSpans": [{"scope": SCOPE, "spans": found}]}
                              for service, found in by_service.items()]}


def _metrics(cases, c: int, tick_ns: np.ndarray, names) -> dict:
    resources = []
    for s, service in enumerate(cases.services):
        metrics = []
        for m, metric in enumerate(cases.metrics):
            values = cases.series[c, s, m]
            points = [{"timeUnixNano": str(t), "asDouble": float(v)} for t, v in zip(tick_ns, values)
                      if np.isfinite(v)]
            metrics.append({"name": metric, "unit": UNITS.get(names[metric], "1"),
                            "gauge": {"dataPoints": points}})
        resources.append({"resource": _resource(service), "scopeMetrics": [{"scope": SCOPE, "metrics": metrics}]})
    return {"resourceMetrics": resources}


def _logs(logs: pd.DataFrame) -> dict:
    by_service: dict[str, list] = {}
    for row, t in zip(logs.itertuples(index=False), _ns(logs["logged_at_ms"])):
        by_service.setdefault(str(row.service_name), []).append({
            "timeUnixNano": str(t), "severityNumber": SEVERITY[str(row.level)], "severityText": str(row.level),
            "body": {"stringValue": str(row.template)}, "traceId": row.trace, "spanId": row.span})
    return {"resourceLogs": [{"resource": _resource(service), "scopeLogs": [{"scope": SCOPE, "logRecords": found}]}
                             for service, found in by_service.items()]}
