"""Per-service metric series over a run's window, and the incident each run carries.

Sampled last (so every other site draws the same keys with or without it),
in a ``ticks`` plate nested in ``services``: one row per run × service × tick.

Each series is its snapshot's window, unfolded in time: the clean level (the
snapshot's value in the world without the regression), times a profile
that says how the metric moves over the window (1 before the regression
reaches the service, a post-onset multiplier after it, chosen so that the
profile's window mean is the snapshot's ratio to its clean level), times
the series' own motion scaled to a window mean of 1. So the window mean is
the snapshot's up to the noise (exactly, without a regression), and before
the onset a service's values are those of the world without the fault, tick
for tick. The motion, in logs, is what makes the series telemetry rather
than a template:

- the run's traffic, shared by its services: an AR(1) path
  (``telemetry.traffic``) on a daily cycle at the run's hour. Each metric
  follows it by its own elasticity (``telemetry.metrics.M.load_elasticity``:
  requests fully, latency and CPU in part), so within a window latency and
  CPU rise with the request rate and services move together;
- each metric's own AR(1) noise, its persistence and size its own
  (``telemetry.metrics.M``: memory slow, errors jumpy); a callee's latency
  noise reaches its callers by ``telemetry.call_share`` per call, so a
  caller's latency includes its callees';
- latency bursts (``telemetry.bursts``): at a tick's ``rate``, a jump of
  exponential size, heavier in p95, which has its own tail noise;
- a slow linear drift per service (``telemetry.drift``).

CPU, memory and disk sit at the run's level times the service's
(``telemetry.resource_level``) and saturate smoothly towards 1 instead of
being clipped, so a resource fault at a busy service still shows.

- a regressed PR's deployment lands at a tick drawn in ``telemetry.onset``
  (a share of the window). Its primary service degrades from then on; each
  caller up the dependency graph ``telemetry.hop_lag_s`` later per hop, by
  the same exposure the snapshot's degradation uses. The post-onset level is
  chosen so that the window mean equals the snapshot's expected ratio to its
  clean level, which leaves the pre-onset level at the clean one;
- an anomalous run's anomaly is an event: it starts at a tick drawn in
  ``telemetry.onset`` (as a fault's onset), lasts
  ``telemetry.anomaly_s`` (ending inside the window), at the regression's service from its onset in
  a regressed run (its symptom) and else at a drawn one, and moves the metric its type names
  (PERFORMANCE: latency, ERROR_RATE: errors, RESOURCE_USAGE: CPU and memory,
  BEHAVIOR: dropped requests, so fewer served and as many more refused: request
  rate down, error rate up, by the same factor). Events sit on top of the scaled series, so a
  service's window mean exceeds its snapshot by the event's share;
- a run with neither gets an injected fault at ``telemetry.faults.rate`` (a
  chaos experiment runs on a steady system), of a kind drawn from its mix, at
  a drawn service, from the onset on: each kind moves the metrics its
  ``effects`` name at that service (stepping, or growing to the window's end
  for a ``ramp`` kind), and what calls carry (latency, errors) at each caller,
  ``service.propagation_share ** hops`` as much, a hop lag later per hop
  (``injected_lift``). Like events, it sits on top of the scaled series;
- ``telemetry.spurious_rate``: a run also shows an unrelated event at
  another service (the confusion real incidents come with), labelled in
  ``spurious_event_service``: a latency shift of its own size
  (``telemetry.spurious_size``) and length (``telemetry.spurious_s``, from a
  moment drawn anywhere in the window, cut at its end). With
  ``telemetry.spurious_mimic`` it also carries the run's own incident, that
  many times its size, at its service only (it reaches no caller): the
  anomaly's metrics, the injected fault's effects, or the regression's step
  at its root. With ``telemetry.spurious_near`` it starts near the incident's
  onset, two ticks to that share of the window before or after it, never at
  it. The world without the fault keeps it: it is not the fault;
- ``telemetry.gap_rate``: ticks go missing (rows absent), as scrapes do;
- ``telemetry.faults.concurrent`` (off by default): an incident run also gets
  a second injected fault at ``rate``, at another service, of a kind drawn
  from the same mix, from the first fault's onset: two root causes at once,
  the second labelled in ``second_root_cause_service`` and
  ``second_fault_kind``.

With ``telemetry.counterfactual`` each column also has its value in the world
without the run's fault (``latency_ms_without_fault``, …): the same noise,
traffic, bursts and unrelated event, the fault's terms taken out (the twin
``do(has_performance_regression=false)`` gives a regression's, tick for tick).
Where the fault changes nothing, the two are the same bits.

The ground truth per run: ``root_cause_service`` (the regressed PR's primary
service; else the anomaly's or the injected fault's service; else NONE),
``fault_kind`` (REGRESSION, an anomaly type, an injected fault, or NONE),
``fault_onset_s``, seconds from the window's start (-1 without a fault), and
``spurious_event_service`` (the unrelated event's service, or NONE).
"""

from __future__ import annotations

import jax.numpy as jnp
import numpy as np
import numpyro
import numpyro.distributions as dist
from numpyro.distributions import constraints

from causalsynth.spec.modeling import derived, label, rows, timestamp
from causalsynth.spec.params import Params

from .mechanisms import hops, over_services, reach, vec

# The series' metrics, in the order of the stacks below.
METRICS = ("latency", "errors", "requests", "cpu", "memory", "disk")
LATENCY = np.asarray([m == "latency" for m in METRICS], np.float32)
RESOURCES = np.asarray([m in ("cpu", "memory", "disk") for m in METRICS])
# What a call carries from a callee to its caller: its wait, and its failures.
CARRIED = np.asarray([m in ("latency", "errors") for m in METRICS])
# Which metrics each anomaly type moves. BEHAVIOR drops requests: a service that serves fewer of the requests
# its callers send refuses the rest, so its error rate rises as its request rate falls.
ANOMALY_METRICS = {"PERFORMANCE": ("latency",), "ERROR_RATE": ("errors",), "RESOURCE_USAGE": ("cpu", "memory"),
                   "BEHAVIOR": ("requests", "errors")}
# The injected infrastructure faults (``telemetry.faults``), each a mechanism of its own.
INJECTED_FAULTS = ("CPU_HOG", "MEMORY_LEAK", "DISK_PRESSURE", "NETWORK_DELAY", "PACKET_LOSS", "SOCKET_EXHAUSTION",
                   "CODE_EXCEPTION")
FAULT_KINDS = ("NONE", "REGRESSION", *ANOMALY_METRICS, *INJECTED_FAULTS)
# The suffix of each series column's value in the world without the run's fault (telemetry.counterfactual).
WITHOUT_FAULT = "_without_fault"


def _ar1(z, rho):
    """Stationary AR(1) paths along the last axis from standard normal ``z``, one coefficient per
    leading row of ``z`` (``rho`` of shape ``z.shape[:1]``) or one for all (a scalar)."""
    t = z.shape[-1]
    k = jnp.arange(t)
    rho = jnp.reshape(jnp.asarray(rho), (-1, 1, 1))                          # (R,1,1)
    lags = jnp.maximum(k[:, None] - k[None, :], 0)
    powers = jnp.where(k[:, None] >= k[None, :], rho ** lags, 0.0)
    weights = powers * jnp.where(k[None, :] == 0, 1.0, jnp.sqrt(1.0 - rho ** 2))   # (R,T,T)
    if weights.shape[0] == 1:
        return jnp.einsum("...j,kj->...k", z, weights[0])
    return jnp.einsum("r...j,rkj->r...k", z, weights)


def call_mixing(depends: np.ndarray, share) -> jnp.ndarray:
    """``C[s, j]``: how much of service ``j``'s own latency noise service ``s`` shows: 1 for itself,
    ``share ** hops`` along every call path from ``s`` down to ``j`` (``(I - share * A)^-1``)."""
    n = len(depends)
    step = share * jnp.asarray(depends, jnp.float32)
    out = term = jnp.eye(n, dtype=jnp.float32)
    for _ in range(n - 1):  # a call graph without cycles has paths of at most n - 1 calls
        term = step @ term
        out = out + term
    return out


def injected_lift(effect, share, distance, start, mid, window, ramp):
    """An injected fault's log-multiplier of each metric, ``(M, ..., S, T)``.

    ``effect``: its size per metric ``(M, ..., 1, 1)`` (the kind's effects times the severity);
    ``distance``: hops from the faulty service up to each service ``(..., S, 1)`` (0 there; ``S`` or
    more where the fault does not reach); ``start``: when it reaches each, seconds ``(..., S, 1)``;
    ``mid``: the ticks' centres; ``ramp``: whether it grows from its start to full size at the
    window's end (a leak) instead of stepping to it ``(..., 1, 1)``. At the faulty service every
    metric moves; a caller's latency and errors move by ``share ** hops``, and only from its later
    start: so no caller ever moves more than the faulty service, at any tick (``share <= 1``)."""
    felt = reach(distance, share, distance.shape[-2])
    weight = jnp.where(jnp.asarray(CARRIED).reshape((-1,) + (1,) * felt.ndim), felt, distance == 0)
    progress = jnp.where(ramp, jnp.clip((mid - start) / jnp.maximum(window - start, 1e-6), 0.0, 1.0),
                         (mid >= start).astype(jnp.float32))
    return effect * weight * progress


def _metric_columns(value, p95_ratio, tail_lift, suffix: str):
    """The series' columns from the metrics' values ``(M,B,R,S,T)``, each named with ``suffix``; p95
    latency is the latency times the run's ``p95_ratio`` times the tick's ``tail_lift``. Returns
    latency and error rate."""
    latency = derived(f"ticks.latency_ms{suffix}", value[0], constraints.positive)
    derived(f"ticks.p95_latency_ms{suffix}", latency * p95_ratio * tail_lift, constraints.positive)
    derived(f"ticks.request_rate{suffix}", value[2], constraints.positive)
    errors = derived(f"ticks.error_rate{suffix}", jnp.clip(value[1], 0.0, 1.0), constraints.unit_interval)
    derived(f"ticks.cpu_usage{suffix}", saturate(value[3]), constraints.unit_interval)
    derived(f"ticks.memory_usage{suffix}", saturate(value[4]), constraints.unit_interval)
    derived(f"ticks.disk_usage{suffix}", saturate(value[5]), constraints.unit_interval)
    return latency, errors


def _injected(p: Params, fault, service, severity, active, onset, distance: np.ndarray, mid, window):
    """The multiplier of each metric ``(M,B,R,S,T)`` of an injected fault of kind ``fault`` (index into
    ``INJECTED_FAULTS``) at ``service``, of ``severity``, where ``active``, from ``onset`` at its service
    and a hop lag later per hop up the calls (``injected_lift``)."""
    n_svc = len(distance)
    fault_distance = jnp.swapaxes(jnp.asarray(distance)[service][..., 0, :], -1, -2)    # (B,R,S,1)
    fault_start = onset + p.telemetry.hop_lag_s * jnp.where(fault_distance < n_svc, fault_distance, 0)
    return jnp.exp(injected_lift(_fault_effect(p, fault) * severity * active, p.service.propagation_share,
                                 fault_distance, fault_start, mid, window, _ramps(p)[fault]))


def _fault_effect(p: Params, fault):
    """An injected fault's log-scale effect on each metric at full size ``(M, ...)``, by its kind ``fault``."""
    effects = jnp.stack([vec(p.telemetry.faults.effects[k], METRICS) for k in INJECTED_FAULTS])   # (K,M)
    return jnp.moveaxis(effects[fault], -1, 0)


def _ramps(p: Params):
    """Whether each injected fault kind grows to its full size at the window's end (else it steps)."""
    return jnp.asarray([k in p.telemetry.faults.ramp for k in INJECTED_FAULTS])


def unrelated_start(tm: Params, u, onset, window):
    """When the unrelated event starts, seconds from the window's start: ``u`` (uniform) of the window;
    or, with ``telemetry.spurious_near``, before (``u`` under 1/2) or after the incident's ``onset``,
    by two ticks to that share of the window: near the onset, never on its tick."""
    gap = 2.0 * tm.tick_s
    off = gap + jnp.abs(2.0 * u - 1.0) * jnp.maximum(tm.spurious_near * window - gap, 0.0)
    near = jnp.clip(onset + jnp.where(u < 0.5, -off, off), 0.0, window - tm.tick_s)
    return jnp.where(tm.spurious_near > 0, near, window * u)


def saturate(usage):
    """A share of capacity that approaches 1 smoothly instead of stopping at it: within 1 % of ``usage``
    up to 0.5 and increasing beyond, so a doubled load at a busy service still shows."""
    return usage / (1.0 + usage ** 6) ** (1.0 / 6.0)


def series(p: Params, plates, pr: dict, runs: dict, svc: dict, services: tuple[str, ...],
           depends: np.ndarray) -> dict:
    """The ``service_timeseries`` table and each run's root cause, onset and fault kind; returns what the
    traces read: latency, error rate, error rate without the fault and clean latency per service and
    tick ``(B,R,S,T)`` (with ``telemetry.counterfactual``, latency without the fault too), and the
    incident's ``root`` service (-1: none), ``kind`` (index into ``FAULT_KINDS``) and ``onset`` (s)."""
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
        # An event starts where a fault's onset can (not in the first ticks): every case keeps the history
        # that methods learn what is normal from, and it still ends inside the window.
        event_start = jnp.minimum(window * numpyro.sample("_event_u", dist.Uniform(tm.onset["from"], tm.onset["to"])),
                                  window - tm.anomaly_s)
        event_service = numpyro.sample("_event_service", dist.Categorical(jnp.ones(n_svc) / n_svc))
        spurious = numpyro.sample("_spurious", dist.Bernoulli(tm.spurious_rate))
        spurious_u = numpyro.sample("_spurious_u", dist.Uniform(0.0, 1.0))
        # Another service than the root cause's: a shift of 1..S-1 places.
        spurious_shift = 1 + numpyro.sample("_spurious_shift", dist.Categorical(jnp.ones(n_svc - 1) / (n_svc - 1)))
        anomalous = runs["kind"] > 0
        # A regressed run's anomaly is the regression's symptom: at its service from its onset, not a
        # second, unlabelled fault.
        event_service = jnp.where(regressed, primary, event_service)
        event_start = jnp.where(regressed, jnp.minimum(onset, window - tm.anomaly_s), event_start)
        # An injected fault, at a run with nothing else going on.
        ft = tm.faults
        injected = ~regressed & ~anomalous & (numpyro.sample("_fault", dist.Bernoulli(ft.rate)) > 0)
        fault = numpyro.sample("_fault_kind", dist.Categorical(vec(ft.kind.shares, INJECTED_FAULTS)))
        fault_service = numpyro.sample("_fault_service", dist.Categorical(jnp.ones(n_svc) / n_svc))
        severity = numpyro.sample("_fault_severity", dist.LogNormal(0.0, ft.severity_sd))
        root = jnp.where(regressed, primary,
                         jnp.where(anomalous, event_service, jnp.where(injected, fault_service, -1)))
        label("root_cause_service", root + 1, ("NONE", *services))
        kind = label("fault_kind", jnp.where(regressed, 1, jnp.where(anomalous, 1 + runs["kind"], jnp.where(
            injected, 2 + len(ANOMALY_METRICS) + fault, 0))), FAULT_KINDS)
        fault_onset = derived("fault_onset_s", jnp.where(regressed | injected, onset, jnp.where(
            anomalous, event_start, -1.0)), constraints.greater_than_eq(-1.0))
        spurious_start = unrelated_start(tm, spurious_u, jnp.where(root >= 0, fault_onset, onset), window)
        spurious_service = jnp.where(root >= 0, root, event_service)
        spurious_service = (spurious_service + spurious_shift) % n_svc
        shows = (tm.spurious_size > 0) | ((root >= 0) & (tm.spurious_mimic > 0))
        label("spurious_event_service", jnp.where(spurious & shows, spurious_service + 1, 0), ("NONE", *services))
    with plates.prs, plates.runs, plates.ticks:
        # The run's traffic, shared by its services: its own persistence, on the day's cycle.
        tr = tm.traffic
        day = tr.daily_amplitude * jnp.sin(2.0 * jnp.pi * (runs["hour"] + mid / 3600.0) / 24.0)
        traffic = tr.noise_sd * _ar1(numpyro.sample("_traffic_noise", dist.Normal(0.0, 1.0)), tr.autocorrelation)
        traffic = traffic + day - jnp.mean(day, axis=-1, keepdims=True)           # (B,R,1,T)
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
        dynamics = [tm.metrics[m] for m in METRICS]
        own = tm.noise_sd * jnp.stack([d.noise for d in dynamics]).reshape(-1, 1, 1, 1, 1) * _ar1(
            jnp.moveaxis(z, -1, 0), jnp.stack([d.autocorrelation for d in dynamics]))   # (M,B,R,S,T)
        # A caller's latency includes its callees': their own noise reaches it along the calls.
        own = own.at[0].set(over_services(call_mixing(depends, tm.call_share), own[0]))
        burst = numpyro.sample("_burst", dist.Bernoulli(tm.bursts.rate)) * numpyro.sample(
            "_burst_size", dist.Exponential(1.0 / tm.bursts.size))                        # (B,R,S,T)
        tail = tm.noise_sd * numpyro.sample("_tail_noise", dist.Normal(0.0, 1.0))
        elasticity = jnp.stack([d.load_elasticity for d in dynamics]).reshape(-1, 1, 1, 1, 1)
        noise = own + elasticity * traffic + LATENCY.reshape(-1, 1, 1, 1, 1) * burst      # bursts: latency
        wiggle = jnp.exp(noise + slope * (mid / window - 0.5))
        # Noise of window mean 1: a world without the fault has its snapshot as window mean, exactly, and
        # the same values before the onset as this one.
        shape = profile * wiggle / jnp.mean(wiggle, axis=-1, keepdims=True)
        # The same series in the world without the run's fault: no profile, no fault event, no injected
        # fault; the unrelated event stays (it is not the fault). Written in the same order of operations,
        # so wherever the fault changes nothing the two are the same bits.
        without = wiggle / jnp.mean(wiggle, axis=-1, keepdims=True)
        # Events on top: the run's anomaly at its service, a spurious one elsewhere.
        at_event = ((mid >= event_start) & (mid < event_start + tm.anomaly_s)
                    & (service_index == event_service) & anomalous)
        at_spurious = ((mid >= spurious_start) & (mid < spurious_start + tm.spurious_s)
                       & (service_index == spurious_service) & spurious)
        moves = jnp.asarray([[False] * len(METRICS)] + [[m in ANOMALY_METRICS[k] for m in METRICS] for k in kinds])
        moved = jnp.moveaxis(moves[runs["kind"]], -1, 0)                      # (M,B,R,1,1): the type's metrics
        size = jnp.where(jnp.asarray([m == "requests" for m in METRICS]).reshape(-1, 1, 1, 1, 1),
                         1.0 / (1.0 + tm.anomaly_size), 1.0 + tm.anomaly_size)  # fewer requests, more of the rest
        shape = shape * jnp.where(at_event & moved, size, 1.0)
        unrelated = jnp.where(at_spurious & (LATENCY > 0).reshape(-1, 1, 1, 1, 1), 1.0 + tm.spurious_size, 1.0)
        # With telemetry.spurious_mimic, the run's own incident at the other service too, that many times
        # its size (log scale), there only: its anomaly's metrics, or its injected fault or its regression's
        # step at the root (each metric by the root's post-onset multiplier).
        step = jnp.sum(jnp.where(service_index == primary, jnp.log(post), 0.0), axis=-2, keepdims=True)
        there = jnp.where(service_index == spurious_service, 0, n_svc)        # hops: reached there only
        mimic = jnp.where(anomalous & ~regressed, jnp.where(at_spurious & moved, size, 1.0), jnp.exp(injected_lift(
            jnp.where(regressed, step, _fault_effect(p, fault) * severity * injected) * spurious,
            p.service.propagation_share, there, spurious_start, mid, window, ~regressed & _ramps(p)[fault])))
        mimic = jnp.where(mid < spurious_start + tm.spurious_s, mimic, 1.0)
        unrelated = jnp.where(tm.spurious_mimic > 0, unrelated * mimic ** tm.spurious_mimic, unrelated)
        shape, without = shape * unrelated, without * unrelated
        # The injected fault, from its service up the calls.
        shape = shape * _injected(p, fault, fault_service, severity, injected, onset, distance, mid, window)
        present = numpyro.sample("_tick_present", dist.Bernoulli(1.0 - tm.gap_rate)).astype(bool)
    if ft.concurrent.enabled:  # after every other draw of the series, which keep their keys
        with plates.prs, plates.runs:
            second = (root >= 0) & (numpyro.sample("_second", dist.Bernoulli(ft.concurrent.rate)) > 0)
            second_fault = numpyro.sample("_second_kind", dist.Categorical(vec(ft.kind.shares, INJECTED_FAULTS)))
            second_service = (root + 1 + numpyro.sample(
                "_second_shift", dist.Categorical(jnp.ones(n_svc - 1) / (n_svc - 1)))) % n_svc
            second_severity = numpyro.sample("_second_severity", dist.LogNormal(0.0, ft.severity_sd))
            label("second_root_cause_service", jnp.where(second, second_service + 1, 0), ("NONE", *services))
            label("second_fault_kind", jnp.where(second, 1 + second_fault, 0), ("NONE", *INJECTED_FAULTS))
        with plates.prs, plates.runs, plates.services, plates.ticks:
            shape = shape * _injected(p, second_fault, second_service, second_severity, second,
                                      jnp.maximum(fault_onset, 0.0), distance, mid, window)
    with plates.prs, plates.runs, plates.services, plates.ticks:
        timestamp("ticks.started_at", jnp.broadcast_to(mid - 0.5 * tick_s, shape.shape[1:]), since="started_at")
        derived("tick_index", jnp.broadcast_to(jnp.arange(n_ticks, dtype=jnp.int32), shape.shape[1:]),
                constraints.integer_interval(0, n_ticks - 1))
        level = jnp.where(RESOURCES[:, None], vec(tm.resource_level, services)[None, :], 1.0)  # (M,S)
        level = level.reshape(len(METRICS), 1, 1, n_svc, 1)
        # The tail has its own noise, and a burst lifts it more than the median.
        tail_lift = jnp.exp(tail + 0.5 * burst)
        latency, errors = _metric_columns(clean * level * shape, runs["p95_ratio"], tail_lift, "")  # (M,B,R,S,T)
        out = {"latency": latency, "errors": errors, "clean_latency": clean[0], "root": root, "kind": kind,
               "onset": fault_onset}
        if tm.counterfactual:
            out["latency_without"], out["errors_without"] = _metric_columns(
                clean * level * without, runs["p95_ratio"], tail_lift, WITHOUT_FAULT)
        else:  # the traces' faults in one operation add their service's excess errors to it
            out["errors_without"] = jnp.clip(clean[1] * level[1] * without[1], 0.0, 1.0)
        rows("_ticks_present", jnp.broadcast_to(present, shape.shape[1:]))
    return out
