"""Confounding is real and removable: on the shared 20,000-PR default sample, the naive
contrast misses the ground-truth effect, and back-door estimates on the set the graph
prints recover it, ours and DoWhy's (the full-size figures are in benchmarks/RESULTS.md)."""

from __future__ import annotations

import logging
import warnings

import pandas as pd
import pytest

from causalsynth.causal.adjustment import aipw, backdoor_set, unit_frame
from causalsynth.causal.effects import estimate_effect

TREATMENT = "has_performance_regression"
COLUMN = f"pull_requests.{TREATMENT}"


@pytest.fixture(scope="module", params=["ecommerce_flows.converted", "system_runs.response_time_ms"])
def case(request, dataset_20k, default_config, program, graph):
    """For one outcome: the printed adjustment set, the ground truth, the units and our AIPW estimate."""
    outcome = request.param
    adjust = backdoor_set(graph, program, TREATMENT, outcome)
    assert adjust.columns, adjust.reason
    truth = estimate_effect(config=default_config, treatment=TREATMENT, levels=("false", "true"),
                            outcome=outcome, n_prs=20_000, seed=11).average
    frame = unit_frame(dataset_20k, COLUMN, outcome, list(adjust.columns))
    estimate = aipw(frame, COLUMN, outcome, list(adjust.columns), cluster="pr_id")
    return outcome, adjust, truth, frame, estimate


def test_naive_contrast_is_biased_and_backdoor_adjustment_recovers_the_effect(case):
    _, adjust, truth, _, estimate = case
    bias = estimate.naive - truth
    assert abs(bias) >= 0.25 * abs(truth), (estimate, truth)
    assert abs(bias) > 5 * estimate.naive_se, (estimate, truth)
    assert abs(estimate.ate - truth) < 3 * estimate.se, (estimate, truth, adjust.columns)


def test_dowhy_weighting_on_the_printed_set_recovers_the_effect(case):
    """DoWhy's inverse propensity weighting, told only the printed set's columns as common causes.

    The set's columns are few-valued, so each is one-hot encoded: DoWhy's logistic propensity
    model is then saturated in each of them. Held to 3 of our AIPW standard errors."""
    from dowhy import CausalModel

    outcome, adjust, truth, frame, estimate = case
    data = pd.DataFrame({"treated": frame[COLUMN].astype(bool), "y": frame[outcome].astype(float)})
    causes = []
    for column in adjust.columns:
        assert frame[column].nunique() <= 20, column
        dummies = pd.get_dummies(frame[column].astype(str), prefix=column.replace(".", "_"), drop_first=True,
                                 dtype=float)
        data = pd.concat([data, dummies], axis=1)
        causes += list(dummies.columns)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        logging.getLogger("dowhy").setLevel(logging.ERROR)
        model = CausalModel(data=data, treatment="treated", outcome="y", common_causes=causes)
        estimand = model.identify_effect(proceed_when_unidentifiable=True)
        theirs = model.estimate_effect(estimand, method_name="backdoor.propensity_score_weighting",
                                       target_units="ate").value
    assert abs(theirs - truth) < 3 * estimate.se, (theirs, truth, estimate)
    assert abs(theirs - truth) < abs(estimate.naive - truth) / 3


def test_a_hidden_confounder_leaves_no_adjustment_set_until_latents_are_observed(default_config):
    from causalsynth.causal.graph import model_graph
    from causalsynth.engine.program import Program

    config = default_config.with_overrides(["team_workload.enabled=true", "sampling.latents=true"])
    program = Program(config)
    graph = model_graph(program)
    hidden = backdoor_set(graph, program, TREATMENT, "system_runs.response_time_ms")
    assert hidden.columns is None and "team_workload" in hidden.blocking
    observed = backdoor_set(graph, program, TREATMENT, "system_runs.response_time_ms", latents=True)
    assert observed.columns and "pull_requests.team_workload" in observed.columns
