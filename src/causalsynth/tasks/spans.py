"""A dataset's trace spans and log lines, per run, as the incident exports read them.

Ids are written as OpenTelemetry's and Jaeger's layouts write them: a trace id as 32 hexadecimal
digits, a span id as 16, both the row's key (so a twin's trace has the same ids as the factual one).
"""

from __future__ import annotations

from collections.abc import Callable

import numpy as np
import pandas as pd

from causalsynth.dataset.reading import Dataset
from causalsynth.errors import ConfigError

SPAN_COLUMNS = ["span_id", "parent_span_id", "service_name", "operation", "started_at", "duration_ms", "status"]
LOG_COLUMNS = ["span_id", "service_name", "level", "template", "logged_at"]


def hex_ids(keys, width: int) -> np.ndarray:
    """Keys as ``width`` lower-case hexadecimal digits ("" where a key is missing)."""
    keys = pd.array(keys, dtype="Int64")
    valid = ~keys.isna()
    out = np.full(len(keys), "", dtype=object)
    out[valid] = np.char.mod(f"%0{width}x", keys[valid].to_numpy(np.int64))
    return out


def read_spans(ds: Dataset, run_ids: np.ndarray, logs: bool = True) -> tuple[pd.DataFrame, pd.DataFrame | None]:
    """The spans (and, with ``logs``, the log lines) of the runs ``run_ids``, each with its ``run_id``
    and ``trace_id``, times as integer milliseconds since the Unix epoch (``started_at_ms``,
    ``logged_at_ms``); spans with their duration and status without the fault, where written."""
    inc = ds.config.model.INCIDENTS
    wanted = [t for t in (inc.spans, inc.logs if logs else None) if t]
    missing = [t for t in wanted if t not in ds.manifest["tables"]] or ([] if wanted else ["trace spans"])
    if missing:
        how = f"sample it with {inc.trace_option}" if inc.trace_option else f"its model {ds.config.model.NAME} " \
                                                                             f"samples none"
        raise ConfigError(f"{ds.directory} has no {missing[0]} table; {how}")
    traces_table, trace_key = ds.parent(inc.spans)
    run_key = ds.manifest["tables"][inc.runs]["key"]
    traces = ds.read(traces_table, [trace_key, run_key])
    traces = traces[traces[run_key].isin(run_ids)]
    run_of = pd.Series(traces[run_key].to_numpy(), index=traces[trace_key].to_numpy())

    def of_runs(table: str, columns: list[str], time: str) -> pd.DataFrame:
        frame = ds.read(table, [trace_key, *columns])
        frame = frame[frame[trace_key].isin(run_of.index)].reset_index(drop=True)
        frame.insert(0, run_key, run_of.reindex(frame[trace_key]).to_numpy())
        frame[f"{time}_ms"] = (frame.pop(time) - pd.Timestamp(0, tz="UTC")) // pd.Timedelta(milliseconds=1)
        return frame

    written = {f["name"] for f in ds.manifest["tables"][inc.spans]["schema"]}
    without = [f"{c}{inc.counterfactual}" for c in ("duration_ms", "status")] if inc.counterfactual else []
    spans = of_runs(inc.spans, SPAN_COLUMNS + [c for c in without if c in written], "started_at")
    return spans, of_runs(inc.logs, LOG_COLUMNS, "logged_at") if logs else None


def by_run(frame: pd.DataFrame, run_key: str) -> Callable[[int], pd.DataFrame]:
    """A run's rows of ``frame`` (its spans or log lines, as ``read_spans`` reads them), by run id: none
    where the run has none."""
    groups = frame.groupby(run_key)
    return lambda run: groups.get_group(run) if run in groups.groups else frame.iloc[:0]
