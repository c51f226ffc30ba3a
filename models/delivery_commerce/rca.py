"""The shipped model's own root-cause method: it knows how the model's faults look.

A regression or an injected fault starts at one service and reaches each
caller a hop lag later, scaled by the propagation share per hop of the
shortest path; an anomaly is an event at one service; an unrelated event
(``telemetry.spurious_rate``) is a bump of known size and length from any
moment of the window, cut at its end. The unrelated event is found first
(``unrelated_event``) and taken out; then each candidate's predicted pattern
is fitted to the z-scored series after the onset, and candidates are ranked
by how much of them it explains. Declared as ``RCA_METHODS`` (tasks.py), scored beside the
engine's model-independent methods (``causalsynth.tasks.rca``).
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
# The series an unrelated event multiplies (p95 latency follows the latency).
UNRELATED_METRICS = ("latency_ms", "p95_latency_ms")
# How far a window's mean log-lift may be from the unrelated event's size, as a share of that size, and
# still be taken for it: on rca_hard it finds most events, and none at a service without one
# (tests/test_telemetry.py).
UNRELATED_TOLERANCE = 0.2


def mechanism(cases: Cases, config) -> np.ndarray:
    """Service scores (C, S) from the world's call graph, hop lag, propagation share and event lengths."""
    tm = config.get("telemetry")
    if tm["spurious_rate"] > 0:
        cases = without_unrelated_event(cases, np.log1p(tm["spurious_size"]), tm["spurious_s"])
    return _scores(cases, dependency_matrix(config.params, cases.services), tm["hop_lag_s"],
                   config.get("service.propagation_share"), tm["anomaly_s"])


def _window_means(x: np.ndarray, lo: np.ndarray, hi: np.ndarray) -> np.ndarray:
    """The mean of ``x`` (NaN: missing) over ticks ``[lo, hi)`` along its last axis, per window (NaN where
    a window holds no value)."""
    valid = np.isfinite(x)
    sums = np.concatenate([np.zeros(x.shape[:-1] + (1,)), np.cumsum(np.where(valid, x, 0.0), -1)], -1)
    counts = np.concatenate([np.zeros(x.shape[:-1] + (1,)), np.cumsum(valid, -1)], -1)
    n = counts[..., hi] - counts[..., lo]
    return np.where(n > 0, (sums[..., hi] - sums[..., lo]) / np.maximum(n, 1), np.nan)


def _event_ticks(cases: Cases, event_s: float) -> int:
    """How many ticks an event of ``event_s`` seconds covers."""
    return max(int(round(event_s / cases.tick_s)), 1)


def unrelated_event(cases: Cases, size: float, event_s: float) -> tuple[np.ndarray, np.ndarray]:
    """Each case's unrelated event as (service, first tick); service -1 where no event fits.

    The model's unrelated event lifts one service's log latency by exactly ``size`` for ``event_s``
    seconds from a moment drawn anywhere in the window, or to its end. A window is taken for it where
    its mean log latency stands ``size`` above both the ticks just before it and those just after
    (within ``UNRELATED_TOLERANCE``; a window cut at the series' end has one side): a fault's step
    stands above only what comes before. Windows that start within a tick of the onset are not
    considered: an anomaly event starts there, and may be of the same size. A fault's step of the
    same size may still be taken for it a few ticks off the onset (on rca_hard, a regression's at its
    root in about 1 % of runs)."""
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", RuntimeWarning)
        x = np.log(np.maximum(cases.series[:, :, cases.metrics.index(UNRELATED_METRICS[0])], 1e-9))  # (C,S,T)
    n_ticks, event_ticks = x.shape[-1], _event_ticks(cases, event_s)
    side, start = max(event_ticks // 2, 1), np.arange(n_ticks)
    end = np.minimum(start + event_ticks, n_ticks)
    inside = _window_means(x, start, end)
    before = inside - _window_means(x, np.maximum(start - side, 0), start)
    after = inside - _window_means(x, end, np.minimum(end + side, n_ticks))
    # A window at the edge of the series has one side only.
    off = np.fmax(np.abs(before - size), np.abs(after - size))                            # (C,S,W)
    onset = np.ceil(cases.onset_s / cases.tick_s - 0.5)[:, None, None]
    off = np.where(np.isfinite(off) & (np.abs(start - onset) > 1), off, np.inf)
    best = off.reshape(len(x), -1).argmin(-1)
    service, first = np.unravel_index(best, off.shape[1:])
    found = off.reshape(len(x), -1)[np.arange(len(x)), best] < UNRELATED_TOLERANCE * size
    return np.where(found, service, -1), first


def without_unrelated_event(cases: Cases, size: float, event_s: float) -> Cases:
    """The cases with their unrelated event (``unrelated_event``) divided out of the series it moves."""
    service, first = unrelated_event(cases, size, event_s)
    event_ticks = _event_ticks(cases, event_s)
    n_svc, n_ticks = cases.series.shape[1], cases.series.shape[-1]
    ticks, first = np.arange(n_ticks), first[:, None, None]
    # (C, S, T); a case without one (service -1) matches no service.
    inside = (np.arange(n_svc)[:, None] == service[:, None, None]) & (ticks >= first) & (ticks < first + event_ticks)
    series = cases.series.copy()
    moved = [cases.metrics.index(m) for m in UNRELATED_METRICS]
    series[:, :, moved] /= np.where(inside[:, :, None], np.exp(size), 1.0)
    return Cases(**{**cases.__dict__, "series": series})


def _scores(cases: Cases, depends: np.ndarray, hop_lag_s: float, share: float, event_s: float) -> np.ndarray:
    """Service scores (C, S) of a method that knows the model's fault patterns.

    On log series z-scored by their pre-onset mean and sd, candidate ``j``
    predicts, as a fault that travels up the calls (a regression, a delay, a
    loss), a level shift at each service ``s`` it reaches, ``share ** hops``
    times its own, from ``onset + hop_lag * hops`` on, in the metrics calls
    carry (least squares in one amplitude per metric); as a fault that stays
    at ``j`` (a CPU hog, a leak), a shift in its CPU or memory beyond the
    services' mean from the onset on; as an anomaly, an event in one of its metrics for
    ``event_s`` seconds from the onset. Its score is the largest share of the
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
        event = ((ticks[None, :] >= onset) & (ticks[None, :] < onset + event_s))   # (C, T)
        per_metric = np.sum(z[:, j, :, :] * event[:, None, :], axis=-1) ** 2 / np.maximum(
            event.sum(-1, keepdims=True), 1)                                                          # (C, M)
        # A fault that stays at its service: a shift in one of its resources beyond the services' mean
        # (a run's load moves them all).
        own = z[:, j][:, resources] - z[:, :, resources].mean(1)                                      # (C, 3, T)
        alone = np.sum(np.where(after[:, 0], own, 0.0), axis=-1) ** 2 / np.maximum(after[:, 0].sum(-1), 1)
        scores[:, j] = np.maximum(np.maximum(explained, per_metric.max(-1)), alone.max(-1)) / total
    return scores
