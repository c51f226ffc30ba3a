"""Confounding is real and removable: on the shared 20,000-PR default sample, the naive
contrast misses the ground-truth effect, and a back-door estimate on the set the graph
prints recovers it (the full-size figures are in benchmarks/RESULTS.md)."""

from __future__ import annotations

import pytest

from causalsynth.adjustment import aipw, backdoor_set, unit_frame
from causalsynth.effects import estimate_effect
from causalsynth.graph import model_graph
from causalsynth.program import Program

TREATMENT = "has_performance_regression"


@pytest.mark.parametrize("outcome", ["ecommerce_flows.converted", "system_runs.response_time_ms"])
def test_naive_contrast_is_biased_and_backdoor_adjustment_recovers_the_effect(dataset_20k, default_config,
                                                                               program, graph, outcome):
    adjust = backdoor_set(graph, program, TREATMENT, outcome)
    assert adjust.columns, adjust.reason
    truth = estimate_effect(config=default_config, treatment=TREATMENT, levels=("false", "true"),
                            outcome=outcome, n_prs=20_000, seed=11).average
    frame = unit_frame(dataset_20k, f"pull_requests.{TREATMENT}", outcome, list(adjust.columns))
    estimate = aipw(frame, f"pull_requests.{TREATMENT}", outcome, list(adjust.columns), cluster="pr_id")
    bias = estimate.naive - truth
    assert abs(bias) >= 0.25 * abs(truth), (estimate, truth)
    assert abs(bias) > 5 * estimate.naive_se, (estimate, truth)
    assert abs(estimate.ate - truth) < 3 * estimate.se, (estimate, truth, adjust.columns)


def test_a_hidden_confounder_leaves_no_adjustment_set_until_latents_are_observed(default_config):
    config = default_config.with_overrides(["team_workload.enabled=true", "sampling.latents=true"])
    program = Program(config)
    graph = model_graph(program)
    hidden = backdoor_set(graph, program, TREATMENT, "system_runs.response_time_ms")
    assert hidden.columns is None and "team_workload" in hidden.blocking
    observed = backdoor_set(graph, program, TREATMENT, "system_runs.response_time_ms", latents=True)
    assert observed.columns and "pull_requests.team_workload" in observed.columns
