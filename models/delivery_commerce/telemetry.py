"""Per-service metric series over a run's window, and the incident each run carries.

Sampled last (so every other site draws the same keys with or without it),
in a ``ticks`` plate nested in ``services``: one row per run × service × tick.

Each series is its snapshot's window, unfolded in time: the clean level (the
snapshot's value in the world without the regression), times a profile
that says how the metric moves over the window (1 before the regression
reaches the service, a post-onset multiplier after it, chosen so that the
profile's window mean is the snapshot's ratio to its clean level), times
autocorrelated noise and a slow drift scaled to a window mean of 1. So the
window mean is the snapshot's up to the noise (exactly, without a
regression), and before the onset a service's values are those of the
world without the fault, tick for tick:

- a regressed PR's deployment lands at a tick drawn in ``telemetry.onset``
  (a share of the window). Its primary service degrades from then on; each
  caller up the dependency graph ``telemetry.hop_lag_s`` later per hop, by
  the same exposure the snapshot's degradation uses. The post-onset level is
  chosen so that the window mean equals the snapshot's expected ratio to its
  clean level, which leaves the pre-onset level at the clean one;
- an anomalous run's anomaly is an event: it starts at a drawn tick, lasts
  ``telemetry.anomaly_ticks``, at a drawn service, and moves the metric its
  type names (PERFORMANCE: latency, ERROR_RATE: errors, RESOURCE_USAGE: CPU and
  memory, BEHAVIOR: request rate). Events sit on top of the scaled series, so
  a service's window mean exceeds its snapshot by the event's share;
- ``telemetry.spurious_rate``: a run also shows an unrelated event at another
  service (the confusion real incidents come with);
- ``telemetry.gap_rate``: ticks go missing (rows absent), as scrapes do.

The ground truth per run: ``root_cause_service`` (the regressed PR's primary
service; else the anomaly's service; else NONE), ``fault_kind`` (REGRESSION,
an anomaly type, or NONE) and ``fault_onset_s``, seconds from the window's
start (-1 without a fault).
"""

from __future__ import annotations

import jax.numpy as jnp
import numpy as np
import numpyro
import numpyro.distributions as dist
from numpyro.distributions import constraints

from causalsynth.spec.modeling import derived, label, rows, timestamp
from causalsynth.spec.params import Params

FAULT_KINDS = ("NONE", "REGRESSION", "PERFORMANCE", "ERROR_RATE", "RESOURCE_USAGE", "BEHAVIOR")
# The series' metrics, in the order of the stacks below.
METRICS = ("latency", "errors", "requests", "cpu", "memory")
# Which metrics each anomaly type moves.
ANOMALY_METRICS = {"PERFORMANCE": ("latency",), "ERROR_RATE": ("errors",), "RESOURCE_USAGE": ("cpu", "memory"),
                   "BEHAVIOR": ("requests",)}


def hops(depends: np.ndarray) -> np.ndarray:
    """``H[j, s]``: hops from service ``j`` up to its caller ``s`` (0 for ``j`` itself; a large
    number where ``s`` does not reach ``j``): when a fault at ``j`` reaches ``s``."""
    n = len(depends)
    out = np.full((n, n), 10 * n, np.int32)
    np.fill_diagonal(out, 0)
    frontier = np.eye(n, dtype=bool)
    for step in range(1, n):
        frontier = (depends.astype(bool)[:, None, :] & frontier.T[None, :, :]).any(-1).T  # callers of the frontier
        newly = frontier & (out > step)
        out[newly] = step
    return out


def _ar1(z, rho):
    """Stationary AR(1) paths along the last axis from standard normal ``z``."""
    t = z.shape[-1]
    k = jnp.arange(t)
    powers = jnp.where(k[:, None] >= k[None, :], rho ** jnp.maximum(k[:, None] - k[None, :], 0), 0.0)
    weights = powers * jnp.where(k[None, :] == 0, 1.0, jnp.sqrt(1.0 - rho ** 2))
    return jnp.einsum("...j,kj->...k", z, weights)


def series(p: Params, plates, pr: dict, runs: dict, svc: dict, services: tuple[str, ...],
           depends: np.ndarray) -> None:
    """The ``service_timeseries`` table and each run's root cause, onset and fault kind."""
    tm = p.telemetry
    n_ticks, tick_s = int(tm.ticks), tm.tick_s
    window = n_ticks * tick_s
    mid = (jnp.arange(n_ticks) + 0.5) * tick_s                            # (T,) tick centres, seconds
    kinds = tuple(p.run.anomaly.type.shares)
    n_svc = len(services)
    service_index = jnp.arange(n_svc).reshape(-1, 1)
    primary = jnp.argmax(pr["is_primary"][..., 0], axis=-1)               # (B,1)
    # A service the fault cannot reach through the graph still feels the run's latency (run
    # coupling) from the onset on: no lag.
    distance = hops(depends)
    lag = tm.hop_lag_s * jnp.asarray(np.where(distance < n_svc, distance, 0), jnp.float32)[primary][..., None]
    primary = primary[..., None, None]                                    # (B,1,1,1)
    with plates.prs, plates.runs:
        regressed = runs["scale"] > 0                                     # (B,1,1,1)
        onset = window * numpyro.sample("_onset_u", dist.Uniform(tm.onset["from"], tm.onset["to"]))
        event_start = (window - tm.anomaly_ticks * tick_s) * numpyro.sample("_event_u", dist.Uniform(0.0, 1.0))
        event_service = numpyro.sample("_event_service", dist.Categorical(jnp.ones(n_svc) / n_svc))
        spurious = numpyro.sample("_spurious", dist.Bernoulli(tm.spurious_rate))
        spurious_start = (window - tm.anomaly_ticks * tick_s) * numpyro.sample("_spurious_u", dist.Uniform(0.0, 1.0))
        # Another service than the root cause's: a shift of 1..S-1 places.
        spurious_shift = 1 + numpyro.sample("_spurious_shift", dist.Categorical(jnp.ones(n_svc - 1) / (n_svc - 1)))
        anomalous = runs["kind"] > 0
        root = jnp.where(regressed, primary, jnp.where(anomalous, event_service, -1))
        label("root_cause_service", root + 1, ("NONE", *services))
        label("fault_kind", jnp.where(regressed, 1, jnp.where(anomalous, 1 + runs["kind"], 0)), FAULT_KINDS)
        derived("fault_onset_s", jnp.where(regressed, onset, jnp.where(anomalous, event_start, -1.0)),
                constraints.greater_than_eq(-1.0))
        spurious_service = jnp.where(root >= 0, root, event_service)
        spurious_service = (spurious_service + spurious_shift) % n_svc
    with plates.prs, plates.runs, plates.services:
        slope = tm.drift * numpyro.sample("_drift", dist.Normal(0.0, 1.0))   # (B,R,S,1)
    with plates.prs, plates.runs, plates.services, plates.ticks:
        # The regression's profile: 1 before the service is reached, its post-onset multiplier after,
        # chosen so the profile's window mean is the snapshot's ratio to its clean (twin) value.
        reached = regressed & (mid >= jnp.minimum(onset + lag, window - tick_s))   # (B,R,S,T)
        before = 1.0 - jnp.mean(reached, axis=-1, keepdims=True)              # share of the window before
        grid = svc["snapshot"]["latency"].shape                                # (B,R,S,1)
        clean = jnp.stack([jnp.broadcast_to(svc["clean"][m], grid) for m in METRICS])   # (M,B,R,S,1)
        snapshot = jnp.stack([jnp.broadcast_to(svc["snapshot"][m], grid) for m in METRICS])
        post = jnp.maximum((snapshot / clean - before) / jnp.maximum(1.0 - before, 1.0 / n_ticks), 0.05)
        profile = jnp.where(reached, post, 1.0)                               # (M,B,R,S,T)
        z = numpyro.sample("_series_noise", dist.Normal(0.0, 1.0).expand([len(METRICS)]).to_event(1))
        noise = tm.noise_sd * _ar1(jnp.moveaxis(z, -1, 0), tm.autocorrelation)   # (M,B,R,S,T)
        wiggle = jnp.exp(noise + slope * (mid / window - 0.5))
        # Noise of window mean 1: a world without the fault has its snapshot as window mean, exactly, and
        # the same values before the onset as this one.
        shape = profile * wiggle / jnp.mean(wiggle, axis=-1, keepdims=True)
        # Events on top: the run's anomaly at its service, a spurious one elsewhere.
        at_event = ((mid >= event_start) & (mid < event_start + tm.anomaly_ticks * tick_s)
                    & (service_index == event_service) & anomalous)
        at_spurious = ((mid >= spurious_start) & (mid < spurious_start + tm.anomaly_ticks * tick_s)
                       & (service_index == spurious_service) & spurious)
        moves = jnp.asarray([[False] * len(METRICS)] + [[m in ANOMALY_METRICS[k] for m in METRICS] for k in kinds])
        moved = jnp.moveaxis(moves[runs["kind"]], -1, 0)                      # (M,B,R,1,1): the type's metrics
        spurious_moves = jnp.asarray([m == "latency" for m in METRICS]).reshape(-1, 1, 1, 1, 1)
        bump = (at_event & moved) | (at_spurious & spurious_moves)
        size = jnp.where(jnp.asarray([m == "requests" for m in METRICS]).reshape(-1, 1, 1, 1, 1),
                         1.0 / (1.0 + tm.anomaly_size), 1.0 + tm.anomaly_size)  # fewer requests, more of the rest
        shape = shape * jnp.where(bump, size, 1.0)
        timestamp("ticks.started_at", jnp.broadcast_to(mid - 0.5 * tick_s, shape.shape[1:]), since="started_at")
        derived("tick_index", jnp.broadcast_to(jnp.arange(n_ticks, dtype=jnp.int32), shape.shape[1:]),
                constraints.integer_interval(0, n_ticks - 1))
        value = clean * shape                                                 # (M,B,R,S,T)
        latency = derived("ticks.latency_ms", value[0], constraints.positive)
        derived("ticks.p95_latency_ms", latency * runs["p95_ratio"] * jnp.exp(0.5 * tm.noise_sd * noise[0]),
                constraints.positive)
        derived("ticks.request_rate", value[2], constraints.positive)
        derived("ticks.error_rate", jnp.clip(value[1], 0.0, 1.0), constraints.unit_interval)
        derived("ticks.cpu_usage", jnp.clip(value[3], 0.0, 1.0), constraints.unit_interval)
        derived("ticks.memory_usage", jnp.clip(value[4], 0.0, 1.0), constraints.unit_interval)
        present = numpyro.sample("_tick_present", dist.Bernoulli(1.0 - tm.gap_rate)).astype(bool)
        rows("_ticks_present", jnp.broadcast_to(present, shape.shape[1:]))
