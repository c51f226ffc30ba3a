"""Back-door adjustment sets from the model graph, and the AIPW estimator."""

from __future__ import annotations

from types import SimpleNamespace

import networkx as nx
import numpy as np
import pandas as pd
import pytest
from conftest import read_tables

from causalsynth.causal.adjustment import aipw, backdoor, backdoor_set, lineage, probability_sites, unit_frame
from causalsynth.causal.graph import Graph
from causalsynth.errors import ConfigError
from causalsynth.jobs.sample import sample_dataset

TREATMENT = "has_performance_regression"


def backdoor_graph(edges, treatment) -> nx.DiGraph:
    g = nx.DiGraph(list(edges))
    g.remove_edges_from(list(g.out_edges(treatment)))
    return g


# --- the pure core on textbook DAGs ---------------------------------------------
def test_confounder_is_adjusted_for():
    edges = [("Z", "X"), ("Z", "Y"), ("X", "Y")]
    found = backdoor(edges, "X", "Y", {"Z"})
    assert found.sites == {"Z"} and found.is_effect and found.blocking == ()


def test_hidden_confounder_blocks_and_is_named():
    edges = [("Z", "X"), ("Z", "Y"), ("X", "Y"), ("W", "X")]
    found = backdoor(edges, "X", "Y", {"W"})
    assert found.sites is None and found.is_effect
    assert found.blocking == ("Z",)


def test_mediator_is_never_included():
    edges = [("X", "M"), ("M", "Y"), ("Z", "X"), ("Z", "Y")]
    assert backdoor(edges, "X", "Y", {"Z", "M"}).sites == {"Z"}
    assert backdoor(edges, "X", "Y", {"M"}).sites is None  # M cannot stand in for Z


def test_m_bias_needs_no_adjustment():
    edges = [("A", "X"), ("A", "M"), ("B", "M"), ("B", "Y"), ("X", "Y")]
    assert backdoor(edges, "X", "Y", {"M"}).sites == frozenset()  # not {M}: it is a collider
    assert backdoor(edges, "X", "Y", {"A", "M", "B"}).sites == frozenset()


def test_blocking_a_path_can_open_another_through_a_collider():
    # M confounds X and Y, but is also a collider between hidden A and B.
    edges = [("M", "X"), ("M", "Y"), ("A", "X"), ("A", "M"), ("B", "M"), ("B", "Y"), ("X", "Y")]
    found = backdoor(edges, "X", "Y", {"M"})
    assert found.sites is None and found.blocking == ("A", "B")
    assert backdoor(edges, "X", "Y", {"M", "A"}).sites == {"M", "A"}


def test_no_effect_is_recorded_but_the_set_still_returned():
    found = backdoor([("Z", "X"), ("Z", "Y")], "X", "Y", {"Z"})
    assert found.sites == {"Z"} and not found.is_effect


# --- the wrapper on a tiny stand-in program -------------------------------------
def stand_in(columns, sample_sites, edges):
    """A program with tables units > visits and units > siblings; columns: (table, column, site, latent)."""
    names = {"units": None, "visits": "units", "siblings": "units"}
    tables = [SimpleNamespace(table=SimpleNamespace(name=name),
                              parent=SimpleNamespace(name=parent) if parent else None,
                              columns=tuple(SimpleNamespace(name=c, site=s, latent=latent)
                                            for t, c, s, latent in columns if t == name))
              for name, parent in names.items()]
    nodes = {a for e in edges for a in e} | {s for _, _, s, _ in columns}
    sites = {n: SimpleNamespace(kind="sample" if n in sample_sites else "deterministic", is_public=not n.startswith("_"))
             for n in nodes}
    program = SimpleNamespace(tables=tuple(tables), sites=sites, model=SimpleNamespace(CALIBRATION=()))
    graph = Graph(nodes={n: {"kind": sites[n].kind, "public": sites[n].is_public, "table": None, "column": None}
                         for n in nodes}, edges=tuple(edges), config_parents={})
    return graph, program


def tiny(latent_z: bool):
    columns = [("units", "x", "x", False), ("units", "z", "z", latent_z), ("units", "x_probability", "x_probability", False),
               ("visits", "y", "y", False), ("visits", "m", "m", False), ("siblings", "s", "s", False)]
    edges = [("z", "x_probability"), ("x_probability", "x"), ("z", "y"), ("x", "m"), ("m", "y"), ("x", "s")]
    return stand_in(columns, {"x", "z"}, edges)


def test_wrapper_observes_latent_columns_only_when_asked():
    graph, program = tiny(latent_z=False)
    found = backdoor_set(graph, program, "x", "visits.y")
    assert found.columns == ("units.z",) and found.sites == ("z",) and found.is_effect

    graph, program = tiny(latent_z=True)
    hidden = backdoor_set(graph, program, "x", "visits.y")
    assert hidden.columns is None and hidden.blocking == ("z",)
    assert "z (a latent column; latents=True treats it as observed)" in hidden.reason
    assert backdoor_set(graph, program, "x", "visits.y", latents=True).columns == ("units.z",)


def test_wrapper_skips_probabilities_and_other_tables_and_sorts_by_table():
    columns = [("units", "x", "x", False), ("units", "b", "b", False), ("units", "a", "a", False),
               ("visits", "c", "c", False), ("visits", "y", "y", False), ("siblings", "w", "w", False),
               ("units", "x_probability", "x_probability", False)]
    edges = [("x_probability", "x"), ("x", "y"), *[(z, t) for z in "abc" for t in ("x", "y")]]
    graph, program = stand_in(columns, {"x"}, edges)
    assert backdoor_set(graph, program, "x", "visits.y").columns == ("units.a", "units.b", "visits.c")

    # The treatment's own probability would block, but is an oracle quantity.
    graph, program = stand_in(columns, {"x"}, edges + [("_u", "x_probability"), ("_u", "y")])
    found = backdoor_set(graph, program, "x", "visits.y")
    assert found.columns is None and found.blocking == ("_u",) and "latent noise" in found.reason

    # A sibling table's column is many rows per unit: not a covariate.
    graph, program = stand_in(columns, {"x"}, edges + [("w", "x"), ("w", "y")])
    found = backdoor_set(graph, program, "x", "visits.y")
    assert found.columns is None and found.blocking == ("w",)
    assert "siblings.w is not a column of visits" in found.reason


# --- the real model ---------------------------------------------------------------
@pytest.mark.parametrize("latents", [False, True])
@pytest.mark.parametrize("outcome", ["ecommerce_flows.converted", "system_runs.response_time_ms",
                                     "service_metrics.health_score", "pull_requests.performance_impact_score"])
def test_model_sets_satisfy_the_backdoor_criterion(graph, program, outcome, latents):
    found = backdoor_set(graph, program, TREATMENT, outcome, latents=latents)
    table, _, column = outcome.partition(".")
    outcome_site = next(c.site for c in program.table(table).columns if c.name == column)
    assert found.is_effect and outcome_site in graph.descendants({TREATMENT})
    columns = {c.site: (t.table.name, c) for t in lineage(program, table) for c in t.columns}
    probabilities = probability_sites(program)
    assert "regression_probability" in probabilities
    if found.columns is None:
        assert found.blocking and found.reason
        assert all(s not in columns or s in probabilities or getattr(columns[s][1], "latent", False)
                   for s in found.blocking)
        return
    assert found.columns == tuple(f"{columns[s][0]}.{columns[s][1].name}" for s in found.sites)
    back = backdoor_graph(graph.edges, TREATMENT)
    assert nx.is_d_separator(back, {TREATMENT}, {outcome_site}, set(found.sites))
    assert not set(found.sites) & graph.descendants({TREATMENT})
    for site in found.sites:
        assert site in columns and site not in probabilities and not site.startswith("_")
        assert latents or not getattr(columns[site][1], "latent", False)


def test_observing_latents_never_loses_a_set(graph, program):
    for outcome in ("ecommerce_flows.converted", "system_runs.response_time_ms"):
        if backdoor_set(graph, program, TREATMENT, outcome).columns is not None:
            assert backdoor_set(graph, program, TREATMENT, outcome, latents=True).columns is not None


def test_no_path_means_no_effect(graph, program):
    found = backdoor_set(graph, program, "load_intensity", "pull_requests.has_performance_regression")
    assert not found.is_effect  # a back-door set (or the reason for none) is still reported
    assert (found.columns is None) == bool(found.reason)


@pytest.mark.parametrize("treatment, outcome, expected", [
    ("nonsense", "ecommerce_flows.converted", "not a sample site of the model; sample sites: "),
    ("converted", "ecommerce_flows.converted", f", {TREATMENT}, "),
    (TREATMENT, "converted", "expected TABLE.COLUMN"),
    (TREATMENT, "flows.converted", "ecommerce_flows"),
    (TREATMENT, "ecommerce_flows.convert", "ecommerce_flows has no column 'convert'; columns: "),
    (TREATMENT, "pull_requests.has_performance_regression", "is the treatment itself"),
])
def test_bad_treatment_or_outcome(graph, program, treatment, outcome, expected):
    with pytest.raises(ConfigError) as error:
        backdoor_set(graph, program, treatment, outcome)
    assert expected in str(error.value)


# --- AIPW -----------------------------------------------------------------------------
@pytest.fixture(autouse=True)
def one_openmp_thread():
    """The boosted trees' OpenMP threads spin at barriers: on a small, busy machine they
    take 20x longer than one thread does. One thread keeps these tests at a few seconds."""
    from threadpoolctl import threadpool_limits

    with threadpool_limits(1, user_api="openmp"):
        yield


def confounded(n_units=20_000, n_clusters=4_000, effect=2.0, seed=1) -> pd.DataFrame:
    """Z (and a category, a flag and a time) confound X and Y; PR-like clusters share a shock."""
    rng = np.random.default_rng(seed)
    cluster = rng.integers(0, n_clusters, n_units)
    shock = rng.normal(0, 1, n_clusters)[cluster]
    z = rng.normal(0, 1, n_units) + 0.5 * shock
    segment = rng.choice(["a", "b", "c"], n_units)
    flag = rng.random(n_units) < 0.3
    days = rng.uniform(0, 30, n_units)
    lift = pd.Series(segment).map({"a": -0.5, "b": 0.0, "c": 0.8}).to_numpy()
    x = rng.random(n_units) < 1 / (1 + np.exp(-(1.2 * z + lift + 0.6 * flag - 0.3)))
    y = effect * x + 2.0 * z + 1.5 * lift + flag + 0.05 * days + shock + rng.normal(0, 1, n_units)
    return pd.DataFrame({"pr_id": cluster, "x": x, "y": y, "z": z, "segment": segment,
                         "flag": flag, "when": pd.Timestamp("2024-01-01", tz="UTC") + pd.to_timedelta(days, "D")})


def test_aipw_removes_confounding_bias():
    frame = confounded()
    est = aipw(frame, "x", "y", ["z", "segment", "flag", "when"], cluster="pr_id")
    assert est.n_units == 20_000 and est.n_clusters == frame.pr_id.nunique()
    assert abs(est.naive - 2.0) > 10 * est.naive_se
    assert abs(est.ate - 2.0) < 3 * est.se and 0 < est.se < 0.1
    means = frame.groupby("x").y.mean()
    assert est.naive == pytest.approx(means[True] - means[False], rel=1e-12)
    assert aipw(frame, "x", "y", ["z", "segment", "flag", "when"], cluster="pr_id") == est


def test_naive_se_is_clustered():
    frame = confounded(n_units=4_000, n_clusters=100)
    est = aipw(frame, "x", "y", ["z"], cluster="pr_id")
    single = aipw(frame.assign(unit=np.arange(len(frame))), "x", "y", ["z"], cluster="unit")
    assert single.naive == est.naive and est.naive_se > 1.2 * single.naive_se  # shared shocks widen it


@pytest.mark.parametrize("kwargs, expected", [
    (dict(treatment="z"), "must be boolean or 0/1"),
    (dict(covariates=["nope"]), "no column 'nope'"),
    (dict(folds=1), "at least 2 folds"),
])
def test_aipw_errors(kwargs, expected):
    args = dict(treatment="x", outcome="y", covariates=["z"], cluster="pr_id") | kwargs
    with pytest.raises(ConfigError) as error:
        aipw(confounded(n_units=200, n_clusters=50), **args)
    assert expected in str(error.value)


# --- the analysis frame from a dataset --------------------------------------------------
@pytest.fixture(scope="module")
def small_dataset(tmp_path_factory, small_config):
    out = tmp_path_factory.mktemp("adjustment") / "data"
    sample_dataset(config=small_config, n_prs=60, seed=5, to=out)
    return out


def test_unit_frame_joins_ancestor_columns(small_dataset):
    refs = ["pull_requests.services_touched", "system_runs.load_intensity", "ecommerce_flows.device_type"]
    frame = unit_frame(small_dataset, f"pull_requests.{TREATMENT}", "ecommerce_flows.converted", refs)
    assert list(frame.columns) == ["flow_id", "pr_id", f"pull_requests.{TREATMENT}", "ecommerce_flows.converted", *refs]
    tables = read_tables(small_dataset)
    flows, runs, prs = tables["ecommerce_flows"], tables["system_runs"], tables["pull_requests"]
    expected = flows.merge(runs, on="run_id", suffixes=("", "_run")).merge(prs, on="pr_id", suffixes=("", "_pr"))
    expected = expected.set_index("flow_id").loc[frame.flow_id]
    assert len(frame) == len(flows)
    np.testing.assert_array_equal(frame["pull_requests.has_performance_regression"], expected[TREATMENT])
    np.testing.assert_array_equal(frame["system_runs.load_intensity"], expected["load_intensity"])
    np.testing.assert_array_equal(frame["pr_id"], expected["pr_id"])
    with pytest.raises(ConfigError, match="not a column of ecommerce_flows or of a table it belongs to"):
        unit_frame(small_dataset, f"pull_requests.{TREATMENT}", "ecommerce_flows.converted",
                   ["service_metrics.health_score"])


def test_graph_adjust_command_prints_the_set_or_why_there_is_none(program, graph):
    from typer.testing import CliRunner

    from causalsynth.cli import app

    runner = CliRunner()
    found = runner.invoke(app, ["graph", "--adjust", "has_performance_regression", "ecommerce_flows.converted"])
    assert found.exit_code == 0, found.output
    expected = backdoor_set(graph, program, "has_performance_regression", "ecommerce_flows.converted").columns
    assert all(f"\n{column}\n" in f"\n{found.stdout}" for column in expected)
    workload = ["--set", "team_workload.enabled=true"]
    hidden = runner.invoke(app, ["graph", "--adjust", "has_performance_regression", "system_runs.response_time_ms",
                                 *workload])
    assert hidden.exit_code == 1 and "team_workload" in hidden.output and "no adjustment set" in hidden.output
    shown = runner.invoke(app, ["graph", "--adjust", "has_performance_regression", "system_runs.response_time_ms",
                                *workload, "--latents"])
    assert shown.exit_code == 0 and "pull_requests.team_workload" in shown.stdout
    bad = runner.invoke(app, ["graph", "--adjust", "has_regression", "system_runs.response_time_ms"])
    assert bad.exit_code == 2 and "has_regression" in bad.output and "Traceback" not in bad.output
