"""The generative story, one function per stage; every number is a prior in the config.

Plates: prs (dim -4) → runs (-3) → services / flows (-2) → steps / decisions (-1).
Each stage reads what earlier stages caused and returns what later ones need.
"""

from __future__ import annotations

from typing import NamedTuple

import jax
import jax.numpy as jnp
import numpy as np
import numpyro
import numpyro.distributions as dist
from numpyro.distributions import constraints

from causalsynth.spec.modeling import categorical, derived, label, latent, rows, shares, timestamp
from causalsynth.spec.params import Params

from .calendar import FREEZE, HOLIDAY, SECONDS_PER_DAY, SECONDS_PER_HOUR, WEEKDAYS, DayTable, day_table
from .mechanisms import (
    USAGE_COLUMNS,
    cycle,
    degradation_factors,
    dependency_matrix,
    exposure,
    inverse_cdf,
    over_services,
    per_step,
    run_metric_means,
    vec,
)
from .telemetry import FAULT_KINDS, series
from .traces import call_tree, traces

SEVERITY_LEVELS = ("NONE", "LOW", "MEDIUM", "HIGH")
RUN_STATUS_LEVELS = ("SUCCESS", "FAILED")
# Why a flow stopped: a call that failed for good (PAYMENT, TECHNICAL_ERROR) or
# the shopper's own stop causes (INVENTORY, SHIPPING, USER_EXIT), in the order met.
REASON_LEVELS = ("NONE", "PAYMENT", "INVENTORY", "SHIPPING", "USER_EXIT", "TECHNICAL_ERROR")
STOP_CAUSES = ("INVENTORY", "SHIPPING", "USER_EXIT")   # categories 1.. of a decision (0: go on)


class Plates(NamedTuple):
    prs: numpyro.plate
    runs: numpyro.plate
    services: numpyro.plate
    flows: numpyro.plate
    decisions: numpyro.plate
    slots: numpyro.plate
    ticks: numpyro.plate
    traces: numpyro.plate
    spans: numpyro.plate
    log_lines: numpyro.plate


def merge_time(p: Params, cal: DayTable, plates: Plates) -> dict:
    """When each PR merges, its calendar, and the release pressure it merged under."""
    c = p.calendar
    window = int(c.window_days)
    with plates.prs:
        day_weight = (vec(c.merges.weekday_factor, WEEKDAYS)[cal.weekday[:window]]
                      * jnp.where(cal.end_of_quarter[:window], c.merges.end_of_quarter_factor, 1.0)
                      * jnp.where(cal.seasons[FREEZE][:window], c.merges.code_freeze_factor, 1.0))
        day = numpyro.deterministic("_merge_day", inverse_cdf(
            numpyro.sample("_merge_day_u", dist.Uniform(0.0, 1.0)), day_weight))
        hour_weight = jnp.exp(cycle(jnp.arange(24.0), c.merges.peak_hour, c.merges.hour_concentration))
        hour = numpyro.sample("merge_hour", dist.CategoricalProbs(hour_weight / hour_weight.sum()))
        second = jnp.floor(SECONDS_PER_HOUR * numpyro.sample("_merge_second", dist.Uniform(0.0, 1.0)))
        second_of_day = hour * SECONDS_PER_HOUR + second.astype(jnp.int32)
        timestamp("merged_at", (second_of_day - cal.start_second).astype(jnp.float32), days="_merge_day")
        weekday = label("merge_weekday", jnp.asarray(cal.weekday)[day], WEEKDAYS)
        flags = {
            "end_of_quarter": numpyro.deterministic("is_end_of_quarter", jnp.asarray(cal.end_of_quarter)[day]),
            "code_freeze_exception": numpyro.deterministic("is_code_freeze", jnp.asarray(cal.seasons[FREEZE])[day]),
            "holiday_push": numpyro.deterministic("is_holiday_season", jnp.asarray(cal.seasons[HOLIDAY])[day]),
            "friday_evening": (weekday == WEEKDAYS.index("FRI")) & (hour >= c.friday_evening_from_hour),
        }
        pressure = numpyro.deterministic("release_pressure", sum(
            c.release_pressure[name] * flag.astype(jnp.float32) for name, flag in flags.items()))
        workload = 0.0
        if p.team_workload.enabled:
            workload = latent("team_workload", dist.Normal(
                p.team_workload.end_of_quarter_shift * flags["end_of_quarter"], 1.0))
    return {"day": day, "second_of_day": second_of_day, "pressure": pressure, "workload": workload}


def pull_request(p: Params, plates: Plates, merge: dict, services: tuple[str, ...]) -> dict:
    """Code metrics and kinds of change; release pressure makes PRs larger and less covered."""
    pr = p.pull_request
    pressure = merge["pressure"]
    with plates.prs:
        size_probs, size_levels = shares(pr.size_class.shares)
        size = categorical("size_class", size_probs, size_levels)
        low, high = jnp.log(vec(pr.size_class.min_lines)[size]), jnp.log(vec(pr.size_class.max_lines)[size])
        lean = numpyro.sample("_size_u", dist.Uniform(0.0, 1.0)) ** (1.0 / (1.0 + pr.pressure.size_tilt * pressure))
        log_lines = low + (high - low) * lean
        lines = jnp.floor(jnp.exp(log_lines))
        added_share = jax.nn.sigmoid(numpyro.sample("_added_logit", dist.Normal(pr.added_logit_mean,
                                                                                 pr.added_logit_sd)))
        added = jnp.round(lines * added_share)
        derived("lines_added", added.astype(jnp.int32), constraints.nonnegative_integer)
        derived("lines_deleted", (lines - added).astype(jnp.int32), constraints.nonnegative_integer)
        files = pr.files_scale.per_sqrt_line * jnp.sqrt(lines) * jnp.exp(
            pr.files_sd * numpyro.sample("_files_noise", dist.Normal(0.0, 1.0)))
        derived("files_changed", jnp.maximum(1.0, jnp.round(files)).astype(jnp.int32), constraints.positive_integer)
        complexity = numpyro.sample("cyclomatic_complexity", dist.LogNormal(
            jnp.log1p(pr.complexity_per_log_line * log_lines) + pr.pressure.complexity_log * pressure,
            pr.complexity_sd))
        coverage = numpyro.sample("test_coverage", dist.TransformedDistribution(
            dist.Normal(pr.coverage_logit_mean + pr.pressure.coverage_logit * pressure, pr.coverage_logit_sd),
            dist.transforms.SigmoidTransform()))
        experience = numpyro.sample("author_experience_years", dist.LogNormal(
            pr.experience_log_mean, pr.experience_log_sd))
        api = numpyro.sample("is_api_change", dist.Bernoulli(pr.api_change_rate))
        db = numpyro.sample("is_db_change", dist.Bernoulli(pr.db_change_rate))
        cfg = numpyro.sample("is_config_change", dist.Bernoulli(pr.config_change_rate))
        security = numpyro.sample("has_security_vulnerability", dist.Bernoulli(pr.security_vulnerability_rate))
        breaking = numpyro.sample("is_breaking_change", dist.Bernoulli(pr.breaking_change_rate))
        primary_probs, _ = shares(pr.primary_service.shares)
        primary = categorical("primary_service", primary_probs, services)
    service_index = jnp.arange(len(services)).reshape(-1, 1)
    with plates.prs, plates.services:
        also = numpyro.sample("_also_touched", dist.Bernoulli(pr.extra_services_rate))
    is_primary = primary == service_index                             # (B,1,S,1)
    # A PR touches only the team's services: those it can be mainly about (a generated one has no share).
    touched = jnp.maximum(is_primary, jnp.where(primary_probs.reshape(-1, 1) > 0, also, 0.0))
    with plates.prs:
        n_touched = derived(
            "services_touched", jnp.sum(touched, axis=-2, keepdims=True).astype(jnp.int32),
            constraints.integer_interval(1, len(services)))
        w = pr.risk_weights
        derived("risk_score", jax.nn.sigmoid(
            w.intercept + w.log_lines * log_lines + w.complexity * complexity
            + w.low_coverage * (1.0 - coverage) + w.api_change * api + w.db_change * db
            + w.breaking_change * breaking + w.security_vulnerability * security), constraints.unit_interval)
    return {"log_lines": log_lines, "complexity": complexity, "coverage": coverage, "experience": experience,
            "api": api, "db": db, "config": cfg, "breaking": breaking, "n_touched": n_touched,
            "touched": touched, "is_primary": is_primary}


def regression(p: Params, plates: Plates, merge: dict, pr: dict) -> jnp.ndarray:
    """Whether the PR regresses, and how hard; returns the regression's effect scale (0: none)."""
    rg, c, ic = p.regression, p.regression.coefficients, p.intercepts
    with plates.prs:
        logit = (ic.regression + c.log_lines * (pr["log_lines"] - 3.5) + c.complexity * (pr["complexity"] - 8.0)
                 + c.low_coverage * (0.7 - pr["coverage"]) - c.inexperience * jnp.log(pr["experience"])
                 + c.api_change * pr["api"] + c.db_change * pr["db"] + c.config_change * pr["config"]
                 + c.breaking_change * pr["breaking"] + c.services_touched * (pr["n_touched"] - 1)
                 + c.release_pressure * merge["pressure"] + c.team_workload * merge["workload"])
        reg_prob = derived("regression_probability", jax.nn.sigmoid(logit), constraints.unit_interval)
        regressed = numpyro.sample("has_performance_regression", dist.Bernoulli(reg_prob))
        sev_probs, _ = shares(rg.severity.shares)
        # Later mechanisms read the severity (and the anomaly's type, below) through its site: so the
        # graph, and validate's recomputation of what depends on it, start from the column.
        severity = label("regression_severity", jnp.where(regressed, 1 + categorical(
            "_severity_if_regressed", sev_probs, SEVERITY_LEVELS[1:]), 0), SEVERITY_LEVELS)
        derived("performance_impact_score", jax.nn.sigmoid(
            vec(rg.impact_logit, SEVERITY_LEVELS)[severity]
            + rg.impact_sd * numpyro.sample("_impact_noise", dist.Normal(0.0, 1.0))), constraints.unit_interval)
    return jnp.concatenate([jnp.zeros(1), vec(rg.effect_scale)])[severity]


def run(p: Params, cal: DayTable, plates: Plates, merge: dict, scale) -> dict:
    """A run: when it starts (and so its traffic), its metrics, anomaly and outcome.

    A run's requests split into success, timeout and server/client errors by
    one Dirichlet draw; counts are whole requests and every rate is a count
    over the total, so the rates sum to 1 in every world.
    """
    rn, tr, ic = p.run, p.traffic, p.intercepts
    with plates.prs, plates.runs:
        gaps = numpyro.sample("_gap_hours", dist.Exponential(1.0 / rn.delay_hours))
        since_merge = jnp.round(SECONDS_PER_HOUR * jnp.cumsum(gaps, axis=-3)).astype(jnp.int32)
        timestamp("started_at", since_merge.astype(jnp.float32), since="merged_at")
        clock = merge["second_of_day"] + since_merge                  # seconds from the merge day's midnight
        day = jnp.minimum(merge["day"] + clock // SECONDS_PER_DAY, cal.n_days - 1)
        # Later mechanisms read the hour through its site, so the graph shows the hour,
        # not the merge and gap noise it comes from, as their cause.
        hour = derived("hour_of_day", clock % SECONDS_PER_DAY // SECONDS_PER_HOUR, constraints.integer_interval(0, 23))
        weekday = label("day_of_week", jnp.asarray(cal.weekday)[day], WEEKDAYS)
        holiday = numpyro.deterministic("runs.is_holiday_season", jnp.asarray(cal.seasons[HOLIDAY])[day])
        load = numpyro.sample("load_intensity", dist.LogNormal(
            rn.load_log_mean + cycle(hour + 0.5, tr.peak_hour, tr.daily_amplitude)
            + vec(tr.weekday_log_load, WEEKDAYS)[weekday] + tr.holiday_log_load * holiday, rn.load_log_sd))
        duration = numpyro.sample("duration_s", dist.LogNormal(rn.duration_log_mean, rn.duration_log_sd))
        an = rn.anomaly
        anomaly_prob = derived("anomaly_probability", jax.nn.sigmoid(
            ic.anomaly + an.regression_coefficient * scale + an.load_coefficient * jnp.log(load)),
            constraints.unit_interval)
        anomalous = numpyro.sample("is_anomalous", dist.Bernoulli(anomaly_prob))
        kind_probs, kind_levels = shares(an.type.shares)
        kind = label("anomaly_type", jnp.where(anomalous, 1 + categorical("_anomaly_kind", kind_probs, kind_levels),
                                               0), ("NONE", *kind_levels))
        score = derived("anomaly_score", jnp.where(anomalous, jax.nn.sigmoid(
            an.score_logit_mean + an.score_logit_sd * numpyro.sample("_anomaly_intensity", dist.Normal(0.0, 1.0))),
            0.0), constraints.unit_interval)

        background = p.team_workload.background_log_load * merge["workload"] if p.team_workload.enabled else 0.0
        m = run_metric_means(p, load, scale, kind, score, background)
        response_time = numpyro.sample("response_time_ms", dist.LogNormal(m["log_rt"], rn.response_time_sd))
        p95 = derived("p95_response_time_ms", response_time * (1.0 + jnp.exp(
            rn.p95_excess_log_mean + rn.p95_excess_log_sd * numpyro.sample("_p95_noise", dist.Normal(0.0, 1.0)))),
            constraints.positive)
        throughput = numpyro.sample("throughput_rps", dist.LogNormal(m["log_tput"], rn.throughput_sd))
        split = numpyro.sample("_request_split", dist.Dirichlet(rn.request_concentration * m["split"]))
        total = jnp.maximum(1.0, jnp.round(throughput * duration))
        counts = jnp.floor(total[..., None] * split[..., 1:])         # timeout, then error categories
        derived("total_requests", total.astype(jnp.int32), constraints.positive_integer)
        derived("timeout_errors", counts[..., 0].astype(jnp.int32), constraints.nonnegative_integer)
        _, error_levels = shares(rn.error_category.shares)
        for i, level in enumerate(error_levels):
            derived(f"{level.lower()}_errors", counts[..., 1 + i].astype(jnp.int32), constraints.nonnegative_integer)
        error_rate = derived("error_rate", counts[..., 1:].sum(-1) / total, constraints.unit_interval)
        derived("timeout_rate", counts[..., 0] / total, constraints.unit_interval)
        derived("success_rate", (total - counts.sum(-1)) / total, constraints.unit_interval)
        demand = jnp.exp(m["log_usage"] + rn.resource_sd * numpyro.sample(
            "_resource_noise", dist.Normal(0.0, 1.0).expand([3]).to_event(1)))
        usage = jnp.clip(demand, 0.0, 1.0)
        # What the run would use without its regression (the same noise): where its series start.
        clean_usage = jnp.clip(demand / (1.0 + p.regression.effects.resource_usage_increase * scale)[..., None],
                               0.0, 1.0)
        for i, name in enumerate(USAGE_COLUMNS):
            derived(name, usage[..., i], constraints.unit_interval)
        fl = rn.failure
        failure_prob = derived("failure_probability", jax.nn.sigmoid(
            ic.run_failure + fl.regression_coefficient * scale + fl.anomaly_coefficient * anomalous
            + fl.error_rate_coefficient * error_rate), constraints.unit_interval)
        label("run_status", numpyro.sample("_failed", dist.Bernoulli(failure_prob)), RUN_STATUS_LEVELS)
    return {"load": load, "duration": duration, "hour": hour, "holiday": holiday,
            "response_time": response_time, "clean_rt": m["clean_rt"],
            "throughput": throughput, "error_rate": error_rate, "kind": kind, "scale": scale,
            "p95_ratio": p95 / response_time, "cpu": usage[..., 0], "memory": usage[..., 1], "disk": usage[..., 2],
            "clean_cpu": clean_usage[..., 0], "clean_memory": clean_usage[..., 1], "clean_disk": clean_usage[..., 2]}


def service_metrics(p: Params, plates: Plates, pr: dict, runs: dict, scale, services, depends) -> dict:
    """The regression degrades its service fully, and each caller up the graph by the propagation share
    per hop of its shortest path to it (``mechanisms.exposure``, ``mechanisms.degradation_factors``)."""
    sv, profile, fx, ic = p.service, p.services, p.regression.effects, p.intercepts
    load = runs["load"]
    base_rt = vec({s: profile[s].response_time_ms for s in services}).reshape(-1, 1)
    base_err = vec({s: profile[s].error_rate for s in services}).reshape(-1, 1)
    base_tput = vec({s: profile[s].throughput_rps for s in services}).reshape(-1, 1)
    retry_rate = vec({s: profile[s].retry_rate for s in services}).reshape(-1, 1)
    degradation = scale * exposure(depends, pr["is_primary"], sv.propagation_share)   # (B,1,S,1)
    factor = degradation_factors(fx, p.run.error_rate, degradation)
    with plates.prs, plates.runs, plates.services:
        label("services.service_name", jnp.arange(len(services)).reshape(-1, 1), services)
        numpyro.deterministic("is_touched_by_pr", pr["touched"].astype(bool))
        svc_clean = base_rt * load ** p.run.load_latency_elasticity
        svc_rt = numpyro.sample("services.response_time_ms", dist.LogNormal(
            jnp.log(svc_clean) + sv.run_coupling * jnp.log(runs["response_time"] / runs["clean_rt"])
            + jnp.log(factor["latency"]), sv.response_time_sd))
        err_logit = jax.scipy.special.logit(jnp.clip(base_err * factor["errors"], 1e-4, 0.9))
        svc_err = numpyro.sample("services.error_rate", dist.TransformedDistribution(
            dist.Normal(err_logit, sv.error_logit_sd), dist.transforms.SigmoidTransform()))
        svc_tput = numpyro.sample("services.throughput_rps", dist.LogNormal(
            jnp.log(base_tput * load * factor["requests"]), sv.throughput_sd))
        slowness = jnp.log(svc_rt / svc_clean)
        excess_err = jnp.maximum(svc_err - base_err, 0.0)
        hw = sv.health_weights
        health = derived("health_score", jax.nn.sigmoid(
            hw.intercept - hw.latency * jnp.maximum(slowness, 0.0) - hw.errors * excess_err
            + sv.health_sd * numpyro.sample("_health_noise", dist.Normal(0.0, 1.0))), constraints.unit_interval)
        thresholds, status_levels = shares(sv.status_thresholds)
        status = label("health_status", jnp.sum(health[..., None] < thresholds[:-1], axis=-1), status_levels)
        svc_fail_prob = derived("services.failure_probability", jax.nn.sigmoid(
            ic.service_failure + sv.failure.health_coefficient * (1.0 - health)), constraints.unit_interval)
        numpyro.sample("is_failing", dist.Bernoulli(svc_fail_prob))
        n_callees = jnp.asarray(depends.sum(1)).reshape(-1, 1)
        n_callers = jnp.asarray(depends.sum(0)).reshape(-1, 1)
        derived("upstream_response_time_ms", jnp.where(
            n_callees > 0, over_services(depends, svc_rt) / jnp.maximum(n_callees, 1), 0.0), constraints.nonnegative)
        derived("upstream_error_rate", jnp.where(
            n_callees > 0, over_services(depends, svc_err) / jnp.maximum(n_callees, 1), 0.0), constraints.unit_interval)
        derived("upstream_health", jnp.where(
            n_callees > 0, over_services(depends, health) / jnp.maximum(n_callees, 1), 1.0), constraints.unit_interval)
        derived("downstream_health", jnp.where(
            n_callers > 0, over_services(depends.T, health) / jnp.maximum(n_callers, 1), 1.0),
            constraints.unit_interval)
        derived("retries_per_minute", 60.0 * base_tput * load * retry_rate
                              * (1.0 + sv.retry_error_weight * svc_err), constraints.nonnegative)
        users = sv.users_per_rps * runs["throughput"]
        derived("active_users", jnp.broadcast_to(jnp.round(users), svc_rt.shape).astype(jnp.int32),
        constraints.nonnegative_integer)
        derived("orders_per_minute", jnp.broadcast_to(
            users * sv.order_rate * (1.0 - runs["error_rate"]), svc_rt.shape), constraints.nonnegative)
    return {"response_time": svc_rt, "status": status, "status_levels": status_levels,
            # Each metric of the series' window, and its value in the world without the regression
            # (the same noise, the regression's terms taken out): the series start at the latter.
            "snapshot": {"latency": svc_rt, "errors": svc_err, "requests": svc_tput,
                         "cpu": runs["cpu"], "memory": runs["memory"], "disk": runs["disk"]},
            "clean": {"latency": svc_rt / (factor["latency"]
                                           * (1.0 + fx.response_time_increase * scale) ** sv.run_coupling),
                      "errors": jax.nn.sigmoid(jax.scipy.special.logit(svc_err) - err_logit
                                               + jax.scipy.special.logit(jnp.clip(base_err, 1e-4, 0.9))),
                      "requests": svc_tput / factor["requests"],
                      "cpu": runs["clean_cpu"], "memory": runs["clean_memory"], "disk": runs["clean_disk"]}}


def flow(p: Params, plates: Plates, runs: dict, svc: dict, services, steps, step_service) -> dict:
    """A shopper arrives with a cart; what each funnel step will cost, and why they might stop.

    After browsing, adding to the cart and checking out, a shopper goes on
    unless a stop cause fires, met in this order: a stock-out (INVENTORY;
    grows with cart size and load), a shipping shock (SHIPPING; region and
    cart value) or leaving (USER_EXIT; intent and the latency felt).
    """
    fw, fn, ic = p.flow, p.funnel, p.intercepts
    n_views = p.shape.max_browse_views
    with plates.prs, plates.runs, plates.flows:
        seg_probs, seg_levels = shares(fw.segment.shares)
        segment = categorical("user_segment", seg_probs, seg_levels)
        dev_probs, dev_levels = shares(fw.device.shares)
        device = categorical("device_type", dev_probs, dev_levels)
        reg_probs, reg_levels = shares(fw.region.shares)
        region = categorical("region", reg_probs, reg_levels)
        timestamp("flows.started_at", runs["duration"] * numpyro.sample("_flow_offset", dist.Uniform(0.0, 1.0)),
                  since="started_at")
        extra_items = numpyro.sample("_extra_items", dist.GeometricProbs(
            1.0 / (1.0 + vec(fw.cart_extra_items_count, seg_levels)[segment])))
        cart_size = derived("cart_size", (1 + extra_items).astype(jnp.int32), constraints.positive_integer)
        cart_value = numpyro.sample("cart_value", dist.LogNormal(
            jnp.log(cart_size) + fw.item_price_log_mean + vec(fw.segment_price_lift, seg_levels)[segment]
            + fw.holiday_price_lift * runs["holiday"], fw.item_price_log_sd))
        views = derived("browse_views", (1 + jnp.minimum(numpyro.sample(
            "_extra_views", dist.GeometricProbs(1.0 / (1.0 + vec(fw.browse_extra_views_count, seg_levels)[segment]))),
            n_views - 1)).astype(jnp.int32), constraints.positive_integer)

        # What each funnel step costs this shopper in this run: the step's
        # service latency (behind the gateway), stretched by device and region.
        network = vec(fw.device_latency_factor, dev_levels)[device] * vec(fw.region_latency_factor, reg_levels)[region]
        entry = services.index(p.service.entry)
        svc_rt = svc["response_time"]
        step_latency = (per_step(svc_rt, step_service) + svc_rt[..., entry:entry + 1, :]) * network  # (B,R,F,J)
        derived("expected_latency_ms", jnp.mean(step_latency, axis=-1, keepdims=True), constraints.positive)
        # A degraded or unhealthy service fails more of the calls made to it.
        loss = per_step(vec(fn.status_success_loss, svc["status_levels"])[svc["status"]], step_service)
        call_ok = vec({s: fn.steps[s].attempt_success for s in steps}) * (1.0 - loss)  # (B,R,1,J)
        retry_fail = (1.0 - call_ok) * fn.retry_probability
        n_attempts = p.shape.max_attempts
        later = call_ok[..., 1:] * (1.0 - retry_fail[..., 1:] ** n_attempts) / (1.0 - retry_fail[..., 1:])
        passes = jnp.concatenate([1.0 - (1.0 - call_ok[..., :1]) ** views,
                                  jnp.broadcast_to(later, views.shape[:-1] + later.shape[-1:])], axis=-1)

        cv, ab = fn.conversion, fn.abandonment
        decided = steps[:3]                                           # stops happen after these steps
        stays = jax.nn.sigmoid(
            ic.conversion + vec(cv.step_offset, decided)
            + vec(cv.segment, seg_levels)[segment] + vec(cv.device, dev_levels)[device]
            + cv.log_cart_value * jnp.log(cart_value) + cv.latency * jnp.log(step_latency[..., :3] / 100.0)
            + cv.holiday * runs["holiday"]
            + cycle(runs["hour"] + 0.5, cv.intent_peak_hour, vec(cv.hour_amplitude, dev_levels)[device]))
        so, ss = ab.stock_out, ab.shipping_shock
        at = lambda cause: jnp.asarray([s in cause.at for s in decided], jnp.float32)  # noqa: E731
        stock_out = at(so) * jax.nn.sigmoid(so.intercept + so.log_cart_size * jnp.log(cart_size)
                                            + so.log_load * jnp.log(runs["load"]))
        shipping = at(ss) * jax.nn.sigmoid(ss.intercept + vec(ss.region, reg_levels)[region]
                                           + ss.log_cart_value * jnp.log(cart_value))
        stop_probs = jnp.stack([(1 - stock_out) * (1 - shipping) * stays, stock_out,
                                (1 - stock_out) * shipping, (1 - stock_out) * (1 - shipping) * (1 - stays)],
                               axis=-1)                               # (B,R,F,3, go/INVENTORY/SHIPPING/EXIT)
        derived("conversion_probability", jnp.prod(passes, axis=-1, keepdims=True)
                              * jnp.prod(stop_probs[..., 0], axis=-1, keepdims=True), constraints.unit_interval)
    with plates.prs, plates.runs, plates.flows, plates.decisions:
        stop = inverse_cdf(numpyro.sample("_stop_u", dist.Uniform(0.0, 1.0)), stop_probs)
    return {"views": views, "call_ok": call_ok, "step_latency": step_latency, "stop": stop}


def flow_steps(p: Params, plates: Plates, fl: dict, services, steps, step_service) -> None:
    """The calls: retries, where the flow stops and why, on a padded grid of slots with a row mask."""
    fn, fw = p.funnel, p.flow
    n_views, n_attempts = p.shape.max_browse_views, p.shape.max_attempts
    slot_step = np.array([0] * n_views + [j for j in range(1, len(steps)) for _ in range(n_attempts)])
    slot_attempt = np.array([0] * n_views + list(range(n_attempts)) * (len(steps) - 1))
    views, call_ok, stop = fl["views"], fl["call_ok"], fl["stop"]
    failure_reason = np.array([REASON_LEVELS.index(fn.failure_reason[s]) for s in steps])
    stop_reason = np.array([0] + [REASON_LEVELS.index(c) for c in STOP_CAUSES])
    with plates.prs, plates.runs, plates.flows, plates.slots:
        call_u = numpyro.sample("_call_u", dist.Uniform(0.0, 1.0))
        retried = numpyro.sample("_retried", dist.Bernoulli(fn.retry_probability)).astype(bool)
        slot_ok = call_u < call_ok[..., slot_step]
        browse_present = jnp.arange(n_views) < views
        present = [browse_present]
        passed = jnp.any(browse_present & slot_ok[..., :n_views], axis=-1, keepdims=True)
        alive = jnp.ones(views.shape, bool)
        furthest = jnp.zeros(views.shape, jnp.int32)
        reason = jnp.zeros(views.shape, jnp.int32)
        for j in range(len(steps)):
            if j > 0:
                furthest = jnp.where(alive, j, furthest)
                trying, passed = alive, jnp.zeros_like(alive)
                for a in range(n_attempts):
                    slot = n_views + (j - 1) * n_attempts + a
                    if a > 0:
                        trying = trying & ~slot_ok[..., slot - 1:slot] & retried[..., slot:slot + 1]
                    present.append(trying)
                    passed = passed | (trying & slot_ok[..., slot:slot + 1])
            reason = jnp.where(alive & ~passed, failure_reason[j], reason)
            alive = alive & passed
            if j < stop.shape[-1]:
                cause = stop[..., j:j + 1]
                reason = jnp.where(alive & (cause > 0), jnp.asarray(stop_reason)[cause], reason)
                alive = alive & (cause == 0)
        present = jnp.concatenate(present, axis=-1)
        rows("_present", present)
        label("step_type", slot_step, steps)
        label("steps.service_name", step_service[slot_step], services)
        derived("retry_attempt", jnp.asarray(slot_attempt, jnp.int32), constraints.nonnegative_integer)
        derived("step_index", (jnp.cumsum(present, axis=-1) - 1).astype(jnp.int32), constraints.nonnegative_integer)
        numpyro.deterministic("success", slot_ok & present)
        latency = numpyro.sample("latency_ms", dist.LogNormal(
            jnp.log(fl["step_latency"][..., slot_step]), fw.step_latency_sd))
        think = numpyro.sample("_think_s", dist.Exponential(1.0 / fw.think_time_s))
        elapsed = jnp.cumsum(jnp.where(present, latency / 1000.0 + think, 0.0), axis=-1)
        timestamp("steps.started_at", elapsed - jnp.where(present, latency / 1000.0, 0.0),
                  since="flows.started_at")
    with plates.prs, plates.runs, plates.flows:
        numpyro.deterministic("converted", alive)
        label("last_step", furthest, steps)
        label("abandonment_reason", reason, REASON_LEVELS)


def model(p: Params, n_prs: int) -> None:
    """Sample ``n_prs`` pull requests and everything downstream of them.

    ``p`` is the resolved config (floats traced) plus ``p.intercepts``, the
    solved calibration intercepts.
    """
    services = tuple(p.services)
    steps = tuple(p.funnel.steps)
    n_slots = p.shape.max_browse_views + (len(steps) - 1) * p.shape.max_attempts
    step_service = np.array([services.index(s.service) for s in p.funnel.steps.values()])
    depends = dependency_matrix(p, services)
    n_spans = len(call_tree(depends, services.index(p.service.entry))[0])
    plates = Plates(
        prs=numpyro.plate("prs", n_prs, dim=-4),
        runs=numpyro.plate("runs", p.shape.runs_per_pr, dim=-3),
        services=numpyro.plate("services", len(services), dim=-2),
        flows=numpyro.plate("flows", p.shape.flows_per_run, dim=-2),
        decisions=numpyro.plate("decisions", 3, dim=-1),  # stop or go on after browse, cart, checkout
        slots=numpyro.plate("steps", n_slots, dim=-1),
        ticks=numpyro.plate("ticks", int(p.telemetry.ticks), dim=-1),
        traces=numpyro.plate("traces", int(p.telemetry.traces.per_run), dim=-2),
        spans=numpyro.plate("spans", n_spans, dim=-1),
        log_lines=numpyro.plate("log_lines", 2 * n_spans, dim=-1),  # a request and an outcome line per span
    )
    cal = day_table(p.sampling.start, p.calendar)
    merge = merge_time(p, cal, plates)
    pr = pull_request(p, plates, merge, services)
    scale = regression(p, plates, merge, pr)
    runs = run(p, cal, plates, merge, scale)
    svc = service_metrics(p, plates, pr, runs, scale, services, depends)
    fl = flow(p, plates, runs, svc, services, steps, step_service)
    flow_steps(p, plates, fl, services, steps, step_service)
    if p.telemetry.enabled:  # last: every other site draws the same keys with or without the series
        incident = series(p, plates, pr, runs, svc, services, depends)
        if p.telemetry.traces.enabled:  # after the series, which they read
            traces(p, plates, "started_at", incident, services, depends, FAULT_KINDS)
