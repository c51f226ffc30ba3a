"""The shipped model's own root-cause method: it knows how the model's faults look.

A regression starts at one service and reaches each caller a hop lag later,
scaled by the propagation share per hop; an anomaly is an event at one
service. Each candidate's predicted pattern is fitted to the z-scored series
after the onset, and candidates are ranked by how much of them it explains.
Declared as ``RCA_METHODS`` (tasks.py), scored beside the engine's
model-independent methods (``causalsynth.tasks.rca``).
"""

from __future__ import annotations

import warnings

import numpy as np

from causalsynth.tasks.rca import Cases, split_at_onset

from .mechanisms import dependency_matrix
from .telemetry import hops

# The series a regression moves (INCIDENTS.metrics' columns).
REGRESSION_METRICS = ("latency_ms", "p95_latency_ms", "request_rate", "error_rate")


def mechanism(cases: Cases, config) -> np.ndarray:
    """Service scores (C, S) from the world's call graph, hop lag, propagation share and event length."""
    tm = config.get("telemetry")
    return _scores(cases, dependency_matrix(config.params, cases.services), tm["hop_lag_s"],
                   config.get("service.propagation_share"), tm["anomaly_ticks"])


def _scores(cases: Cases, depends: np.ndarray, hop_lag_s: float, share: float, event_ticks: int) -> np.ndarray:
    """Service scores (C, S) of a method that knows the model's fault patterns.

    On log series z-scored by their pre-onset mean and sd: candidate ``j`` as
    a regression predicts a step at each service ``s`` reachable from ``j``,
    ``share ** hops`` times the root's, from ``onset + hop_lag * hops`` on,
    in latency, p95, errors and requests (each metric its own amplitude); as
    an anomaly, a step in one metric of ``j`` alone for ``event_ticks``. A
    candidate's score is the larger share of the post-onset sum of squares
    either pattern explains (least squares in its amplitudes).
    """
    n_cases, n_svc, n_metrics, n_ticks = cases.series.shape
    regression = [cases.metrics.index(m) for m in REGRESSION_METRICS]
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", RuntimeWarning)
        logs = np.log(np.maximum(cases.series, 1e-9))
        # The model's own clock: a tick whose middle is past the onset is after it.
        before, _ = split_at_onset(Cases(**{**cases.__dict__, "series": logs}),
                                   np.ceil(cases.onset_s / cases.tick_s - 0.5).astype(int))
        z = (logs - np.nanmean(before, -1, keepdims=True)) / np.maximum(np.nanstd(before, -1, keepdims=True), 1e-6)
    z = np.nan_to_num(z, nan=0.0)
    ticks = np.arange(n_ticks) * cases.tick_s + cases.tick_s / 2
    onset = cases.onset_s[:, None]
    after = (ticks[None, :] >= onset)[:, None, None, :]
    total = np.sum(np.where(after, z, 0.0) ** 2, axis=(1, 2, 3)) + 1e-9   # (C,)
    distance = hops(depends)
    scores = np.zeros((n_cases, n_svc))
    for j in range(n_svc):
        reach = distance[j] < n_svc                                        # (S,)
        weight = np.where(reach, share ** np.minimum(distance[j], n_svc), 0.0)
        start = onset[:, :, None] + hop_lag_s * np.where(reach, distance[j], 0)[None, :, None]   # (C, S, 1)
        step = (ticks[None, None, :] >= start) * weight[None, :, None]        # (C, S, T)
        # Latency, errors and (down) requests follow the step, each metric with its own amplitude.
        fit = np.sum(step[:, :, None, :] * z[:, :, regression, :], axis=(1, 3))      # (C, M')
        explained = np.sum(fit ** 2, axis=1) / np.maximum(np.sum(step ** 2, axis=(1, 2)), 1e-9)
        event = ((ticks[None, :] >= onset) & (ticks[None, :] < onset + event_ticks * cases.tick_s))  # (C, T)
        per_metric = np.sum(z[:, j, :, :] * event[:, None, :], axis=-1) ** 2 / np.maximum(
            event.sum(-1, keepdims=True), 1)                                   # (C, M)
        scores[:, j] = np.maximum(explained, per_metric.max(-1)) / total
    return scores
