"""Software delivery → e-commerce: how a pull request's risk reaches a shopper, and what else does.

The generative story, outermost plate first (``story.py``, one function per stage):

0. **The calendar** (``merge_time``). PRs merge over a window of days from
   ``sampling.start``: more on weekdays and in end-of-quarter pushes, few in the
   code freeze, around an afternoon peak hour. A merge at the end of a quarter,
   on a Friday evening, during the freeze (an exception) or in the holiday
   shopping weeks is under *release pressure*. Optionally (``team_workload``)
   a hidden per-PR workload of the merging team, higher at quarter ends.
1. **Pull requests** (``pull_request``, ``regression``). A size class sets how
   many lines change; pressure pushes lines to the top of the class, lowers
   test coverage and raises complexity. Whether the PR regresses is a
   Bernoulli whose log-odds add up its features, the release pressure (and
   the hidden workload), around a calibrated intercept. A regression has a
   severity, which sets an effect scale, and lands on the PR's primary service.
2. **System runs** (``run``). Runs start hours after the merge; their hour,
   weekday and season set the shopper traffic (load intensity), which raises
   latency, resource use and anomalies. The regression raises latency, errors,
   timeouts and resource use; the hidden workload adds background load. A
   run's requests split into success, timeout and error categories by one
   Dirichlet draw, so the rates always sum to 1 and agree with the counts.
   Anomalies move the metric they are named after; a run fails more often
   when regressed, anomalous or erroring.
3. **Service metrics** (``service_metrics``). The regression degrades the
   primary service and, through the dependency graph, its callers. Latency and
   errors set each service's health score, status band and failure flag.
4. **E-commerce flows** (``flow``). A shopper of some segment, device and
   region arrives with a cart; purchase intent and cart value rise in the
   holiday weeks and follow the hour, by device. Each funnel step is a call to
   one service of this run. After browsing, adding to the cart and checking
   out, the shopper goes on unless a stop cause fires: a stock-out
   (INVENTORY: cart size, load), a shipping shock (SHIPPING: region, cart
   value) or leaving (USER_EXIT: intent, latency).
5. **Flow steps** (``flow_steps``). The calls, on a padded grid of slots with
   a row mask: a failed call is retried; a call that fails for good stops the
   flow (PAYMENT at the payment step, TECHNICAL_ERROR elsewhere).

So time is a confounder: it causes regressions (through release pressure)
and, through traffic and intent, the outcomes regressions affect. The other
modules: ``calendar`` (the day table), ``mechanisms`` (pure functions shared
by stages and the posterior), ``dictionary`` (what each column means),
``tasks`` (tables, calibration, checks, plots and ML tasks), ``posterior``
(the anomaly task's Bayes score), ``topology`` (``expand``: a generated service
graph of tens of services around the five). Every number is in ``configs/default.yaml``.
"""

from __future__ import annotations

from importlib import resources

from causalsynth.spec.params import Params

from .calendar import FREEZE, HOLIDAY, month_day, parse_start
from .dictionary import DESCRIPTIONS
from .posterior import anomaly_posterior
from .story import REASON_LEVELS, WEEKDAYS, model
from .tasks import (
    CALIBRATION,
    GAPS,
    IDENTITIES,
    INCIDENTS,
    MARGINALS,
    OPTIONS,
    RCA_METHODS,
    REPORT,
    ROLLUPS,
    SHAPES,
    SIGNATURES,
    TABLES,
    TASKS,
)
from .telemetry import FAULT_KINDS, INJECTED_FAULTS, METRICS
from .topology import expand

NAME = "delivery_commerce"
VERSION = "2.0.0"
# Its priors and targets: every number the story above uses.
DEFAULTS = resources.files("causalsynth.configs").joinpath("default.yaml")

__all__ = ["NAME", "VERSION", "DEFAULTS", "TABLES", "CALIBRATION", "MARGINALS", "GAPS", "IDENTITIES", "ROLLUPS",
           "SHAPES", "SIGNATURES", "REPORT", "RCA_METHODS", "INCIDENTS", "OPTIONS", "TASKS", "DESCRIPTIONS", "model",
           "validate", "expand", "anomaly_posterior"]


def _call_cycle(calls) -> list[str] | None:
    """A cycle of the call graph ``calls`` (caller -> callees) as the services along it, first one last
    again; None where calls always end."""
    state: dict[str, str] = {}   # "open" while its callees are being walked, "done" after

    def walk(service: str, path: list[str]) -> list[str] | None:
        if state.get(service) == "open":
            return path[path.index(service):] + [service]
        if state.get(service) == "done":
            return None
        state[service] = "open"
        for callee in calls.get(service, ()):
            if found := walk(callee, path + [service]):
                return found
        state[service] = "done"
        return None

    return next((found for caller in calls if (found := walk(caller, []))), None)


def validate(p: Params) -> list[str]:
    """Cross-references a generic check cannot see: names that must exist, dates that must parse."""
    services, steps = tuple(p.services), tuple(p.funnel.steps)
    errors = []
    for step, spec in p.funnel.steps.items():
        if spec.service not in services:
            errors.append(f"funnel.steps.{step}.service: {spec.service!r} is not one of {services}")
    tm = p.telemetry
    if not 0.0 <= tm.onset["from"] <= tm.onset["to"] <= 1.0:
        errors.append(f"telemetry.onset: from ({tm.onset['from']}) and to ({tm.onset['to']}) must be shares of "
                      f"the window, 0 <= from <= to <= 1")
    for name, rho in [(f"metrics.{m}", tm.metrics[m].autocorrelation) for m in tm.metrics] + [
            ("traffic", tm.traffic.autocorrelation)]:
        if not 0.0 <= rho < 1.0:
            errors.append(f"telemetry.{name}.autocorrelation: {rho} must be in [0, 1)")
    for m in tm.metrics:
        if tm.metrics[m].noise < 0:
            errors.append(f"telemetry.metrics.{m}.noise: {tm.metrics[m].noise} must be >= 0")
    for service, level in tm.resource_level.items():
        if service not in services or not level > 0:
            errors.append(f"telemetry.resource_level.{service}: a level > 0 for one of {services}")
    if tm.bursts.size <= 0 or tm.call_share < 0:
        errors.append("telemetry.bursts.size must be > 0 and telemetry.call_share >= 0")
    if int(tm.ticks) < 2:
        errors.append(f"telemetry.ticks: {tm.ticks} must be at least 2")
    if not 0 < tm.anomaly_s <= int(tm.ticks) * tm.tick_s:
        errors.append(f"telemetry.anomaly_s: {tm.anomaly_s} must be > 0 and at most the window "
                      f"(telemetry.ticks x telemetry.tick_s = {int(tm.ticks) * tm.tick_s} s)")
    for key in ("tick_s", "anomaly_size", "spurious_s"):
        if not tm[key] > 0:
            errors.append(f"telemetry.{key}: {tm[key]} must be > 0")
    for key in ("spurious_size", "spurious_mimic"):
        if not tm[key] >= 0:
            errors.append(f"telemetry.{key}: {tm[key]} must be >= 0")
    if not 0.0 <= tm.spurious_near <= 1.0:
        errors.append(f"telemetry.spurious_near: {tm.spurious_near} must be a share of the window in [0, 1] "
                      f"(0: anywhere in it)")
    ft = tm.faults
    for section, names in (("kind.shares", tuple(ft.kind.shares)), ("effects", tuple(ft.effects))):
        if names != INJECTED_FAULTS:
            errors.append(f"telemetry.faults.{section}: needs one entry per injected fault, in order: "
                          f"{', '.join(INJECTED_FAULTS)}")
    for kind, effects in ft.effects.items():
        if tuple(effects) != METRICS:
            errors.append(f"telemetry.faults.effects.{kind}: needs one log-scale change per metric, in order: "
                          f"{', '.join(METRICS)}")
    for kind in ft.ramp:
        if kind not in INJECTED_FAULTS:
            errors.append(f"telemetry.faults.ramp: {kind!r} is not one of {INJECTED_FAULTS}")
    errors += _trace_errors(p, services)
    if tm.hop_lag_s < 0 or tm.gap_rate >= 1.0:
        errors.append("telemetry.hop_lag_s must be >= 0 and telemetry.gap_rate below 1 (a series needs ticks)")
    fx, scale = p.regression.effects, max(p.regression.effect_scale.values())
    busiest = max(services, key=lambda s: p.services[s].error_rate)
    if not p.run.error_rate > 0 or p.services[busiest].error_rate * (
            1.0 + fx.error_rate_increase / p.run.error_rate * scale) > 0.9:
        errors.append(f"services.{busiest}.error_rate: with regression.effects.error_rate_increase and the largest "
                      f"regression.effect_scale it rises by the run's factor past 0.9 (run.error_rate must be > 0, "
                      f"and error_rate x (1 + error_rate_increase / run.error_rate x {scale}) at most 0.9)")
    if p.service.entry not in services:
        errors.append(f"service.entry: {p.service.entry!r} is not one of {services}")
    for caller, callees in p.service.depends_on.items():
        for callee in (caller, *callees):
            if callee not in services:
                errors.append(f"service.depends_on.{caller}: {callee!r} is not one of {services}")
    if cycle := _call_cycle(p.service.depends_on):
        errors.append(f"service.depends_on: calls go round in a cycle, {' -> '.join(cycle)}; a request's calls "
                      f"must end (each service calls only services that do not call it back)")
    if tuple(p.funnel.failure_reason) != steps:
        errors.append(f"funnel.failure_reason: needs one reason per step, in order: {', '.join(steps)}")
    for step, reason in p.funnel.failure_reason.items():
        if reason not in REASON_LEVELS[1:]:
            errors.append(f"funnel.failure_reason.{step}: {reason!r} is not one of {REASON_LEVELS[1:]}")
    for cause, spec in p.funnel.abandonment.items():
        for step in spec.at:
            if step not in steps[:3]:
                errors.append(f"funnel.abandonment.{cause}.at: {step!r} is not one of {steps[:3]} "
                              f"(a shopper decides after these steps)")
    for name in ("min_lines", "max_lines"):
        if tuple(p.pull_request.size_class[name]) != tuple(p.pull_request.size_class.shares):
            errors.append(f"pull_request.size_class.{name}: needs one value per size class")
    for section, names in (("calendar.merges.weekday_factor", p.calendar.merges.weekday_factor),
                           ("traffic.weekday_log_load", p.traffic.weekday_log_load)):
        if tuple(names) != WEEKDAYS:
            errors.append(f"{section}: needs one value per weekday, in order: {', '.join(WEEKDAYS)}")
    for season in (HOLIDAY, FREEZE):
        if season not in p.calendar.seasons:
            errors.append(f"calendar.seasons: needs {season!r} (the model reads it)")
    for season, spec in p.calendar.seasons.items():
        for end in ("from", "to"):
            try:
                month_day(str(spec.get(end)))
            except (TypeError, ValueError):
                errors.append(f"calendar.seasons.{season}.{end}: {spec.get(end)!r} is not a day of the year "
                              f"as MM-DD, e.g. \"11-20\"")
    if not 0 <= p.calendar.friday_evening_from_hour <= 23:
        errors.append(f"calendar.friday_evening_from_hour: must be an hour 0-23, "
                      f"got {p.calendar.friday_evening_from_hour}")
    try:
        parse_start(p.sampling.start)
    except ValueError:
        errors.append(f"sampling.start: {p.sampling.start!r} is not an ISO 8601 UTC time, "
                      f"e.g. \"2025-01-01T00:00:00Z\"")
    return errors


def _trace_errors(p: Params, services: tuple[str, ...]) -> list[str]:
    """What the counterfactual series, the traces and the logs need of the config."""
    tm, errors = p.telemetry, []
    tr, lg = tm.traces, tm.logs
    if not 0.0 <= tm.faults.concurrent.rate <= 1.0:
        errors.append(f"telemetry.faults.concurrent.rate: {tm.faults.concurrent.rate} is a probability, in [0, 1]")
    if tm.counterfactual and not tm.enabled:
        errors.append("telemetry.counterfactual: is each series value without the run's fault; enable "
                      "telemetry.enabled too (sample --series --counterfactual)")
    if tr.enabled and not tm.enabled:
        errors.append("telemetry.traces.enabled: traces are read off the series; enable telemetry.enabled "
                      "too (sample --series --traces)")
    if lg.enabled and not tr.enabled:
        errors.append("telemetry.logs.enabled: log lines are written by spans; enable telemetry.traces.enabled "
                      "too (sample --series --traces --logs)")
    if int(tr.per_run) < 1 or tr.span_sd < 0:
        errors.append(f"telemetry.traces: per_run ({tr.per_run}) must be at least 1 and span_sd ({tr.span_sd}) "
                      f">= 0")
    for name, rate in (("traces.error_propagation", tr.error_propagation), ("logs.request_rate", lg.request_rate)):
        if not 0.0 <= rate <= 1.0:
            errors.append(f"telemetry.{name}: {rate} is a probability, in [0, 1]")
    if not lg.slow_factor > 0:
        errors.append(f"telemetry.logs.slow_factor: {lg.slow_factor} must be > 0")
    for service in services:
        if not list(tr.operations.get(service) or []):
            errors.append(f"telemetry.traces.operations.{service}: needs at least one operation name")
    for service in tr.operations:
        if service not in services:
            errors.append(f"telemetry.traces.operations.{service}: {service!r} is not one of {services}")
    for kind in lg.faults:
        if kind not in FAULT_KINDS[1:]:
            errors.append(f"telemetry.logs.faults.{kind}: {kind!r} is not one of {FAULT_KINDS[1:]}")
    for kind in tr.one_operation:
        if kind not in FAULT_KINDS[1:]:
            errors.append(f"telemetry.traces.one_operation: {kind!r} is not one of {FAULT_KINDS[1:]}")
    return errors
