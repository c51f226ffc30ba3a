"""Root-cause analysis on a dataset's incidents: cases, methods, and RCAEval's scores.

A case is an incident run of a dataset sampled with ``--series``: every
service's metric series over the run's window, the onset (what RCAEval
calls the inject time) and the true root-cause service. Methods rank the
services; AC@k is the share of cases whose root cause is among the first
k, Avg@5 the mean of AC@1..AC@5 (RCAEval's definitions).

- ``baro``: BARO's robust z-score (RCAEval ``baro``): each metric scaled by
  the median and inter-quartile range of its ticks before the onset, its
  largest value after it (signed: BARO ranks rises) is the metric's score, a
  service's score its best metric's;
- ``nsigma``: the same with the mean and standard deviation (RCAEval
  ``nsigma``);
- a model's own methods (its ``RCA_METHODS``: name -> ``method(cases,
  config)``), which may know how its faults look; the shipped model's
  ``mechanism`` (models/delivery_commerce/rca.py).

These modules know no model: where the incidents are (tables, columns,
metrics, fault names) is the model's ``INCIDENTS`` declaration
(``spec.modeling.Incidents``), and the services, their call graph and any
fault pattern come from the dataset and its model.
"""

from __future__ import annotations

import warnings
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pandas as pd

from causalsynth.dataset.reading import Dataset, read_part
from causalsynth.errors import ConfigError, UnreadableDataset


@dataclass(frozen=True)
class Cases:
    """Incident runs as arrays: ``series[case, service, metric, tick]`` (NaN where a tick is missing)."""

    run_id: np.ndarray          # (C,)
    started_at: np.ndarray      # (C,) the window's start, Unix seconds
    services: tuple[str, ...]
    metrics: tuple[str, ...]    # the series' columns, in the order of the metric axis
    series: np.ndarray          # (C, S, M, T)
    tick_s: float
    onset_s: np.ndarray         # (C,) seconds from the window's start
    root: np.ndarray            # (C,) index into services (-1: a run without a fault)
    kind: np.ndarray            # (C,) fault kind names
    spurious: np.ndarray | None = None   # (C,) the unrelated event's service name, where the model labels one
    without: np.ndarray | None = None    # (C, S, M, T) the series without the case's fault, where written
    second: np.ndarray | None = None     # (C,) a second root cause's service name (or "NONE"), where sampled
    second_kind: np.ndarray | None = None  # (C,) its fault kind

    @property
    def onset_tick(self) -> np.ndarray:
        """The first tick the fault is in: a tick's values cover its interval, and the series hold a
        fault in every tick whose middle is at or past its onset. That tick's start is the case's
        inject time (``tasks.rcaeval.inject_time``), so RCAEval's split at it is the series' own."""
        return np.ceil(self.onset_s / self.tick_s - 0.5).astype(int)

    def __len__(self) -> int:
        return len(self.run_id)


def roots(cases: Cases, c: int) -> list[tuple[str, str]]:
    """Every root cause of case ``c`` as (service, fault kind): its own, and a second one's where it has one."""
    second = [] if cases.second is None or cases.second[c] not in cases.services else [
        (str(cases.second[c]), str(cases.second_kind[c]))]
    return [(cases.services[cases.root[c]], str(cases.kind[c])), *second]


def no_series(ds) -> str | None:
    """Why the dataset ``ds`` holds no incident series, as an error says it (None: it holds them)."""
    model = ds.config.model
    incidents = model.INCIDENTS
    if incidents is None:
        return f"{ds.directory} has no incident series: its model {model.NAME} samples none"
    if incidents.series in ds.manifest["tables"]:
        return None
    how = f"sample it with {incidents.option}" if incidents.option else f"its model {model.NAME} sampled none"
    return f"{ds.directory} has no {incidents.series} table; {how}"


def read_cases(source, *, clean: bool = False) -> Cases:
    """Every incident run of a dataset sampled with ``--series`` (``source``: its directory, or a
    ``Dataset`` already open); with ``clean``, every run without a fault instead (root -1, onset -1):
    the series as they are when nothing happens."""
    ds = source if isinstance(source, Dataset) else Dataset(source)
    if (why := no_series(ds)) is not None:
        raise ConfigError(why)
    # The world's config: a variant may set the tick length.
    config, inc = world_config(ds), ds.config.model.INCIDENTS
    tables = ds.manifest["tables"]
    run_key, service_key = tables[inc.runs]["key"], tables[inc.services]["key"]
    written_runs = {f["name"] for f in ds.manifest["tables"][inc.runs]["schema"]}
    second = inc.second_root if inc.second_root in written_runs else None
    runs = ds.read(inc.runs, [run_key, inc.window_start, inc.root_cause, inc.fault, inc.onset_s]
                   + ([inc.spurious] if inc.spurious else []) + ([second, inc.second_fault] if second else []))
    runs = runs[(runs[inc.fault].astype(str) == inc.no_fault) == clean].reset_index(drop=True)
    services, metrics = tuple(config.get(inc.service_names)), tuple(inc.metrics)
    svc = ds.read(inc.services, [service_key, run_key, inc.service])
    case_of = pd.Series(np.arange(len(runs)), index=runs[run_key])
    svc = svc[svc[run_key].isin(runs[run_key])]
    n_ticks = int(config.get(inc.ticks))
    written = ds.manifest["tables"][inc.series]["schema"]
    counterfactual = [f"{m}{inc.counterfactual}" for m in metrics] if inc.counterfactual and any(
        f["name"] == f"{metrics[0]}{inc.counterfactual}" for f in written) else []
    series = np.full((len(runs), len(services), len(metrics) + len(counterfactual), n_ticks), np.nan, np.float64)
    where = pd.DataFrame({"case": case_of.reindex(svc[run_key]).to_numpy(),
                          "service": pd.Categorical(svc[inc.service].astype(str), services).codes},
                         index=svc[service_key].to_numpy())
    for batch in _batches(ds, inc.series, [service_key, inc.tick, *metrics, *counterfactual]):
        frame = batch.to_pandas()
        frame = frame[frame[service_key].isin(where.index)]
        at = where.loc[frame[service_key].to_numpy()]
        for m, metric in enumerate([*metrics, *counterfactual]):
            series[at.case.to_numpy(), at.service.to_numpy(), m, frame[inc.tick].to_numpy()] = frame[metric]
    epoch_s = (runs[inc.window_start] - pd.Timestamp(0, tz="UTC")) // pd.Timedelta(seconds=1)
    named = runs[inc.root_cause].astype(str)
    root = pd.Index(services).get_indexer(named)                               # -1: none
    if not clean and (root < 0).any():   # a case must name one of its services, or it is scored against another
        run = runs[run_key][root < 0].iloc[0]
        raise UnreadableDataset(f"{ds.directory}: run {run}'s root cause {named[root < 0].iloc[0]!r} is none of "
                                f"its services ({', '.join(services)}); `causalsynth validate` it")
    return Cases(run_id=runs[run_key].to_numpy(), started_at=epoch_s.to_numpy(np.int64),
                 services=services, metrics=metrics, series=series[:, :, :len(metrics)],
                 without=series[:, :, len(metrics):] if counterfactual else None, tick_s=float(config.get(inc.tick_s)),
                 onset_s=runs[inc.onset_s].to_numpy(np.float64),
                 root=root,
                 kind=runs[inc.fault].astype(str).to_numpy(),
                 spurious=runs[inc.spurious].astype(str).to_numpy() if inc.spurious else None,
                 second=runs[second].astype(str).to_numpy() if second else None,
                 second_kind=runs[inc.second_fault].astype(str).to_numpy() if second else None)


def _batches(ds, table: str, columns: list[str]):
    for part in ds.parts[table]:
        yield from read_part(ds.location, part, columns).to_batches()


def split_at_onset(cases: Cases, first_after: np.ndarray | None = None) -> tuple[np.ndarray, np.ndarray]:
    """The series masked to before the onset, and to from it on (NaN elsewhere); ``first_after``
    is each case's first tick after it (default: RCAEval's split at the inject time)."""
    ticks = np.arange(cases.series.shape[-1])
    first_after = cases.onset_tick if first_after is None else first_after
    after = ticks[None, :] >= first_after[:, None]                          # (C, T)
    before = np.where(after[:, None, None, :], np.nan, cases.series)
    return before, np.where(after[:, None, None, :], cases.series, np.nan)


def _scaled(cases: Cases, robust: bool) -> np.ndarray:
    """(x - centre) / spread of the ticks after the onset, the centre and spread from before it
    (a spread of 0 counts as 1, as scikit-learn's RobustScaler, which BARO uses, does)."""
    before, after = split_at_onset(cases)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", RuntimeWarning)  # a case whose onset is at its first tick has no "before"
        if robust:
            centre = np.nanmedian(before, axis=-1, keepdims=True)
            spread = np.nanpercentile(before, 75, axis=-1, keepdims=True) - np.nanpercentile(
                before, 25, axis=-1, keepdims=True)
        else:
            centre = np.nanmean(before, axis=-1, keepdims=True)
            spread = np.nanstd(before, axis=-1, keepdims=True)
        return (after - centre) / np.where(spread > 0, spread, 1.0)


def baro(cases: Cases) -> np.ndarray:
    """Service scores (C, S) by BARO's robust z-score: higher is more likely the root cause."""
    return _best(_scaled(cases, robust=True))


def nsigma(cases: Cases) -> np.ndarray:
    """Service scores (C, S) by the n-sigma rule (mean and standard deviation)."""
    return _best(_scaled(cases, robust=False))


def _best(scaled: np.ndarray) -> np.ndarray:
    """A service's score: its best metric's best tick (0 where it has none)."""
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", RuntimeWarning)
        return np.nan_to_num(np.nanmax(scaled, axis=(-2, -1)), nan=0.0, neginf=0.0)




def ranks(scores: np.ndarray) -> np.ndarray:
    """Services ordered from most to least likely, per case (a stable order on ties)."""
    return np.argsort(-scores, axis=1, kind="stable")


def accuracy(cases: Cases, scores: np.ndarray) -> dict[str, float]:
    """AC@1, AC@3, AC@5 and Avg@5 (the mean of AC@1..AC@5), as RCAEval defines them."""
    order = ranks(scores)
    position = np.argmax(order == cases.root[:, None], axis=1)              # 0-based rank of the truth
    at = {k: float(np.mean(position < k)) for k in range(1, 6)}
    return {"AC@1": at[1], "AC@3": at[3], "AC@5": at[5], "Avg@5": float(np.mean([at[k] for k in range(1, 6)]))}


def world_config(ds):
    """The config the dataset's world was sampled under: its factual config with its variant's priors."""
    from causalsynth.engine.interventions import shifted_config

    return shifted_config(ds.config, ds.intervention)


def evaluate_rca(directory: str | Path) -> dict[str, dict]:
    """Each method's scores on the dataset's incidents, {method: {"AC@1": ..., ..., "by_fault": {kind:
    {"AC@1": ..., ...}}}}, and the cases counted, {"cases": {"n": ..., "by_fault": {kind: n}}}."""
    ds = Dataset(directory)
    cases = read_cases(ds)
    if len(cases) == 0:
        raise ConfigError(f"{directory}: has no incident runs to score")
    config = world_config(ds)
    frequency = np.bincount(cases.root, minlength=len(cases.services)).astype(float)
    scores = {
        # A constant: the services ranked by how often each is the root cause, the same for every case.
        "constant": np.broadcast_to(frequency, (len(cases), len(cases.services))),
        "baro": baro(cases),
        "nsigma": nsigma(cases),
    } | {name: method(cases, config) for name, method in config.model.RCA_METHODS.items()}
    masks = {kind: cases.kind == kind for kind in sorted(set(cases.kind))}
    of_kind = {kind: Cases(**{k: v[mask] if isinstance(v, np.ndarray) else v for k, v in cases.__dict__.items()})
               for kind, mask in masks.items()}
    results = {name: accuracy(cases, s) | {"by_fault": {kind: accuracy(of_kind[kind], s[mask])
                                                        for kind, mask in masks.items()}}
               for name, s in scores.items()}
    return {"cases": {"n": len(cases), "by_fault": {kind: len(of_kind[kind]) for kind in masks}}} | results


def series_statistics(cases: Cases, names: dict[str, str]) -> dict[str, dict[str, float]]:
    """How the series behave, in the terms telemetry is judged by (best on ``read_cases(clean=True)``).

    ``names`` maps the series' columns to RCAEval's metric names (a model's ``INCIDENTS.metrics``);
    the figures are keyed by the latter. Per metric, medians over the service windows: ``lag1`` (the
    lag-1 autocorrelation of its logs), ``cv`` (sd over mean within a window), ``kurtosis`` (the excess
    kurtosis of its log-differences, pooled); with ``workload`` in ``names``, ``corr_workload``: the
    median over windows of its correlation with the service's request rate, the lowest of the
    services. ``services``: ``corr`` (the median correlation of one service's latency with
    another's, within a window) and ``cpu_spread`` (the highest service's median CPU over the
    lowest's).
    """
    rcaeval = [names[m] for m in cases.metrics]
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", RuntimeWarning)
        logs = np.log(np.maximum(cases.series, 1e-12))                       # (C, S, M, T)
        centred = logs - np.nanmean(logs, -1, keepdims=True)

        def corr(a, b):  # along ticks, per window
            return (np.nanmean(a * b, -1) / np.sqrt(np.nanmean(a * a, -1) * np.nanmean(b * b, -1)))

        out: dict[str, dict[str, float]] = {}
        for m, name in enumerate(rcaeval):
            x = centred[:, :, m, :]
            diffs = np.diff(logs[:, :, m, :], axis=-1).ravel()
            diffs = diffs[np.isfinite(diffs)]
            z = (diffs - diffs.mean()) / diffs.std()
            level = cases.series[:, :, m, :]
            entry = {"lag1": float(np.nanmedian(corr(x[..., 1:], x[..., :-1]))),
                     "cv": float(np.nanmedian(np.nanstd(level, -1) / np.nanmean(level, -1))),
                     "kurtosis": float(np.mean(z ** 4) - 3.0)}
            if "workload" in rcaeval and name != "workload":
                per_service = np.nanmedian(corr(x, centred[:, :, rcaeval.index("workload"), :]), axis=0)
                entry["corr_workload"] = float(np.min(per_service))
            out[name] = entry
        services = {}
        if "latency" in rcaeval:
            latency = centred[:, :, rcaeval.index("latency"), :]
            pairs = [corr(latency[:, i], latency[:, j]) for i in range(len(cases.services))
                     for j in range(i + 1, len(cases.services))]
            services["corr"] = float(np.nanmedian(np.stack(pairs)))
        if "cpu" in rcaeval:
            cpu = np.nanmedian(np.nanmean(cases.series[:, :, rcaeval.index("cpu"), :], -1), axis=0)   # (S,)
            services["cpu_spread"] = float(cpu.max() / cpu.min())
        out["services"] = services
    return out

