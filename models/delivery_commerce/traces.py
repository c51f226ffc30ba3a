"""Traces over the call graph and the log lines their spans write (``sample --traces``, ``--logs``).

Sampled after the series, from them: a trace starts at a drawn moment of its
run's window, and each of its spans reads its service's latency and error
rate at that tick of the series, so a fault shows in the spans (and logs) of
its service exactly as it shows in its metrics.

- **The tree** is the call graph unfolded from ``service.entry``: one span per
  call path (``call_tree``), parents before children. A span's own time is
  its service's latency at the tick times log-normal noise
  (``telemetry.traces.span_sd``); its duration is its own time plus its calls'
  durations, one after another, after the first half of its own work. So a
  caller's span always encloses its callees' and a slow dependency shows in
  every caller up the tree.
- **Status**: a span fails by its service's error rate at the tick, or when a
  call fails and the failure reaches it (``telemetry.traces.error_propagation``).
- **A fault in one operation's code** (``telemetry.traces.one_operation``: a
  regression, a code exception): the run draws one of the root cause's
  operations (``system_runs.fault_operation``), and every failure the fault
  adds at its service lands there: that operation's spans fail at the error
  rate without the fault plus the fault's excess times the service's number
  of operations, the others at the rate without it. Over the operations the
  service's failures are its series' error rate, as for any other fault.
- With ``telemetry.counterfactual``, each span's duration and status in the
  world without the run's fault too: the same noise and draws, read off the
  series without the fault.
- **Log lines**, two slots per span: a request line (INFO, at the span's
  start, at ``telemetry.logs.request_rate``) and an outcome line at its end,
  written when the span fails (ERROR) or its own time is more than
  ``telemetry.logs.slow_factor`` times its service's clean latency (WARN).
  The outcome's template names the cause: the run's fault kind at the root
  cause's service from the onset on (``telemetry.logs.faults``), a failed
  call, or a generic error or slow request. Templates are Drain-style text
  with ``<*>`` for the variable parts.
"""

from __future__ import annotations

import jax
import jax.numpy as jnp
import numpy as np
import numpyro
import numpyro.distributions as dist
from numpyro.distributions import constraints

from causalsynth.spec.modeling import derived, label, rows, timestamp
from causalsynth.spec.params import Params

from .telemetry import WITHOUT_FAULT

SPAN_STATUS = ("OK", "ERROR")
LOG_LEVELS = ("INFO", "WARN", "ERROR")


def call_tree(depends: np.ndarray, entry: int) -> tuple[np.ndarray, np.ndarray]:
    """The call graph from ``entry`` unfolded into a tree, one node per call path, parents first:
    ``(service, parent)`` per node (``parent`` -1 at the root)."""
    service, parent = [], []

    def visit(s: int, up: int) -> None:
        service.append(s)
        parent.append(up)
        here = len(service) - 1
        for callee in np.flatnonzero(depends[s]):
            visit(int(callee), here)

    visit(entry, -1)
    return np.asarray(service, np.int32), np.asarray(parent, np.int32)


def operations(p: Params, services: tuple[str, ...]) -> tuple[tuple[str, ...], np.ndarray]:
    """Every operation's name, and each service's operations as a 0/1 row over them."""
    ops = p.telemetry.traces.operations
    names = tuple(dict.fromkeys(op for s in services for op in ops[s]))
    offered = np.asarray([[op in ops[s] for op in names] for s in services], np.float32)
    return names, offered


def fault_templates(p: Params) -> tuple[str, ...]:
    """The log templates, outcome lines' fault templates included: the ``template`` levels."""
    lg = p.telemetry.logs
    return tuple(dict.fromkeys((lg.request, lg.slow, lg.error, lg.upstream_error, *lg.faults.values())))


def traces(p: Params, plates, run_start: str, series: dict, services: tuple[str, ...], depends: np.ndarray,
           fault_kinds: tuple[str, ...]) -> None:
    """The ``traces`` and ``trace_spans`` tables (and ``trace_logs`` with ``telemetry.logs.enabled``).

    ``series``: the run's series (``latency``, ``errors`` and ``clean_latency`` per service and tick,
    ``(B,R,S,T)``) and its incident (``root``, ``kind`` and ``onset``, ``(B,R,1,1)``)."""
    tm, tr = p.telemetry, p.telemetry.traces
    n_ticks, tick_s = int(tm.ticks), tm.tick_s
    span_service, span_parent = call_tree(depends, services.index(p.service.entry))
    n_spans = len(span_service)
    children = [np.flatnonzero(span_parent == k) for k in range(n_spans)]
    op_names, offered = operations(p, services)
    one_op = jnp.asarray([k in tr.one_operation for k in fault_kinds])[series["kind"]]       # (B,R,1,1)
    root = series["root"]
    with plates.prs, plates.runs:
        at_root = jnp.asarray(offered)[jnp.maximum(root, 0)]                                 # (B,R,1,1,O)
        fault_op = numpyro.sample("_fault_operation", dist.Categorical(at_root / at_root.sum(-1, keepdims=True)))
        one_op = one_op & (root >= 0)
        label("fault_operation", jnp.where(one_op, fault_op + 1, 0), ("NONE", *op_names))
    with plates.prs, plates.runs, plates.traces:
        offset = n_ticks * tick_s * numpyro.sample("_trace_u", dist.Uniform(0.0, 1.0))     # (B,R,Tr,1)
        tick = jnp.clip(jnp.floor(offset / tick_s).astype(jnp.int32), 0, n_ticks - 1)

    def at_spans(values):
        """A per-service, per-tick series ``(B,R,S,T)`` read at each span's service and its trace's tick."""
        per_span = jnp.take(values, jnp.asarray(span_service), axis=-2)                   # (B,R,K,T)
        return jnp.take_along_axis(per_span[..., None, :, :], tick[..., None], axis=-1)[..., 0]   # (B,R,Tr,K)

    with plates.prs, plates.runs, plates.traces, plates.spans:
        noise = numpyro.sample("_span_noise", dist.LogNormal(0.0, tr.span_sd))
        chance = numpyro.sample("_span_fails_u", dist.Uniform(0.0, 1.0))   # a span fails below its error rate
        carries = numpyro.sample("_span_carries", dist.Bernoulli(tr.error_propagation)).astype(bool)
        choices = offered[span_service]
        op = numpyro.sample("_span_operation", dist.Categorical(jnp.asarray(choices / choices.sum(-1, keepdims=True))))
        own = at_spans(series["latency"]) * noise
        # A fault in one operation's code: its service's excess failures, all in that operation.
        errors, base = at_spans(series["errors"]), at_spans(series["errors_without"])
        in_code = one_op & (root == jnp.asarray(span_service))                              # (B,R,1,K)
        per_op = jnp.asarray(offered.sum(-1)[span_service])                                 # (K,)
        errors = jnp.where(in_code, jnp.where(op == fault_op, jnp.clip(base + (errors - base) * per_op, 0.0, 1.0),
                                              base), errors)
        duration, failed, upstream = _tree(own, chance < errors, carries, children)
        start = [jnp.zeros_like(own[..., 0])] + [None] * (n_spans - 1)    # seconds from the trace's start
        for k in range(n_spans):
            at = start[k] + 0.0005 * own[..., k]            # half its own work (ms) before the first call
            for c in children[k]:
                start[c] = at
                at = at + 0.001 * duration[c]
        # One materialised copy: spans and their log lines read the same bits (fused apart, XLA may round
        # the two computations differently, and a line could land a millisecond before its span).
        duration, start = jax.lax.optimization_barrier((jnp.stack(duration, -1), jnp.stack(start, -1)))
        failed, upstream = jnp.stack(failed, -1), jnp.stack(upstream, -1)
        grid = duration.shape
        derived("_parent_span", jnp.broadcast_to(jnp.asarray(span_parent), grid), constraints.integer_interval(
            -1, n_spans - 1))
        label("spans.service_name", jnp.broadcast_to(jnp.asarray(span_service), grid), services)
        label("spans.operation", jnp.broadcast_to(op, grid), op_names)
        timestamp("spans.started_at", start, since="traces.started_at")
        derived("spans.duration_ms", duration, constraints.positive)
        label("spans.status", failed, SPAN_STATUS)
        if "latency_without" in series:   # the same spans (same noise) in the world without the run's fault
            without, failed_without, _ = _tree(at_spans(series["latency_without"]) * noise, chance < base, carries,
                                               children)
            derived(f"spans.duration_ms{WITHOUT_FAULT}", jnp.stack(without, -1), constraints.positive)
            label(f"spans.status{WITHOUT_FAULT}", jnp.stack(failed_without, -1), SPAN_STATUS)
    with plates.prs, plates.runs, plates.traces:
        timestamp("traces.started_at", offset, since=run_start)
        derived("traces.duration_ms", duration[..., :1], constraints.positive)
        label("traces.status", failed[..., :1], SPAN_STATUS)
    if tm.logs.enabled:
        # The run's fault is at this span's service (in its operation, for a fault in one), under way when
        # its trace starts: its outcome line names the fault.
        at_fault = (root == jnp.asarray(span_service)) & (offset >= series["onset"]) & (~one_op | (op == fault_op))
        logs(p, plates, series["kind"], series["clean_latency"], at_fault, span_service, own, start, duration, failed,
             upstream, services, fault_kinds)


def _tree(own, fails, carries, children) -> tuple[list, list, list]:
    """Each span's duration (its own time plus its calls'), whether it failed (on its own, or by a call
    whose failure it ``carries``) and whether a call's failure reached it: bottom-up, children after
    their parents in the tree's order; per span, ``(..., K)`` arrays split along the last axis."""
    n_spans = own.shape[-1]
    duration, failed = [None] * n_spans, [None] * n_spans
    upstream = [jnp.zeros_like(fails[..., 0])] * n_spans
    for k in reversed(range(n_spans)):
        calls = [duration[c] for c in children[k]]
        duration[k] = own[..., k] + sum(calls, jnp.zeros_like(own[..., k]))
        upstream[k] = jnp.any(jnp.stack([failed[c] & carries[..., c] for c in children[k]]
                                        + [jnp.zeros_like(fails[..., k])]), axis=0)
        failed[k] = fails[..., k] | upstream[k]
    return duration, failed, upstream


def logs(p: Params, plates, kind, clean_latency, at_fault, span_service, own, start, duration, failed, upstream,
         services: tuple[str, ...], fault_kinds: tuple[str, ...]) -> None:
    """The ``trace_logs`` table: two slots per span, the request line and the outcome line. ``kind``: the
    run's fault kind; ``at_fault``: the spans the fault is at ``(B,R,Tr,K)``."""
    lg = p.telemetry.logs
    templates = fault_templates(p)
    n_spans = len(span_service)
    slot_span = np.repeat(np.arange(n_spans), 2)                                          # (L,)
    outcome = np.tile([False, True], n_spans)
    services_at = jnp.asarray(span_service)[slot_span]
    clean = jnp.take(clean_latency, jnp.asarray(span_service), axis=-2)[..., 0]           # (B,R,K)
    slow = own > lg.slow_factor * clean[..., None, :]                                     # (B,R,Tr,K)
    fault_template = jnp.asarray([templates.index(lg.faults[k]) if k in lg.faults else templates.index(lg.error)
                                  for k in fault_kinds])[kind]                            # (B,R,1,1)
    generic = jnp.where(failed, jnp.where(upstream, templates.index(lg.upstream_error), templates.index(lg.error)),
                        templates.index(lg.slow))
    template = jnp.where(at_fault & (failed | slow) & ~upstream, fault_template, generic)
    with plates.prs, plates.runs, plates.traces, plates.log_lines:
        request = numpyro.sample("_log_request", dist.Bernoulli(lg.request_rate)).astype(bool)
        def by_slot(values):  # (…, K) per span -> (…, L) per log slot
            return jnp.take(values, jnp.asarray(slot_span), axis=-1)

        written = jnp.where(outcome, by_slot(failed | slow), request)
        grid = written.shape
        rows("_log_written", written)
        derived("_log_span", jnp.broadcast_to(jnp.asarray(slot_span), grid), constraints.integer_interval(
            0, n_spans - 1))
        label("log_lines.service_name", jnp.broadcast_to(services_at, grid), services)
        label("log_lines.level", jnp.where(outcome, jnp.where(by_slot(failed), 2, 1), 0), LOG_LEVELS)
        label("log_lines.template", jnp.where(outcome, by_slot(template), templates.index(lg.request)), templates)
        timestamp("log_lines.logged_at", by_slot(start) + jnp.where(outcome, 0.001 * by_slot(duration), 0.0),
                  since="traces.started_at")
