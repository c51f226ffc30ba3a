"""Software delivery → e-commerce: how a pull request's risk reaches a shopper.

The generative story, outermost plate first:

1. **Pull requests** (``prs``). A size class sets how many lines change; lines
   drive files changed and cyclomatic complexity. Test coverage, the author's
   experience and the kinds of change (API, database, config, breaking) are
   drawn beside them. Whether the PR carries a performance regression is a
   Bernoulli whose log-odds add up these causes around an intercept that
   calibration solves so the marginal rate is the configured one. A regression
   has a severity, which sets an effect scale and an impact score, and lands on
   the PR's primary service.
2. **System runs** (``runs``, nested in PRs). Load intensity and the
   regression's effect scale raise response time (log-normal), lower success
   (Beta), raise error rate (Beta) and resource use. Anomalies are more likely
   under regressions and load; their type moves the metric it is named after.
   A run fails more often when regressed, anomalous or erroring.
3. **Service metrics** (``services``, nested in runs). The regression degrades
   the primary service and, through the dependency graph, its callers. Latency
   and errors of each service set its health score, status and failure flag.
4. **E-commerce flows** (``flows``, nested in runs). A shopper of some segment,
   device and region arrives with a cart. Each funnel step is a call to one
   service of this run: its technical success falls when that service is
   degraded, and the shopper's will to go on falls with the latency the step's
   service showed in this run. That is the causal chain
   PR → regression → run → service → conversion.
5. **Flow steps** (``steps``, nested in flows). The calls themselves, on a
   padded grid of slots (browse views, then up to ``max_attempts`` calls per
   later step) with a row mask: a failed call is retried with the configured
   probability; a flow stops when a step fails for good or the shopper leaves.

Every number is a prior in ``configs/default.yaml``; this file is structure.
"""

from __future__ import annotations

import jax
import jax.numpy as jnp
import numpy as np
import numpyro
import numpyro.distributions as dist

from causalsynth.modeling import (
    Calibration,
    Marginal,
    Plot,
    Shape,
    Signature,
    Table,
    Task,
    categorical,
    label,
    rows,
    shares,
    timestamp,
)
from causalsynth.params import Params

NAME = "delivery_commerce"
VERSION = "1.0.0"

TABLES = (
    Table("pull_requests", plates=("prs",), key="pr_id", number=("pr_number", "PR-%06d")),
    Table("system_runs", plates=("prs", "runs"), key="run_id"),
    Table("service_metrics", plates=("prs", "runs", "services"), key="service_metric_id"),
    Table("ecommerce_flows", plates=("prs", "runs", "flows"), key="flow_id"),
    Table("flow_steps", plates=("prs", "runs", "flows", "steps"), key="step_id"),
)

# Intercepts solved so that the mean of each probability site equals its target,
# in causal order (each one's parents are solved before it).
CALIBRATION = (
    Calibration("regression", site="regression_probability", target="regression.rate"),
    Calibration("anomaly", site="anomaly_probability", target="run.anomaly.rate"),
    Calibration("run_failure", site="failure_probability", target="run.failure.rate"),
    Calibration("service_failure", site="services.failure_probability",
                target="service.failure.rate"),
    Calibration("conversion", site="conversion_probability", target="funnel.conversion.rate"),
)

# What `causalsynth validate` holds the data to (targets and tolerances are config).
MARGINALS = (
    Marginal("pull_requests.has_performance_regression", "regression.rate", "regression",
             headline="regression rate"),
    Marginal("system_runs.is_anomalous", "run.anomaly.rate", "anomaly", headline="anomalous runs"),
    Marginal("system_runs.run_status=FAILED", "run.failure.rate", "failed_runs", headline="failed runs"),
    Marginal("service_metrics.is_failing", "service.failure.rate", headline="failing services"),
    Marginal("ecommerce_flows.converted", "funnel.conversion.rate", "conversion", headline="conversion"),
    Marginal("pull_requests.has_security_vulnerability", "pull_request.security_vulnerability_rate"),
    Marginal("pull_requests.is_breaking_change", "pull_request.breaking_change_rate"),
    Marginal("pull_requests.is_api_change", "pull_request.api_change_rate"),
    Marginal("pull_requests.is_db_change", "pull_request.db_change_rate"),
    Marginal("pull_requests.is_config_change", "pull_request.config_change_rate"),
    Marginal("pull_requests.size_class", "pull_request.size_class.shares"),
    Marginal("pull_requests.primary_service", "pull_request.primary_service.shares"),
    Marginal("pull_requests.regression_severity", "regression.severity.shares", "mix",
             among="has_performance_regression"),
    Marginal("system_runs.anomaly_type", "run.anomaly.type.shares", "mix", among="is_anomalous"),
    Marginal("ecommerce_flows.user_segment", "flow.segment.shares"),
    Marginal("ecommerce_flows.device_type", "flow.device.shares"),
    Marginal("ecommerce_flows.region", "flow.region.shares"),
)
_CLEAN_RUNS = ("~is_anomalous", "~pull_requests.has_performance_regression")
SHAPES = (
    Shape("system_runs.response_time_ms", "lognormal", _CLEAN_RUNS),
    Shape("system_runs.error_rate", "beta", _CLEAN_RUNS),
)
SIGNATURES = (
    Signature("system_runs.response_time_ms", by="pull_requests.has_performance_regression", direction="higher"),
    Signature("ecommerce_flows.converted", by="pull_requests.has_performance_regression", direction="lower"),
)
REPORT = (
    Plot("Response time of runs, regressed vs clean PRs", "distribution", "system_runs", "response_time_ms",
         by=("pull_requests.has_performance_regression",)),
    Plot("Conversion probability of flows, regressed vs clean PRs", "distribution", "ecommerce_flows",
         "conversion_probability", by=("pull_requests.has_performance_regression",)),
    Plot("Conversion funnel by device and segment", "funnel", "flow_steps", "flow_id", step="step_type",
         by=("ecommerce_flows.device_type", "ecommerce_flows.user_segment")),
    Plot("Anomaly types among anomalous runs", "mix", "system_runs", "anomaly_type", among="is_anomalous"),
    Plot("Service health across the dependency graph", "graph", "service_metrics", "health_score",
         node="service_name", edges="service.depends_on"),
)

# The data dictionary: what each column means, with its unit (by site name).
DESCRIPTIONS = {
    "size_class": "Size of the change: SMALL < 100, MEDIUM 100-500, LARGE > 500 lines changed",
    "lines_added": "Lines added by the PR",
    "lines_deleted": "Lines deleted by the PR",
    "files_changed": "Files changed by the PR",
    "cyclomatic_complexity": "Cyclomatic complexity of the changed code",
    "test_coverage": "Test coverage of the changed code (0-1)",
    "author_experience_years": "Author's experience with the codebase (years)",
    "is_api_change": "The PR changes an API",
    "is_db_change": "The PR changes a database schema or query",
    "is_config_change": "The PR changes configuration",
    "has_security_vulnerability": "The PR introduces a security vulnerability",
    "is_breaking_change": "The PR is a breaking change",
    "primary_service": "Service the PR mainly changes; a regression lands there",
    "merged_at": "When the PR was merged (UTC)",
    "services_touched": "Number of services the PR touches",
    "risk_score": "The team's heuristic risk score (0-1); observed, not a cause",
    "regression_probability": "Model probability that the PR regresses, given its features (0-1)",
    "has_performance_regression": "The PR causes a performance regression",
    "regression_severity": "Severity of the regression (NONE without one)",
    "performance_impact_score": "Size of the PR's performance impact (0-1)",
    "load_intensity": "Load during the run, relative to nominal (1.0)",
    "duration_s": "Run duration (seconds)",
    "started_at": "When the run started (UTC)",
    "anomaly_probability": "Model probability that the run is anomalous (0-1)",
    "is_anomalous": "The run is anomalous",
    "anomaly_type": "Kind of anomaly (NONE for normal runs)",
    "response_time_ms": "Mean response time of the system in the run (ms)",
    "p95_response_time_ms": "95th-percentile response time (ms)",
    "error_rate": "Share of requests that errored (0-1)",
    "success_rate": "Share of requests that succeeded (0-1)",
    "throughput_rps": "Requests served per second",
    "cpu_usage": "CPU utilisation (0-1)",
    "memory_usage": "Memory utilisation (0-1)",
    "disk_usage": "Disk utilisation (0-1)",
    "timeout_errors": "Requests that timed out",
    "server_errors": "Requests that failed with a server error",
    "client_errors": "Requests that failed with a client error",
    "failure_probability": "Model probability that the run fails (0-1)",
    "run_status": "Outcome of the run",
    "anomaly_score": "Intensity of the run's anomaly (0-1; 0 for normal runs)",
    "services.service_name": "The service these metrics describe",
    "is_touched_by_pr": "The run's PR changes this service",
    "services.response_time_ms": "Mean response time of the service (ms)",
    "services.error_rate": "Share of the service's requests that errored (0-1)",
    "services.throughput_rps": "Requests the service served per second",
    "health_score": "Health of the service from its latency and errors (0-1)",
    "health_status": "Health band of the service",
    "services.failure_probability": "Model probability that the service is failing (0-1)",
    "is_failing": "The service is failing in this run",
    "upstream_response_time_ms": "Mean response time of the services this one calls (ms; 0 when none)",
    "upstream_error_rate": "Mean error rate of the services this one calls (0-1; 0 when none)",
    "upstream_health": "Mean health of the services this one calls (1 when it calls none)",
    "downstream_health": "Mean health of the services that call this one (1 when none do)",
    "retries_per_minute": "Retries the service makes per minute",
    "active_users": "Active users in the system during the run",
    "orders_per_minute": "Orders placed per minute during the run",
    "user_segment": "Shopper segment",
    "device_type": "Shopper's device",
    "region": "Shopper's region",
    "flows.started_at": "When the flow started (UTC)",
    "cart_size": "Items in the cart",
    "cart_value": "Value of the cart (USD)",
    "browse_views": "Product pages browsed before the cart",
    "expected_latency_ms": "Mean latency the shopper can expect per funnel step in this run (ms)",
    "conversion_probability": "Model probability that the flow converts, given the shopper and run (0-1)",
    "converted": "The flow ended in a confirmed order",
    "last_step": "Furthest funnel step the flow reached",
    "abandonment_reason": "Why the flow stopped (NONE when it converted)",
    "step_type": "Funnel step this call belongs to",
    "steps.service_name": "Service that handled the call",
    "retry_attempt": "0 for a first call, n for the n-th retry",
    "step_index": "Position of the call within its flow (0-based)",
    "success": "The call succeeded",
    "latency_ms": "Latency of the call (ms)",
    "steps.started_at": "When the call started (UTC)",
}

# The seed's four ML tasks. A "predict" task forecasts its labels from their
# causes (no feature may be a causal descendant of a label); a "diagnose" task
# infers a latent state from its symptoms (the features are its effects). A
# feature "table.column" comes from an ancestor table of the task's unit.
TASKS = (
    Task("pr_impact", table="pull_requests", kind="predict",
         features=("size_class", "lines_added", "lines_deleted", "files_changed", "cyclomatic_complexity",
                   "test_coverage", "author_experience_years", "is_api_change", "is_db_change",
                   "is_config_change", "is_breaking_change", "has_security_vulnerability", "primary_service",
                   "services_touched", "risk_score"),
         binary="has_performance_regression", continuous="performance_impact_score",
         categorical="regression_severity", probability="regression_probability"),
    Task("service_health", table="service_metrics", kind="predict",
         features=("service_name", "is_touched_by_pr", "response_time_ms", "error_rate", "throughput_rps",
                   "retries_per_minute", "upstream_response_time_ms", "upstream_error_rate",
                   "system_runs.cpu_usage", "system_runs.memory_usage", "system_runs.disk_usage",
                   "system_runs.load_intensity"),
         binary="is_failing", continuous="health_score", categorical="health_status",
         probability="services.failure_probability"),
    Task("conversion", table="ecommerce_flows", kind="predict",
         features=("user_segment", "device_type", "region", "cart_size", "cart_value", "browse_views",
                   "expected_latency_ms", "system_runs.load_intensity"),
         binary="converted", continuous="conversion_probability", categorical="abandonment_reason",
         probability="conversion_probability"),
    Task("anomaly", table="system_runs", kind="diagnose",
         features=("load_intensity", "duration_s", "response_time_ms", "p95_response_time_ms", "error_rate",
                   "success_rate", "throughput_rps", "cpu_usage", "memory_usage", "disk_usage",
                   "timeout_errors", "server_errors", "client_errors"),
         binary="is_anomalous", continuous="anomaly_score", categorical="anomaly_type",
         posterior="anomaly_posterior"),
)

SEVERITY_LEVELS = ("NONE", "LOW", "MEDIUM", "HIGH")
RUN_STATUS_LEVELS = ("SUCCESS", "FAILED")
REASON_LEVELS = ("NONE", "PAYMENT", "INVENTORY", "SHIPPING")


def _vec(mapping, names=None) -> jnp.ndarray:
    """Values of a config mapping as a float vector, in ``names`` order."""
    names = tuple(mapping) if names is None else names
    return jnp.stack([jnp.asarray(mapping[n], jnp.float32) for n in names])


def _dependency_matrix(p: Params, services: tuple[str, ...]) -> np.ndarray:
    """``A[i, j] = 1`` when service ``i`` calls service ``j`` (static structure)."""
    a = np.zeros((len(services), len(services)), np.float32)
    for caller, callees in p.service.depends_on.items():
        for callee in callees:
            a[services.index(caller), services.index(callee)] = 1.0
    return a


def _over_services(matrix, x):
    """``matrix @ x`` along the services axis (-2) of a ``(..., S, 1)`` array."""
    return jnp.einsum("ij,...jk->...ik", matrix, x)


USAGE_COLUMNS = ("cpu_usage", "memory_usage", "disk_usage")


def _run_metric_means(p: Params, load, scale, kind, score) -> dict:
    """Where a run's metrics are centred, given its load, regression effect scale and anomaly.

    ``kind`` is the anomaly type index (0: none) and ``score`` its intensity:
    each anomaly moves the metric it is named after, in proportion to its
    score. Shared by the model and by ``anomaly_posterior``, which inverts it.
    Returns log-medians (response time, throughput, and the three usages on a
    last axis) and the mean error and success rates.
    """
    rn, fx, an = p.run, p.regression.effects, p.run.anomaly
    perf_a, error_a, resource_a, behavior_a = ((kind == i) * score for i in range(1, 5))
    clean_rt = rn.response_time_ms * load ** rn.load_latency_elasticity
    return {
        "log_rt": jnp.log(clean_rt * (1.0 + fx.response_time_increase * scale)
                          * (1.0 + an.response_time_increase * perf_a)),
        "err": jnp.clip(rn.error_rate + fx.error_rate_increase * scale + an.error_rate_increase * error_a,
                        1e-4, 0.9),
        "ok": jnp.clip(rn.success_rate * (1.0 - fx.success_rate_decrease * scale)
                       * (1.0 - an.error_rate_increase * error_a), 1e-3, 1.0 - 1e-4),
        "log_tput": jnp.log(rn.throughput_rps * load * (1.0 - an.behavior_throughput_decrease * behavior_a)
                            / jnp.sqrt(1.0 + fx.response_time_increase * scale)),
        "log_usage": jnp.log(jnp.stack([rn.cpu_usage, rn.memory_usage, rn.disk_usage])
                             * (jnp.sqrt(load) * (1.0 + fx.resource_usage_increase * scale)
                                * (1.0 + an.resource_usage_increase * resource_a))[..., None]),
    }


def anomaly_posterior(p: Params, runs, nodes: int = 24):
    """P(is_anomalous | a run's metrics): Bayes' rule over the model's own mechanism.

    The run's unobserved causes are summed out: its PR's regression (none, or
    each severity, with their configured probabilities), the anomaly's type
    (its shares) and its score (Gauss-Hermite quadrature over its logit-normal
    prior). The observed metrics are independent given those: log-normal
    response time and throughput, Beta error and success rates, log-normal
    usages clipped at 1 (censored there). p95 and error counts add nothing
    (they follow from these and hypothesis-free noise). ``runs`` has the
    anomaly task's feature columns; returns one probability per row.
    """
    from numpy.polynomial.hermite_e import hermegauss
    from scipy import special, stats

    rn, rg, an = p.run, p.regression, p.run.anomaly
    load = np.asarray(runs["load_intensity"], float)[:, None]
    z, w = hermegauss(nodes)
    score = special.expit(float(an.score_logit_mean) + float(an.score_logit_sd) * z)
    kinds = np.repeat(np.arange(1, 5), nodes)                      # anomalous hypotheses: (kind, node)
    weights = np.concatenate([float(an.type.shares[k]) * w / w.sum() for k in an.type.shares])
    kind = np.concatenate([[0], kinds])[None, :]
    level = np.concatenate([[0.0], np.tile(score, 4)])[None, :]
    effect = np.concatenate([[0.0], [float(rg.effect_scale[s]) for s in rg.severity.shares]])
    effect_prior = np.concatenate([[1 - float(rg.rate)],
                                   [float(rg.rate) * float(rg.severity.shares[s]) for s in rg.severity.shares]])
    observed = {c: np.asarray(runs[c], float)[:, None] for c in
                ("response_time_ms", "error_rate", "success_rate", "throughput_rps", *USAGE_COLUMNS)}
    log_like = []
    for scale in effect:
        m = {k: np.asarray(v, float) for k, v in _run_metric_means(p, load, scale, kind, level).items()}
        ll = (stats.norm.logpdf(np.log(observed["response_time_ms"]), m["log_rt"], float(rn.response_time_sd))
              + stats.beta.logpdf(observed["error_rate"], m["err"] * float(rn.error_concentration),
                                  (1 - m["err"]) * float(rn.error_concentration))
              + stats.beta.logpdf(observed["success_rate"], m["ok"] * float(rn.success_concentration),
                                  (1 - m["ok"]) * float(rn.success_concentration))
              + stats.norm.logpdf(np.log(observed["throughput_rps"]), m["log_tput"], float(rn.throughput_sd)))
        for i, column in enumerate(USAGE_COLUMNS):
            x, mu = observed[column], m["log_usage"][..., i]
            ll = ll + np.where(x >= 1.0, stats.norm.logsf(0.0, mu, float(rn.resource_sd)),
                               stats.norm.logpdf(np.log(np.minimum(x, 1.0)), mu, float(rn.resource_sd)))
        log_like.append(ll)
    log_like = np.stack(log_like, axis=1)                          # (runs, regression effect, hypothesis)
    prior_anomalous = special.expit(float(p.intercepts.anomaly) + float(an.regression_coefficient) * effect
                                    + float(an.load_coefficient) * np.log(load))   # (runs, effect)
    normal = np.log1p(-prior_anomalous) + log_like[..., 0]
    anomalous = np.log(prior_anomalous) + special.logsumexp(log_like[..., 1:], b=weights, axis=-1)
    log_effect = np.log(effect_prior)
    numerator = special.logsumexp(anomalous + log_effect, axis=-1)
    return np.exp(numerator - np.logaddexp(numerator, special.logsumexp(normal + log_effect, axis=-1)))


def _per_step(x, step_service):
    """A service-level ``(..., S, 1)`` array as one value per funnel step ``(..., 1, J)``."""
    return jnp.swapaxes(jnp.take(x, step_service, axis=-2), -1, -2)


def validate(p: Params) -> list[str]:
    """Cross-references a generic check cannot see: names that must exist."""
    services = tuple(p.services)
    errors = []
    for step, spec in p.funnel.steps.items():
        if spec.service not in services:
            errors.append(f"funnel.steps.{step}.service: {spec.service!r} is not one of {services}")
    for caller, callees in p.service.depends_on.items():
        for callee in (caller, *callees):
            if callee not in services:
                errors.append(f"service.depends_on.{caller}: {callee!r} is not one of {services}")
    for step, reason in p.funnel.abandonment_reason.items():
        if reason not in REASON_LEVELS[1:]:
            errors.append(f"funnel.abandonment_reason.{step}: {reason!r} is not one of {REASON_LEVELS[1:]}")
    for name in ("min_lines", "max_lines"):
        if tuple(p.pull_request.size_class[name]) != tuple(p.pull_request.size_class.shares):
            errors.append(f"pull_request.size_class.{name}: needs one value per size class")
    return errors


def model(p: Params, n_prs: int) -> None:
    """Sample ``n_prs`` pull requests and everything downstream of them.

    ``p`` is the resolved config (floats traced) plus ``p.intercepts``, the
    solved calibration intercepts. Plates: prs (dim -4) → runs (-3) →
    services / flows (-2) → steps / decisions (-1).
    """
    services = tuple(p.services)
    steps = tuple(p.funnel.steps)
    n_views, n_attempts = p.shape.max_browse_views, p.shape.max_attempts
    # Slot layout of a flow's calls: browse views, then n_attempts per later step.
    slot_step = np.array([0] * n_views + [j for j in range(1, len(steps)) for _ in range(n_attempts)])
    slot_attempt = np.array([0] * n_views + list(range(n_attempts)) * (len(steps) - 1))
    step_service = np.array([services.index(s.service) for s in p.funnel.steps.values()])
    depends = _dependency_matrix(p, services)
    ic = p.intercepts

    prs = numpyro.plate("prs", n_prs, dim=-4)
    runs = numpyro.plate("runs", p.shape.runs_per_pr, dim=-3)
    service_plate = numpyro.plate("services", len(services), dim=-2)
    flows = numpyro.plate("flows", p.shape.flows_per_run, dim=-2)
    decisions = numpyro.plate("decisions", 3, dim=-1)  # go on after browse, cart, checkout
    slots = numpyro.plate("steps", len(slot_step), dim=-1)
    service_index = jnp.arange(len(services)).reshape(-1, 1)

    # --- Pull request: code metrics and kinds of change -------------------
    pr = p.pull_request
    with prs:
        size_probs, size_levels = shares(pr.size_class.shares)
        size = categorical("size_class", size_probs, size_levels)
        log_lines = numpyro.sample("_log_lines", dist.Uniform(
            jnp.log(_vec(pr.size_class.min_lines)[size]), jnp.log(_vec(pr.size_class.max_lines)[size])))
        lines = jnp.floor(jnp.exp(log_lines))
        added_share = jax.nn.sigmoid(numpyro.sample("_added_logit", dist.Normal(pr.added_logit_mean, pr.added_logit_sd)))
        added = jnp.round(lines * added_share)
        numpyro.deterministic("lines_added", added.astype(jnp.int32))
        numpyro.deterministic("lines_deleted", (lines - added).astype(jnp.int32))
        files = pr.files_scale.per_sqrt_line * jnp.sqrt(lines) * jnp.exp(
            pr.files_sd * numpyro.sample("_files_noise", dist.Normal(0.0, 1.0)))
        numpyro.deterministic("files_changed", jnp.maximum(1.0, jnp.round(files)).astype(jnp.int32))
        complexity = numpyro.sample("cyclomatic_complexity", dist.LogNormal(
            jnp.log1p(pr.complexity_per_log_line * log_lines), pr.complexity_sd))
        coverage = numpyro.sample("test_coverage", dist.TransformedDistribution(
            dist.Normal(pr.coverage_logit_mean, pr.coverage_logit_sd), dist.transforms.SigmoidTransform()))
        experience = numpyro.sample("author_experience_years", dist.LogNormal(
            pr.experience_log_mean, pr.experience_log_sd))
        api = numpyro.sample("is_api_change", dist.Bernoulli(pr.api_change_rate))
        db = numpyro.sample("is_db_change", dist.Bernoulli(pr.db_change_rate))
        cfg = numpyro.sample("is_config_change", dist.Bernoulli(pr.config_change_rate))
        security = numpyro.sample("has_security_vulnerability", dist.Bernoulli(pr.security_vulnerability_rate))
        breaking = numpyro.sample("is_breaking_change", dist.Bernoulli(pr.breaking_change_rate))
        primary_probs, _ = shares(pr.primary_service.shares)
        primary = categorical("primary_service", primary_probs, services)
        timestamp("merged_at", pr.merge_window_days * 86400.0
                  * numpyro.sample("_merge_u", dist.Uniform(0.0, 1.0)))
    with prs, service_plate:
        also = numpyro.sample("_also_touched", dist.Bernoulli(pr.extra_services_rate))
    is_primary = primary == service_index
    touched = jnp.maximum(is_primary, also)                           # (B,1,S,1)
    with prs:
        n_touched = numpyro.deterministic(
            "services_touched", jnp.sum(touched, axis=-2, keepdims=True).astype(jnp.int32))
        w = pr.risk_weights
        numpyro.deterministic("risk_score", jax.nn.sigmoid(
            w.intercept + w.log_lines * log_lines + w.complexity * complexity
            + w.low_coverage * (1.0 - coverage) + w.api_change * api + w.db_change * db
            + w.breaking_change * breaking + w.security_vulnerability * security))

    # --- Pull request: the regression latent -------------------------------
    rg = p.regression
    c = rg.coefficients
    with prs:
        logit = (ic.regression + c.log_lines * (log_lines - 3.5) + c.complexity * (complexity - 8.0)
                 + c.low_coverage * (0.7 - coverage) - c.inexperience * jnp.log(experience)
                 + c.api_change * api + c.db_change * db + c.config_change * cfg
                 + c.breaking_change * breaking + c.services_touched * (n_touched - 1))
        reg_prob = numpyro.deterministic("regression_probability", jax.nn.sigmoid(logit))
        regressed = numpyro.sample("has_performance_regression", dist.Bernoulli(reg_prob))
        sev_probs, _ = shares(rg.severity.shares)
        severity = jnp.where(regressed, 1 + categorical("_severity_if_regressed", sev_probs,
                                                        SEVERITY_LEVELS[1:]), 0)
        label("regression_severity", severity, SEVERITY_LEVELS)
        scale = jnp.concatenate([jnp.zeros(1), _vec(rg.effect_scale)])[severity]
        numpyro.deterministic("performance_impact_score", jax.nn.sigmoid(
            _vec(rg.impact_logit, SEVERITY_LEVELS)[severity]
            + rg.impact_sd * numpyro.sample("_impact_noise", dist.Normal(0.0, 1.0))))
    fx = rg.effects

    # --- System run: load, latency, errors, anomalies, failure -------------
    rn = p.run
    with prs, runs:
        load = numpyro.sample("load_intensity", dist.LogNormal(rn.load_log_mean, rn.load_log_sd))
        duration = numpyro.sample("duration_s", dist.LogNormal(rn.duration_log_mean, rn.duration_log_sd))
        gaps = numpyro.sample("_gap_hours", dist.Exponential(1.0 / rn.delay_hours))
        timestamp("started_at", 3600.0 * jnp.cumsum(gaps, axis=-3), since="merged_at")
        an = rn.anomaly
        anomaly_prob = numpyro.deterministic("anomaly_probability", jax.nn.sigmoid(
            ic.anomaly + an.regression_coefficient * scale + an.load_coefficient * jnp.log(load)))
        anomalous = numpyro.sample("is_anomalous", dist.Bernoulli(anomaly_prob))
        kind_probs, kind_levels = shares(an.type.shares)
        kind = jnp.where(anomalous, 1 + categorical("_anomaly_kind", kind_probs, kind_levels), 0)
        label("anomaly_type", kind, ("NONE", *kind_levels))
        score = numpyro.deterministic("anomaly_score", jnp.where(anomalous, jax.nn.sigmoid(
            an.score_logit_mean + an.score_logit_sd * numpyro.sample("_anomaly_intensity", dist.Normal(0.0, 1.0))),
            0.0))

        m = _run_metric_means(p, load, scale, kind, score)
        clean_rt = rn.response_time_ms * load ** rn.load_latency_elasticity
        response_time = numpyro.sample("response_time_ms", dist.LogNormal(m["log_rt"], rn.response_time_sd))
        numpyro.deterministic("p95_response_time_ms", response_time * numpyro.sample(
            "_p95_ratio", dist.LogNormal(rn.p95_ratio_log_mean, rn.p95_ratio_log_sd)))
        error_rate = numpyro.sample("error_rate", dist.Beta(
            m["err"] * rn.error_concentration, (1.0 - m["err"]) * rn.error_concentration))
        numpyro.sample("success_rate", dist.Beta(
            m["ok"] * rn.success_concentration, (1.0 - m["ok"]) * rn.success_concentration))
        throughput = numpyro.sample("throughput_rps", dist.LogNormal(m["log_tput"], rn.throughput_sd))
        usage = jnp.clip(jnp.exp(m["log_usage"] + rn.resource_sd * numpyro.sample(
            "_resource_noise", dist.Normal(0.0, 1.0).expand([3]).to_event(1))), 0.0, 1.0)
        for i, name in enumerate(USAGE_COLUMNS):
            numpyro.deterministic(name, usage[..., i])
        errors = throughput * duration * error_rate
        cat_probs, cat_levels = shares(rn.error_category.shares)
        for i, level in enumerate(cat_levels):
            numpyro.deterministic(f"{level.lower()}_errors", jnp.floor(errors * cat_probs[i]).astype(jnp.int32))
        fl = rn.failure
        failure_prob = numpyro.deterministic("failure_probability", jax.nn.sigmoid(
            ic.run_failure + fl.regression_coefficient * scale + fl.anomaly_coefficient * anomalous
            + fl.error_rate_coefficient * error_rate))
        label("run_status", numpyro.sample("_failed", dist.Bernoulli(failure_prob)), RUN_STATUS_LEVELS)

    # --- Service metrics: local degradation through the dependency graph ----
    sv = p.service
    profile = p.services
    base_rt = _vec({s: profile[s].response_time_ms for s in services}).reshape(-1, 1)
    base_err = _vec({s: profile[s].error_rate for s in services}).reshape(-1, 1)
    base_tput = _vec({s: profile[s].throughput_rps for s in services}).reshape(-1, 1)
    retry_rate = _vec({s: profile[s].retry_rate for s in services}).reshape(-1, 1)
    # A regression degrades its service fully, and each caller up the graph by
    # propagation_share per hop (callers see their callees' slowness).
    exposure = hop = is_primary.astype(jnp.float32)
    for _ in range(len(services) - 1):
        hop = sv.propagation_share * _over_services(depends, hop)
        exposure = exposure + hop
    degradation = scale * exposure                                    # (B,1,S,1)
    with prs, runs, service_plate:
        label("services.service_name", service_index, services)
        numpyro.deterministic("is_touched_by_pr", touched.astype(bool))
        svc_clean = base_rt * load ** rn.load_latency_elasticity
        svc_rt = numpyro.sample("services.response_time_ms", dist.LogNormal(
            jnp.log(svc_clean) + sv.run_coupling * jnp.log(response_time / clean_rt)
            + jnp.log1p(fx.response_time_increase * degradation), sv.response_time_sd))
        svc_err = numpyro.sample("services.error_rate", dist.TransformedDistribution(
            dist.Normal(jax.scipy.special.logit(jnp.clip(base_err + fx.error_rate_increase * degradation, 1e-4, 0.9)),
                        sv.error_logit_sd), dist.transforms.SigmoidTransform()))
        numpyro.sample("services.throughput_rps", dist.LogNormal(
            jnp.log(base_tput * load / (1.0 + fx.response_time_increase * degradation)), sv.throughput_sd))
        slowness = jnp.log(svc_rt / svc_clean)
        excess_err = jnp.maximum(svc_err - base_err, 0.0)
        hw = sv.health_weights
        health = numpyro.deterministic("health_score", jax.nn.sigmoid(
            hw.intercept - hw.latency * jnp.maximum(slowness, 0.0) - hw.errors * excess_err
            + sv.health_sd * numpyro.sample("_health_noise", dist.Normal(0.0, 1.0))))
        thresholds, status_levels = shares(sv.status_thresholds)
        status = label("health_status", jnp.sum(health[..., None] < thresholds[:-1], axis=-1), status_levels)
        svc_fail_prob = numpyro.deterministic("services.failure_probability", jax.nn.sigmoid(
            ic.service_failure + sv.failure.health_coefficient * (1.0 - health)))
        numpyro.sample("is_failing", dist.Bernoulli(svc_fail_prob))
        n_callees = jnp.asarray(depends.sum(1)).reshape(-1, 1)
        n_callers = jnp.asarray(depends.sum(0)).reshape(-1, 1)
        numpyro.deterministic("upstream_response_time_ms", jnp.where(
            n_callees > 0, _over_services(depends, svc_rt) / jnp.maximum(n_callees, 1), 0.0))
        numpyro.deterministic("upstream_error_rate", jnp.where(
            n_callees > 0, _over_services(depends, svc_err) / jnp.maximum(n_callees, 1), 0.0))
        numpyro.deterministic("upstream_health", jnp.where(
            n_callees > 0, _over_services(depends, health) / jnp.maximum(n_callees, 1), 1.0))
        numpyro.deterministic("downstream_health", jnp.where(
            n_callers > 0, _over_services(depends.T, health) / jnp.maximum(n_callers, 1), 1.0))
        numpyro.deterministic("retries_per_minute", 60.0 * base_tput * load * retry_rate
                              * (1.0 + sv.retry_error_weight * svc_err))
        users = sv.users_per_rps * throughput
        numpyro.deterministic("active_users", jnp.broadcast_to(jnp.round(users), svc_rt.shape).astype(jnp.int32))
        numpyro.deterministic("orders_per_minute", jnp.broadcast_to(
            users * sv.order_rate * (1.0 - error_rate), svc_rt.shape))

    # --- E-commerce flow: shopper, cart, and what each step will feel like --
    fw = p.flow
    fn = p.funnel
    with prs, runs, flows:
        seg_probs, seg_levels = shares(fw.segment.shares)
        segment = categorical("user_segment", seg_probs, seg_levels)
        dev_probs, dev_levels = shares(fw.device.shares)
        device = categorical("device_type", dev_probs, dev_levels)
        reg_probs_, reg_levels = shares(fw.region.shares)
        region = categorical("region", reg_probs_, reg_levels)
        timestamp("flows.started_at", duration * numpyro.sample("_flow_offset", dist.Uniform(0.0, 1.0)),
                  since="started_at")
        extra_items = numpyro.sample("_extra_items", dist.GeometricProbs(
            1.0 / (1.0 + _vec(fw.cart_extra_items_count, seg_levels)[segment])))
        cart_size = numpyro.deterministic("cart_size", (1 + extra_items).astype(jnp.int32))
        cart_value = numpyro.sample("cart_value", dist.LogNormal(
            jnp.log(cart_size) + fw.item_price_log_mean + _vec(fw.segment_price_lift, seg_levels)[segment],
            fw.item_price_log_sd))
        views = numpyro.deterministic("browse_views", (1 + jnp.minimum(numpyro.sample(
            "_extra_views", dist.GeometricProbs(1.0 / (1.0 + _vec(fw.browse_extra_views_count, seg_levels)[segment]))),
            n_views - 1)).astype(jnp.int32))

        # What each funnel step costs this shopper in this run: the step's
        # service latency (behind the gateway), stretched by device and region.
        network = (_vec(fw.device_latency_factor, dev_levels)[device]
                   * _vec(fw.region_latency_factor, reg_levels)[region])    # (B,R,F,1)
        entry = services.index(sv.entry)
        step_latency = (_per_step(svc_rt, step_service) + svc_rt[..., entry:entry + 1, :]) * network  # (B,R,F,J)
        numpyro.deterministic("expected_latency_ms", jnp.mean(step_latency, axis=-1, keepdims=True))
        # A degraded or unhealthy service fails more of the calls made to it.
        loss = _per_step(_vec(fn.status_success_loss, status_levels)[status], step_service)
        call_ok = _vec({s: fn.steps[s].attempt_success for s in steps}) * (1.0 - loss)  # (B,R,1,J)
        retry_fail = (1.0 - call_ok) * fn.retry_probability
        later = call_ok[..., 1:] * (1.0 - retry_fail[..., 1:] ** n_attempts) / (1.0 - retry_fail[..., 1:])
        passes = jnp.concatenate([1.0 - (1.0 - call_ok[..., :1]) ** views,
                                  jnp.broadcast_to(later, views.shape[:-1] + later.shape[-1:])],
                                 axis=-1)                                     # (B,R,F,J)
        cv = fn.conversion
        go_on_prob = jax.nn.sigmoid(
            ic.conversion + _vec(cv.step_offset, steps[:3])
            + _vec(cv.segment, seg_levels)[segment] + _vec(cv.device, dev_levels)[device]
            + cv.log_cart_value * jnp.log(cart_value)
            + cv.latency * jnp.log(step_latency[..., :3] / 100.0))            # (B,R,F,3)
        numpyro.deterministic("conversion_probability", jnp.prod(passes, axis=-1, keepdims=True)
                              * jnp.prod(go_on_prob, axis=-1, keepdims=True))
    with prs, runs, flows, decisions:
        goes_on = numpyro.sample("_goes_on", dist.Bernoulli(go_on_prob)).astype(bool)

    # --- Flow steps: the calls, their retries, and where the flow stops -----
    with prs, runs, flows, slots:
        call_u = numpyro.sample("_call_u", dist.Uniform(0.0, 1.0))
        retried = numpyro.sample("_retried", dist.Bernoulli(fn.retry_probability)).astype(bool)
        slot_ok = call_u < call_ok[..., slot_step]
        present = []
        view = jnp.arange(n_views)
        browse_present = view < views
        present.append(browse_present)
        passed = jnp.any(browse_present & slot_ok[..., :n_views], axis=-1, keepdims=True)
        furthest = jnp.zeros(views.shape, jnp.int32)
        reached = passed & goes_on[..., 0:1]
        for j in range(1, len(steps)):
            furthest = jnp.where(reached, j, furthest)
            trying, passed = reached, jnp.zeros_like(reached)
            for a in range(n_attempts):
                slot = n_views + (j - 1) * n_attempts + a
                if a > 0:
                    trying = trying & ~slot_ok[..., slot - 1:slot] & retried[..., slot:slot + 1]
                present.append(trying)
                passed = passed | (trying & slot_ok[..., slot:slot + 1])
            reached = passed & (goes_on[..., j:j + 1] if j < 3 else True)
        converted = passed
        present = jnp.concatenate(present, axis=-1)
        rows("_present", present)
        label("step_type", slot_step, steps)
        label("steps.service_name", step_service[slot_step], services)
        numpyro.deterministic("retry_attempt", jnp.asarray(slot_attempt, jnp.int32))
        numpyro.deterministic("step_index", (jnp.cumsum(present, axis=-1) - 1).astype(jnp.int32))
        numpyro.deterministic("success", slot_ok & present)
        latency = numpyro.sample("latency_ms", dist.LogNormal(
            jnp.log(step_latency[..., slot_step]), fw.step_latency_sd))
        think = numpyro.sample("_think_s", dist.Exponential(1.0 / fw.think_time_s))
        elapsed = jnp.cumsum(jnp.where(present, latency / 1000.0 + think, 0.0), axis=-1)
        timestamp("steps.started_at", elapsed - jnp.where(present, latency / 1000.0, 0.0),
                  since="flows.started_at")

    with prs, runs, flows:
        numpyro.deterministic("converted", converted)
        label("last_step", furthest, steps)
        reasons = jnp.array([REASON_LEVELS.index(fn.abandonment_reason[s]) for s in steps])
        label("abandonment_reason", jnp.where(converted, 0, reasons[furthest]), REASON_LEVELS)
