"""The shipped model's own root-cause method: it knows how the model's faults look.

A regression or an injected fault starts at one service and reaches each
caller a hop lag later, scaled by the propagation share per hop of the
shortest path; an anomaly is an event at one service; an unrelated event
(``telemetry.spurious_rate``) is a short bump anywhere in the window. Each
candidate's predicted pattern is fitted to the z-scored series after the
onset, and candidates are ranked by how much of them it explains. Declared
as ``RCA_METHODS`` (tasks.py), scored beside the engine's model-independent
methods (``causalsynth.tasks.rca``).
"""

from __future__ import annotations

import warnings

import numpy as np

from causalsynth.tasks.rca import Cases, split_at_onset

from .mechanisms import dependency_matrix, hops, reach

# The series a fault moves at the callers it reaches (INCIDENTS.metrics' columns): what calls carry
# (waits, failures) and, for a regression, the requests a slower service serves.
CALLER_METRICS = ("latency_ms", "p95_latency_ms", "request_rate", "error_rate")
# The series a fault that stays at its service moves (a CPU hog, a leak, disk pressure).
RESOURCE_METRICS = ("cpu_usage", "memory_usage", "disk_usage")


def mechanism(cases: Cases, config) -> np.ndarray:
    """Service scores (C, S) from the world's call graph, hop lag, propagation share and event length."""
    tm = config.get("telemetry")
    return _scores(cases, dependency_matrix(config.params, cases.services), tm["hop_lag_s"],
                   config.get("service.propagation_share"), tm["anomaly_ticks"])


def _scores(cases: Cases, depends: np.ndarray, hop_lag_s: float, share: float, event_ticks: int) -> np.ndarray:
    """Service scores (C, S) of a method that knows the model's fault patterns.

    On log series z-scored by their pre-onset mean and sd, candidate ``j``
    predicts, as a fault that travels up the calls (a regression, a delay, a
    loss), a level shift at each service ``s`` it reaches, ``share ** hops``
    times its own, from ``onset + hop_lag * hops`` on, in the metrics calls
    carry (least squares in one amplitude per metric); as a fault that stays
    at ``j`` (a CPU hog, a leak), a shift in its CPU or memory beyond the
    services' mean from the onset on; as an anomaly, an event in one of its metrics for
    ``event_ticks`` from the onset. Its score is the largest share of the
    post-onset sum of squares one of them explains.
    """
    n_cases, n_svc, n_metrics, n_ticks = cases.series.shape
    carried = np.asarray([m in CALLER_METRICS for m in cases.metrics])
    resources = [cases.metrics.index(m) for m in RESOURCE_METRICS]
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
    total = np.sum(np.where(after, z, 0.0) ** 2, axis=(1, 2, 3)) + 1e-9                 # (C,)
    distance = hops(depends)
    scores = np.zeros((n_cases, n_svc))
    for j in range(n_svc):
        reached = distance[j] < n_svc                                                                  # (S,)
        weight = np.where(carried[None, :], np.asarray(reach(distance[j], share, n_svc))[:, None], 0.0)  # (S, M)
        start = onset[:, :, None] + hop_lag_s * np.where(reached, distance[j], 0)[None, :, None]     # (C, S, 1)
        step = (ticks[None, None, :] >= start)[:, :, None, :] * weight[None, :, :, None]               # (C, S, M, T)
        # One amplitude per metric, by least squares: its explained sum of squares is fit^2 / |step|^2.
        fit = np.sum(step * z, axis=(1, 3))                                                           # (C, M)
        explained = np.sum(fit ** 2 / np.maximum(np.sum(step ** 2, axis=(1, 3)), 1e-9), axis=1)     # (C,)
        event = ((ticks[None, :] >= onset) & (ticks[None, :] < onset + event_ticks * cases.tick_s))   # (C, T)
        per_metric = np.sum(z[:, j, :, :] * event[:, None, :], axis=-1) ** 2 / np.maximum(
            event.sum(-1, keepdims=True), 1)                                                          # (C, M)
        # A fault that stays at its service: a shift in one of its resources beyond the services' mean
        # (a run's load moves them all).
        own = z[:, j][:, resources] - z[:, :, resources].mean(1)                                      # (C, 3, T)
        alone = np.sum(np.where(after[:, 0], own, 0.0), axis=-1) ** 2 / np.maximum(after[:, 0].sum(-1), 1)
        scores[:, j] = np.maximum(np.maximum(explained, per_metric.max(-1)), alone.max(-1)) / total
    return scores
