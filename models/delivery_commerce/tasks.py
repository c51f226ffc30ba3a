"""What the engine needs to know of the model besides its story: tables, calibration,
the checks `validate` runs, the report's plots, the ML tasks and its command-line options."""

from __future__ import annotations

import numpy as np

from causalsynth.spec.modeling import (
    Calibration,
    Gaps,
    Identity,
    Incidents,
    Marginal,
    Option,
    Plot,
    Ref,
    Rollup,
    Shape,
    Signature,
    Table,
    Task,
)

from .calendar import merge_calendar_agrees, run_calendar_agrees
from .telemetry import ANOMALY_METRICS, INJECTED_FAULTS, WITHOUT_FAULT

TABLES = (
    Table("pull_requests", plates=("prs",), key="pr_id", number=("pr_number", "PR-%06d")),
    Table("system_runs", plates=("prs", "runs"), key="run_id"),
    Table("service_metrics", plates=("prs", "runs", "services"), key="service_metric_id"),
    Table("ecommerce_flows", plates=("prs", "runs", "flows"), key="flow_id"),
    Table("flow_steps", plates=("prs", "runs", "flows", "steps"), key="step_id", min_rows=1),
    Table("service_timeseries", plates=("prs", "runs", "services", "ticks"), key="point_id"),  # --series
    Table("traces", plates=("prs", "runs", "traces"), key="trace_id"),                         # --traces
    Table("trace_spans", plates=("prs", "runs", "traces", "spans"), key="span_id",
          refs=(Ref("parent_span_id", "_parent_span", "trace_spans"),)),
    Table("trace_logs", plates=("prs", "runs", "traces", "log_lines"), key="log_id",            # --logs
          refs=(Ref("span_id", "_log_span", "trace_spans"),)),
)

# The knobs of this story that `causalsynth sample` offers as options.
OPTIONS = (
    Option("--runs-per-pr", "shape.runs_per_pr", "System runs per PR."),
    Option("--flows-per-run", "shape.flows_per_run", "Flows per run."),
    Option("--series", "telemetry.enabled", "Also sample per-service metric series and each run's incident.",
           switch=True),
    Option("--counterfactual", "telemetry.counterfactual", "With --series: also each series value in the world "
           "without the run's fault (exact propagation labels).", switch=True),
    Option("--traces", "telemetry.traces.enabled", "With --series: also sample traces and their spans.",
           switch=True),
    Option("--logs", "telemetry.logs.enabled", "With --traces: also sample the log lines spans write.",
           switch=True),
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
# Missing rows a config asks for: the ticks a series misses.
GAPS = (Gaps("service_timeseries", "telemetry.gap_rate"),)
_CLEAN_RUNS = ("~is_anomalous", "~pull_requests.has_performance_regression")
SHAPES = (
    Shape("system_runs.response_time_ms", "lognormal", _CLEAN_RUNS),
    Shape("system_runs.error_rate", "beta", _CLEAN_RUNS),
)
# Per-row summaries of a row's children, columns the identities below may read.
ROLLUPS = (
    Rollup("ecommerce_flows", "paid_calls", "flow_steps", "count", "success & (step_type == 'PAYMENT')"),
    Rollup("ecommerce_flows", "confirmed_calls", "flow_steps", "count",
           "success & (step_type == 'ORDER_CONFIRMATION')"),
    Rollup("ecommerce_flows", "last_call_type", "flow_steps", "last", "step_type"),
    Rollup("ecommerce_flows", "last_step_successes", "flow_steps", "count",
           "success & (step_type == `ecommerce_flows.last_step`)"),
    Rollup("ecommerce_flows", "misnumbered_steps", "flow_steps", "count", "step_index != row_in_parent"),
    Rollup("ecommerce_flows", "steps_in_time_order", "flow_steps", "nondecreasing", "started_at"),
    Rollup("system_runs", "touched_services", "service_metrics", "count", "is_touched_by_pr"),
)
def steps_call_their_service(rows, config) -> np.ndarray:
    """Each step is a call to the service its step type is served by (``funnel.steps.STEP.service``)."""
    import pandas as pd

    served = {step: spec["service"] for step, spec in config.get("funnel.steps").items()}
    # Millions of rows, a handful of step types and services: compare category codes, not strings.
    steps, services = pd.Categorical(rows["step_type"]), pd.Categorical(rows["service_name"])
    expected = services.categories.get_indexer([served.get(s) for s in steps.categories])[steps.codes]
    return (steps.codes >= 0) & (expected >= 0) & (services.codes == expected)


def regression_starts_at_the_primary_service(rows, config) -> np.ndarray:
    """A regression incident's root cause is the regressed PR's primary service."""
    regression = np.asarray(rows["fault_kind"], object) == "REGRESSION"
    return ~regression | (np.asarray(rows["root_cause_service"], object)
                          == np.asarray(rows["pull_requests.primary_service"], object))


# Rules every row keeps by construction, in every world (docs/guides/tables.md: "Identities every row keeps").
# Rates are float32 counts over totals: they agree to 1e-6. Timestamps are in milliseconds.
IDENTITIES = (
    Identity("rates sum to 1", "system_runs", "abs(success_rate + error_rate + timeout_rate - 1) <= 1e-6"),
    Identity("error rate counts errors", "system_runs",
             "abs(error_rate * total_requests - server_errors - client_errors) <= 1e-6 * total_requests"),
    Identity("timeout rate counts timeouts", "system_runs",
             "abs(timeout_rate * total_requests - timeout_errors) <= 1e-6 * total_requests"),
    Identity("p95 above the mean", "system_runs", "p95_response_time_ms > response_time_ms"),
    Identity("anomaly type exactly when anomalous", "system_runs", "(anomaly_type == 'NONE') == ~is_anomalous"),
    Identity("anomaly score exactly when anomalous", "system_runs", "(anomaly_score == 0) == ~is_anomalous"),
    Identity("touched services number the PR's", "system_runs",
             "touched_services == `pull_requests.services_touched`"),
    Identity("calendar of started_at", "system_runs", run_calendar_agrees,
             ("started_at", "hour_of_day", "day_of_week", "is_holiday_season")),
    # The series' ground truth (sampled with --series; not applicable without).
    Identity("no root cause exactly without a fault", "system_runs",
             "(root_cause_service == 'NONE') == (fault_kind == 'NONE')"),
    Identity("a regression incident starts at the PR's primary service", "system_runs",
             regression_starts_at_the_primary_service,
             ("fault_kind", "root_cause_service", "pull_requests.primary_service")),
    Identity("an onset exactly with a fault", "system_runs", "(fault_onset_s >= 0) == (fault_kind != 'NONE')"),
    Identity("a regression incident exactly when the PR regressed", "system_runs",
             "(fault_kind == 'REGRESSION') == `pull_requests.has_performance_regression`"),
    Identity("an anomaly incident exactly when anomalous and not regressed", "system_runs",
             f"(fault_kind in {list(ANOMALY_METRICS)})"
             " == (is_anomalous & ~`pull_requests.has_performance_regression`)"),
    Identity("a second root cause only with a first, at another service", "system_runs",
             "(second_root_cause_service == 'NONE') | ((root_cause_service != 'NONE') "
             "& (second_root_cause_service != root_cause_service))"),
    Identity("a second fault kind exactly with a second root cause", "system_runs",
             "(second_fault_kind == 'NONE') == (second_root_cause_service == 'NONE')"),
    Identity("an injected fault only where nothing else goes on", "system_runs",
             f"~(fault_kind in {list(INJECTED_FAULTS)})"
             " | ~(is_anomalous | `pull_requests.has_performance_regression`)"),
    Identity("ticks at their offsets in the run's window", "service_timeseries",
             "started_at == `system_runs.started_at` + tick_index * {telemetry.tick_s} * 1000"),
    Identity("severity exactly when regressed", "pull_requests",
             "(regression_severity == 'NONE') == ~has_performance_regression"),
    Identity("calendar of merged_at", "pull_requests", merge_calendar_agrees,
             ("merged_at", "merge_hour", "merge_weekday", "is_end_of_quarter", "is_code_freeze",
              "is_holiday_season")),
    Identity("release pressure sums its pushes", "pull_requests",
             "abs(release_pressure - {calendar.release_pressure.end_of_quarter} * is_end_of_quarter"
             " - {calendar.release_pressure.friday_evening} * ((merge_weekday == 'FRI')"
             " & (merge_hour >= {calendar.friday_evening_from_hour}))"
             " - {calendar.release_pressure.code_freeze_exception} * is_code_freeze"
             " - {calendar.release_pressure.holiday_push} * is_holiday_season) <= 1e-5"),
    Identity("healthy is a score above its threshold", "service_metrics",
             "(health_status == 'HEALTHY') == (health_score >= {service.status_thresholds.HEALTHY})"),
    Identity("unhealthy is a score below its threshold", "service_metrics",
             "(health_status == 'UNHEALTHY') == (health_score < {service.status_thresholds.DEGRADED})"),
    Identity("flow starts within its run", "ecommerce_flows",
             "(started_at >= `system_runs.started_at`)"
             " & (started_at <= `system_runs.started_at` + 1000 * `system_runs.duration_s` + 1)"),
    Identity("steps numbered in order", "ecommerce_flows", "misnumbered_steps == 0"),
    Identity("steps in time order", "ecommerce_flows", "steps_in_time_order"),
    Identity("each step calls its step type's service", "flow_steps", steps_call_their_service,
             ("step_type", "service_name")),
    Identity("converted exactly when paid and confirmed", "ecommerce_flows",
             "converted == ((paid_calls > 0) & (confirmed_calls > 0))"),
    Identity("last step is the last call's", "ecommerce_flows", "last_step == last_call_type"),
    Identity("no reason exactly when converted", "ecommerce_flows", "(abandonment_reason == 'NONE') == converted"),
    Identity("PAYMENT only when no payment went through", "ecommerce_flows",
             "(abandonment_reason != 'PAYMENT') | (paid_calls == 0)"),
    Identity("TECHNICAL_ERROR only when every call of the last step failed", "ecommerce_flows",
             "(abandonment_reason != 'TECHNICAL_ERROR') | (last_step_successes == 0)"),
    Identity("shopper's stops only after a step that worked", "ecommerce_flows",
             "(abandonment_reason not in ['INVENTORY', 'SHIPPING', 'USER_EXIT']) | (last_step_successes > 0)"),
)
SIGNATURES = (
    Signature("system_runs.response_time_ms", by="pull_requests.has_performance_regression", direction="higher"),
    Signature("ecommerce_flows.converted", by="pull_requests.has_performance_regression", direction="lower"),
    Signature("system_runs.load_intensity", by="is_holiday_season", direction="higher"),
    Signature("pull_requests.has_performance_regression", by="is_end_of_quarter", direction="higher"),
)
_REGRESSED = ("pull_requests.has_performance_regression",)
REPORT = (
    # The causal story, first: a regression, through its runs and services, to shoppers.
    Plot("Release pressure → regression", "effect", "pull_requests", "has_performance_regression",
         by=("is_end_of_quarter",)),
    Plot("Regression → run latency", "effect", "system_runs", "response_time_ms", by=_REGRESSED),
    Plot("Regression → service health", "effect", "service_metrics", "health_score", by=_REGRESSED),
    Plot("Regression → conversion", "effect", "ecommerce_flows", "converted", by=_REGRESSED),
    # The details.
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

# The seed's four ML tasks. A "predict" task forecasts its labels from their
# causes (no feature may be a causal descendant of a label); a "diagnose" task
# infers a latent state from its symptoms (the features are its effects). A
# feature "table.column" comes from an ancestor table of the task's unit.
TASKS = (
    Task("pr_impact", table="pull_requests", kind="predict",
         features=("size_class", "lines_added", "lines_deleted", "files_changed", "cyclomatic_complexity",
                   "test_coverage", "author_experience_years", "is_api_change", "is_db_change",
                   "is_config_change", "is_breaking_change", "has_security_vulnerability", "primary_service",
                   "services_touched", "risk_score", "merge_hour", "merge_weekday", "is_end_of_quarter",
                   "is_code_freeze", "is_holiday_season", "release_pressure"),
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
                   "expected_latency_ms", "system_runs.load_intensity", "system_runs.hour_of_day",
                   "system_runs.is_holiday_season"),
         binary="converted", continuous="conversion_probability", categorical="abandonment_reason",
         probability="conversion_probability"),
    Task("anomaly", table="system_runs", kind="diagnose",
         features=("load_intensity", "duration_s", "response_time_ms", "p95_response_time_ms", "error_rate",
                   "timeout_rate", "success_rate", "throughput_rps", "cpu_usage", "memory_usage", "disk_usage",
                   "timeout_errors", "server_errors", "client_errors"),
         binary="is_anomalous", continuous="anomaly_score", categorical="anomaly_type",
         posterior="anomaly_posterior"),
)


def _mechanism(cases, config):
    from .rca import mechanism  # pandas and the RCA cases load only when incidents are scored

    return mechanism(cases, config)


# Root-cause methods that know this model's faults, scored beside the engine's (causalsynth.tasks.rca).
RCA_METHODS = {"mechanism": _mechanism}

# Where the incidents of a run sampled with --series are. RCAEval's names: a metric's suffix in its
# cases' columns, and a fault by the metric it moves (a regression and a PERFORMANCE anomaly slow a
# service down: delay; ERROR_RATE: loss; RESOURCE_USAGE: cpu; BEHAVIOR, dropped requests: socket); the
# injected faults by their mechanisms, RCAEval's names for the same ones (a code exception: "code", where
# RCAEval's RE3 numbers its five code faults f1 to f5).
INCIDENTS = Incidents(
    runs="system_runs", window_start="started_at", fault="fault_kind", root_cause="root_cause_service",
    onset_s="fault_onset_s", services="service_metrics", service="service_name", series="service_timeseries",
    tick="tick_index",
    metrics={"latency_ms": "latency", "p95_latency_ms": "latency-95", "request_rate": "workload",
             "error_rate": "error", "cpu_usage": "cpu", "memory_usage": "mem", "disk_usage": "disk"},
    faults={"REGRESSION": "delay", "PERFORMANCE": "delay", "ERROR_RATE": "loss", "RESOURCE_USAGE": "cpu",
            "BEHAVIOR": "socket", "CPU_HOG": "cpu", "MEMORY_LEAK": "mem", "DISK_PRESSURE": "disk",
            "NETWORK_DELAY": "delay", "PACKET_LOSS": "loss", "SOCKET_EXHAUSTION": "socket", "CODE_EXCEPTION": "code"},
    service_names="services", ticks="telemetry.ticks", tick_s="telemetry.tick_s", option="--series",
    spurious="spurious_event_service", second_root="second_root_cause_service", second_fault="second_fault_kind",
    local=tuple(ANOMALY_METRICS), counterfactual=WITHOUT_FAULT, calls="service.depends_on",
    shared=("run", ("REGRESSION",)),
    spans="trace_spans", logs="trace_logs", trace_option="--series --traces --logs", fault_operation="fault_operation")
