"""The shipped model's own root-cause method: it knows how the model's faults look.

A regression or an injected fault starts at one service and reaches each
caller a hop lag later, scaled by the propagation share per hop of the
shortest path; an anomaly is an event at one service; an unrelated event
(``telemetry.spurious_rate``) is a bump of known size and length from any
moment of the window, cut at its end. The unrelated event is found first
(``unrelated_event``) and taken out; then each candidate's predicted pattern
is fitted to the z-scored series after the onset, and candidates are ranked
by how much of them it explains. An unrelated event that is the incident
again, near its onset (``telemetry.spurious_mimic``, ``telemetry.spurious_near``),
cannot be told by its size; it is told by where it starts: a candidate's fit
is weighed by how much likelier its own service's pattern starts at the onset
than two ticks or more off it. Declared as ``RCA_METHODS``
(tasks.py), scored beside the engine's model-independent methods
(``causalsynth.tasks.rca``).
"""

from __future__ import annotations

import warnings

import numpy as np

from causalsynth.tasks.rca import Cases, split_at_onset

from .mechanisms import dependency_matrix, hops, reach
from .tasks import INCIDENTS

# The series a fault moves at the callers it reaches (INCIDENTS.metrics' columns): what calls carry
# (waits, failures) and, for a regression, the requests a slower service serves.
CALLER_METRICS = ("latency_ms", "p95_latency_ms", "request_rate", "error_rate")
# The series a fault that stays at its service moves (a CPU hog, a leak, disk pressure).
RESOURCE_METRICS = ("cpu_usage", "memory_usage", "disk_usage")
# The series an unrelated event multiplies (p95 latency follows the latency).
UNRELATED_METRICS = ("latency_ms", "p95_latency_ms")
# How far a window's mean log-lift may be from the unrelated event's size, as a share of that size, and
# still be taken for it: on rca_medium it finds about half of them, and rarely one in a run without
# (tests/test_telemetry.py).
UNRELATED_TOLERANCE = 0.2
# Which of a candidate's patterns (``_fits``) are ramps; the others are steps and events.
RAMPS = np.asarray([False, False, True, False, True])


def mechanism(cases: Cases, config) -> np.ndarray:
    """Service scores (C, S) from the world's call graph, hop lag, propagation share and event lengths."""
    tm = config.get("telemetry")
    if tm["spurious_rate"] > 0 and tm["spurious_mimic"] == 0:
        cases = without_unrelated_event(cases, np.log1p(tm["spurious_size"]), tm["spurious_s"])
    window = cases.series.shape[-1] * cases.tick_s
    return _scores(cases, dependency_matrix(config.params, cases.services), tm["hop_lag_s"],
                   config.get("service.propagation_share"), tm["anomaly_s"],
                   int(np.ceil(tm["spurious_near"] * window / cases.tick_s)) if tm["spurious_rate"] > 0 else 0,
                   tuple(tm["faults"]["ramp"]), INCIDENTS.shared[1])


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
    same size may still be taken for it a few ticks off the onset."""
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
    off = np.where(np.isfinite(off) & (np.abs(start - cases.onset_tick[:, None, None]) > 1), off, np.inf)
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


def _scores(cases: Cases, depends: np.ndarray, hop_lag_s: float, share: float, event_s: float,
            off_ticks: int, ramps: tuple[str, ...], shared: tuple[str, ...]) -> np.ndarray:
    """Service scores (C, S) of a method that knows the model's fault patterns.

    On log series z-scored by their pre-onset mean and sd, candidate ``j``
    predicts, as a fault that travels up the calls (a regression, a delay, a
    loss), a level shift at each service ``s`` it reaches, ``share ** hops``
    times its own, from ``onset + hop_lag * hops`` on, in the metrics calls
    carry (least squares in one amplitude per metric); as a fault that stays
    at ``j`` (a CPU hog, a leak), a shift in its CPU or memory beyond the
    services' mean from the onset on; as an anomaly, an event in one of its metrics for
    ``event_s`` seconds from the onset. Its fit is the largest share of the
    post-onset sum of squares one of them explains.

    An event that looks like the incident but starts two ticks or more off the onset
    (``telemetry.spurious_near``) fits better from its own start: with ``off_ticks``, each candidate's
    pattern is also fitted at its own service from the onset moved by 2 to ``off_ticks`` ticks either
    way, and its fit is weighed by how much likelier its pattern starts at the onset than at the best
    of those: the likelihood ratio of the two fits on z-scores, ``exp(difference / 2)``, at most 1
    (scores are then logs).
    """
    n_ticks = cases.series.shape[-1]
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", RuntimeWarning)
        logs = np.log(np.maximum(cases.series, 1e-9))
        before, _ = split_at_onset(Cases(**{**cases.__dict__, "series": logs}))
        z = (logs - np.nanmean(before, -1, keepdims=True)) / np.maximum(np.nanstd(before, -1, keepdims=True), 1e-6)
    z = np.nan_to_num(z, nan=0.0)
    ticks = np.arange(n_ticks) * cases.tick_s + cases.tick_s / 2
    onset = cases.onset_s[:, None]
    total = np.sum(np.where((ticks[None, :] >= onset)[:, None, None, :], z, 0.0) ** 2, axis=(1, 2, 3)) + 1e-9
    # Ranked by the steps and events; the ramps only tell a ramp's start (below).
    fit = _fits(cases, z, onset, depends, hop_lag_s, share, event_s)[..., ~RAMPS].max(-1) / total[:, None]
    shifts = [d for d in range(-off_ticks, off_ticks + 1) if abs(d) >= 2]
    if not shifts:
        return fit
    # Where each starts is told at its own service, by the ticks near the onset (over the whole window,
    # steps a few ticks apart fit a step almost as well), in the pattern of the case's kind that fits it
    # best there (a later step fits a ramp better than one at the ramp's start).
    until = onset + (off_ticks + 3) * cases.tick_s
    # A kind every service feels through the run (a regression) steps them all at the onset: its start
    # at a service is told beyond the services' mean.
    relative = np.where(np.isin(cases.kind, shared)[:, None, None, None], z - z.mean(1, keepdims=True), z)
    local = np.stack([_fits(cases, relative, onset + d * cases.tick_s, depends, hop_lag_s, share, event_s, until,
                            callers=False) for d in (0, *shifts)])                                  # (D, C, S, 5)
    # A ramp kind's start is told by the ramps, another's by the steps and events.
    forms = RAMPS == np.isin(cases.kind, ramps)[:, None, None]
    best = np.argmax(np.where(forms, local[0], -np.inf), -1)[None, ..., None]
    local = np.take_along_axis(local, best, -1)[..., 0]                                              # (D, C, S)
    # In logs: ratios far below 1 would round to 0 and tie.
    return np.log(np.maximum(fit, 1e-300)) + np.minimum(local[0] - np.max(local[1:], axis=0), 0.0) / 2.0


def _fits(cases: Cases, z: np.ndarray, onset: np.ndarray, depends: np.ndarray, hop_lag_s: float, share: float,
          event_s: float, until: np.ndarray | float = np.inf, callers: bool = True) -> np.ndarray:
    """Each candidate's sum of squares explained (C, S, 5) by each of its patterns from ``onset`` (C, 1),
    seconds, over the ticks before ``until``: a step up the calls, an event or a ramp in one of its
    metrics, a step and a ramp of its own resources; without ``callers``, by what they predict at its own
    service only (``_scores``)."""
    n_cases, n_svc, n_metrics, n_ticks = z.shape
    carried = np.asarray([m in CALLER_METRICS for m in cases.metrics])
    resources = [cases.metrics.index(m) for m in RESOURCE_METRICS]
    ticks = np.arange(n_ticks) * cases.tick_s + cases.tick_s / 2
    inside = ticks[None, :] < until                                                                   # (C or 1, T)
    z = np.where(inside[:, None, None, :], z, 0.0)
    after = (ticks[None, :] >= onset)[:, None, None, :]
    window = n_ticks * cases.tick_s
    ramp = np.clip((ticks[None, :] - onset) / np.maximum(window - onset, 1e-6), 0.0, 1.0)
    after, ramp = after & inside[:, None, None, :], (ramp * inside)[:, None]
    distance = hops(depends) if callers else np.where(np.eye(n_svc, dtype=bool), 0, 10 * n_svc)
    scores = np.zeros((n_cases, n_svc, len(RAMPS)))
    for j in range(n_svc):
        reached = distance[j] < n_svc                                                                  # (S,)
        weight = np.where(carried[None, :], np.asarray(reach(distance[j], share, n_svc))[:, None], 0.0)  # (S, M)
        start = onset[:, :, None] + hop_lag_s * np.where(reached, distance[j], 0)[None, :, None]     # (C, S, 1)
        step = ((ticks[None, None, :] >= start) & inside[:, None, :])[:, :, None, :] * weight[None, :, :, None]
        # One amplitude per metric, by least squares: its explained sum of squares is fit^2 / |step|^2.
        fit = np.sum(step * z, axis=(1, 3))                                                           # (C, M)
        explained = np.sum(fit ** 2 / np.maximum(np.sum(step ** 2, axis=(1, 3)), 1e-9), axis=1)     # (C,)
        event = (ticks[None, :] >= onset) & (ticks[None, :] < np.minimum(onset + event_s, until))   # (C, T)
        per_metric = np.sum(z[:, j, :, :] * event[:, None, :], axis=-1) ** 2 / np.maximum(
            event.sum(-1, keepdims=True), 1)                                                          # (C, M)
        # Or a ramp in one of them (a leak).
        rising = np.sum(z[:, j, :, :] * ramp, axis=-1) ** 2 / np.maximum(np.sum(ramp ** 2, axis=-1), 1e-9)
        # A fault that stays at its service: a shift in one of its resources beyond the services' mean
        # (a run's load moves them all), a step or a ramp.
        own = z[:, j][:, resources] - z[:, :, resources].mean(1)                                      # (C, 3, T)
        alone = [(np.sum(own * form, axis=-1) ** 2 / np.maximum(np.sum(form ** 2, axis=-1), 1e-9)).max(-1)
                 for form in (after[:, 0], ramp)]
        scores[:, j] = np.stack([explained, per_metric.max(-1), rising.max(-1), *alone], -1)
    return scores
