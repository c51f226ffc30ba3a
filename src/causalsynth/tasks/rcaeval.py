"""`causalsynth export DATASET --format rcaeval`: incident cases in RCAEval's RE1 layout.

One folder per case, ``<service>_<fault>/<n>/`` (n = 1, 2, … per service and
fault, in run order), holding what RCAEval's ``main.py`` reads:

- ``data.csv``: a ``time`` column (integer Unix seconds, one row per tick),
  then one ``<service>_<metric>`` column per series, written without an
  index; a missing tick is an empty cell (RCAEval fills it forward);
- ``inject_time.txt``: the start of the first tick the fault is in, integer Unix seconds, one line.

Metric suffixes and fault names are RCAEval's, as the model's
``INCIDENTS`` declares them (the shipped model: ``latency``, the mean in ms;
``latency-95``; ``workload``, requests per second; ``error``; ``cpu`` and
``mem``, utilisation 0-1; faults by the metric they move: ``delay``,
``loss``, ``cpu``, ``socket``). ``cases.json`` holds the full ground truth
of every case (run, fault kind, root cause, onset, the unrelated event's
service and, for a dataset sampled with ``--counterfactual``, the exact
propagation labels of ``tasks.propagation``), so nobody has to parse folder
names.
"""

from __future__ import annotations

import json
from collections import Counter
from pathlib import Path

import numpy as np
import pandas as pd

from causalsynth.dataset.reading import Dataset
from causalsynth.dataset.staging import json_marker, staged_directory
from causalsynth.errors import ConfigError
from causalsynth.tasks.propagation import propagation, with_operations
from causalsynth.tasks.rca import Cases, read_cases, roots

# What every incident export's ``cases.json`` says it is: ``--force`` replaces only a directory holding one.
CASES_FORMAT = "causalsynth-incident-cases"
OWNED_CASES = json_marker("cases.json", "format", CASES_FORMAT)


def incident_cases(ds: Dataset) -> tuple[Cases, list[str], list[dict]]:
    """The dataset's incident cases, each one's folder name ``<service>_<fault>/<n>`` (n = 1, 2, … per
    service and fault, in run order) and its ground truth, as both RCAEval layouts write them."""
    cases = read_cases(ds)
    incidents = ds.config.model.INCIDENTS
    if unnamed := sorted(set(cases.kind) - set(incidents.faults)):
        raise ConfigError(f"{ds.directory}: its model {ds.config.model.NAME} names no RCAEval fault for "
                          f"{', '.join(unnamed)} (INCIDENTS.faults names {', '.join(incidents.faults)})")
    numbers: Counter[str] = Counter()
    names, truth = [], []
    calls = ds.config.get(incidents.calls) if incidents.calls else {}
    operation = _fault_operations(ds, cases)
    for c in range(len(cases)):
        service = cases.services[cases.root[c]]
        fault = incidents.faults[cases.kind[c]]
        numbers[f"{service}_{fault}"] += 1
        names.append(f"{service}_{fault}/{numbers[f'{service}_{fault}']}")
        truth.append({"case": names[-1], "run_id": int(cases.run_id[c]), "root_cause_service": service,
                      "fault_kind": str(cases.kind[c]), "fault": fault, "inject_time": inject_time(cases, c),
                      "fault_onset_s": float(cases.onset_s[c]), "window_start": int(cases.started_at[c]),
                      "tick_s": cases.tick_s}
                     | ({} if operation is None else {"root_cause_operation": operation[c]})
                     | ({} if cases.spurious is None else {"spurious_event_service": str(cases.spurious[c])})
                     | ({} if cases.second is None else {"root_causes": [{"service": service, "fault_kind": kind}
                                                             for service, kind in roots(cases, c)]})
                     | ({} if cases.without is None else {"propagation": propagation(
                         cases, c, incidents.metrics, calls, incidents.shared, incidents.local)}))
    return cases, names, truth


def _fault_operations(ds: Dataset, cases: Cases) -> np.ndarray | None:
    """Each case's fault operation (NONE where its fault is not in one operation), where the dataset has them."""
    inc = ds.config.model.INCIDENTS
    if not inc.fault_operation or not any(f["name"] == inc.fault_operation
                                          for f in ds.manifest["tables"][inc.runs]["schema"]):
        return None
    run_key = ds.manifest["tables"][inc.runs]["key"]
    runs = ds.read(inc.runs, [run_key, inc.fault_operation])
    return pd.Series(runs[inc.fault_operation].astype(str).to_numpy(), index=runs[run_key]).reindex(
        cases.run_id).to_numpy()


def labelled_case(truth: dict, cases: Cases, c: int, spans: pd.DataFrame, suffix: str) -> dict:
    """Case ``c``'s ground truth ``truth`` with its services' span operations added to its propagation
    labels, from ``spans`` (the case's, as ``tasks.spans.read_spans`` reads them)."""
    if "propagation" not in truth:
        return truth
    first_ms = int(round((cases.started_at[c] + cases.onset_tick[c] * cases.tick_s) * 1000))
    return truth | {"propagation": with_operations(truth["propagation"], spans, first_ms, suffix)}


def write_index(directory: Path, ds: Dataset, truth: list[dict], **fields) -> None:
    """``cases.json`` in ``directory``: what it is (``CASES_FORMAT``), the dataset the cases come from,
    the export's own ``fields``, and every case's ground truth ``truth``."""
    index = {"format": CASES_FORMAT, "dataset": ds.location.absolute, **fields, "cases": truth}
    (directory / "cases.json").write_text(json.dumps(index, indent=1) + "\n")


def inject_time(cases: Cases, c: int) -> int:
    """RCAEval's inject time of case ``c``, in whole Unix seconds: the start of the first tick the fault
    is in (``Cases.onset_tick``), the time column's value there, so every tick before it is as it would
    have been without the fault."""
    return int(cases.started_at[c]) + int(cases.onset_tick[c] * cases.tick_s)


def write_rcaeval(directory: str | Path, out: str | Path | None = None, force: bool = False,
                  on_case=lambda path: None) -> Path:
    """Write every incident run of the dataset as an RCAEval case; return the output directory."""
    ds = Dataset(directory)
    cases, names, truth = incident_cases(ds)
    incidents = ds.config.model.INCIDENTS
    out = out if out else ds.beside("rcaeval")
    columns = [f"{service}_{incidents.metrics[m]}" for service in cases.services for m in cases.metrics]
    n_ticks = cases.series.shape[-1]
    with staged_directory(out, force=force, what="causalsynth's RCAEval cases",
                          owned=OWNED_CASES) as staging:
        for c, name in enumerate(names):
            folder = staging / name
            folder.mkdir(parents=True)
            time = cases.started_at[c] + (np.arange(n_ticks) * cases.tick_s).astype(np.int64)
            values = cases.series[c].reshape(-1, n_ticks).T                 # (T, S*M), services outer
            frame = pd.DataFrame(values, columns=columns)
            frame.insert(0, "time", time)
            frame.to_csv(folder / "data.csv", index=False)
            (folder / "inject_time.txt").write_text(f"{inject_time(cases, c)}\n")
            on_case(folder)
        write_index(staging, ds, truth, columns=["time", *columns])
    return Path(out)
