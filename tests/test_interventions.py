"""Counterfactual twins, the causal graph and ground-truth effects."""

from __future__ import annotations

import json
import re

import jax
import numpy as np
import pandas as pd
import pytest
from conftest import CI_BUILDS, TABLES, read_tables, sha256
from numpyro import handlers
from typer.testing import CliRunner

from causalsynth.causal.effects import estimate_effect
from causalsynth.cli import app
from causalsynth.config.loading import load_config
from causalsynth.dataset.manifest import read_manifest
from causalsynth.engine.compiled import compiler_options
from causalsynth.engine.interventions import load_variant, switch_do
from causalsynth.engine.program import Program
from causalsynth.jobs.sample import sample_dataset, sample_twin

N_PRS = 5_000
SEED = 21
KEYS = {"pull_requests": "pr_id", "system_runs": "run_id", "service_metrics": "service_metric_id",
        "ecommerce_flows": "flow_id", "flow_steps": "step_id"}
runner = CliRunner()


@pytest.fixture(scope="module")
def factual(tmp_path_factory, default_config):
    out = tmp_path_factory.mktemp("twins") / "factual"
    sample_dataset(config=default_config, n_prs=N_PRS, seed=SEED, to=out)
    return out


@pytest.fixture(scope="module")
def twins(factual):
    made = {}
    for name in ("no_regressions", "all_regressions", "mobile_only", "peak_load", "high_test_coverage"):
        out = factual.parent / name
        sample_twin(factual_dir=factual, intervention=load_variant(name), to=out)
        made[name] = out
    return made


@pytest.fixture(scope="module")
def factual_tables(factual):
    return read_tables(factual)


def affected_sites(graph, variant) -> set[str]:
    return graph.descendants(set(variant.do) | graph.reading(variant.set))


@pytest.mark.parametrize("name", ["no_regressions", "mobile_only", "peak_load", "high_test_coverage"])
def test_non_descendants_are_identical_row_for_row(program, graph, twins, factual_tables, name):
    variant = load_variant(name)
    affected = affected_sites(graph, variant)
    twin = read_tables(twins[name])
    changed_somewhere = False
    for layout in program.tables:
        table, key = layout.table.name, layout.table.key
        f, t = factual_tables[table], twin[table]
        if layout.mask_site is None or layout.mask_site not in affected:
            assert f[key].tolist() == t[key].tolist(), table
        common = f[[key]].merge(t[[key]], on=key)[key]
        f = f.set_index(key).loc[common]
        t = t.set_index(key).loc[common]
        for column in layout.columns:
            same = f[column.name].equals(t[column.name])
            if column.site not in affected:
                assert same, f"{table}.{column.name} is not downstream of {name} but changed"
            changed_somewhere |= not same
    assert changed_somewhere


def _rows_of_prs(tables, pr_ids) -> dict[str, pd.DataFrame]:
    runs = tables["system_runs"][tables["system_runs"].pr_id.isin(pr_ids)]
    flows = tables["ecommerce_flows"][tables["ecommerce_flows"].run_id.isin(runs.run_id)]
    return {
        "pull_requests": tables["pull_requests"][tables["pull_requests"].pr_id.isin(pr_ids)],
        "system_runs": runs,
        "service_metrics": tables["service_metrics"][tables["service_metrics"].run_id.isin(runs.run_id)],
        "ecommerce_flows": flows,
        "flow_steps": tables["flow_steps"][tables["flow_steps"].flow_id.isin(flows.flow_id)],
    }


def test_units_already_at_the_intervened_value_are_identical(twins, factual_tables):
    clean = factual_tables["pull_requests"].query("~has_performance_regression").pr_id
    assert len(clean) > 0.7 * N_PRS
    twin = read_tables(twins["no_regressions"])
    a, b = _rows_of_prs(factual_tables, clean), _rows_of_prs(twin, clean)
    for table in TABLES:
        pd.testing.assert_frame_equal(a[table].reset_index(drop=True), b[table].reset_index(drop=True))

    mobile = factual_tables["ecommerce_flows"].query("device_type == 'MOBILE'").flow_id
    twin = read_tables(twins["mobile_only"])
    for table, key in (("ecommerce_flows", "flow_id"), ("flow_steps", "flow_id")):
        a = factual_tables[table][factual_tables[table][key].isin(mobile)].reset_index(drop=True)
        b = twin[table][twin[table][key].isin(mobile)].reset_index(drop=True)
        pd.testing.assert_frame_equal(a, b)


def test_hard_interventions_set_the_site_and_move_descendants(twins, factual_tables):
    none_, all_ = read_tables(twins["no_regressions"]), read_tables(twins["all_regressions"])
    assert not none_["pull_requests"].has_performance_regression.any()
    assert all_["pull_requests"].has_performance_regression.all()
    assert (none_["pull_requests"].regression_severity == "NONE").all()
    assert (all_["pull_requests"].regression_severity != "NONE").all()
    assert (read_tables(twins["mobile_only"])["ecommerce_flows"].device_type == "MOBILE").all()
    rt = {k: t["system_runs"].response_time_ms.mean() for k, t in (("none", none_), ("all", all_))}
    conv = {k: t["ecommerce_flows"].converted.mean() for k, t in (("none", none_), ("all", all_))}
    assert rt["all"] > 1.2 * rt["none"]
    assert conv["all"] < conv["none"] - 0.05
    factual_conv = factual_tables["ecommerce_flows"].converted.mean()
    assert conv["all"] < factual_conv < conv["none"]


def test_soft_interventions_move_rates_through_their_mechanisms(twins, factual_tables):
    coverage = read_tables(twins["high_test_coverage"])["pull_requests"]
    assert coverage.test_coverage.mean() > factual_tables["pull_requests"].test_coverage.mean() + 0.1
    assert coverage.has_performance_regression.mean() < factual_tables["pull_requests"].has_performance_regression.mean() - 0.03
    peak = read_tables(twins["peak_load"])["system_runs"]
    assert peak.load_intensity.mean() > 1.3 * factual_tables["system_runs"].load_intensity.mean()
    assert peak.is_anomalous.mean() > factual_tables["system_runs"].is_anomalous.mean()


def test_effects_match_the_twins(default_config, twins):
    none_, all_ = read_tables(twins["no_regressions"]), read_tables(twins["all_regressions"])
    for outcome, table, column in (("system_runs.response_time_ms", "system_runs", "response_time_ms"),
                                   ("ecommerce_flows.converted", "ecommerce_flows", "converted")):
        effect = estimate_effect(config=default_config, treatment="has_performance_regression",
                                 levels=("false", "true"), outcome=outcome, n_prs=N_PRS, seed=SEED)
        twin_difference = all_[table][column].astype(float).mean() - none_[table][column].astype(float).mean()
        assert effect.average == pytest.approx(twin_difference, rel=1e-6, abs=1e-9)
        assert effect.ci_low < effect.average < effect.ci_high
        assert effect.n_prs == N_PRS
    assert effect.average < 0  # regressions lose conversions


def test_twin_manifest_names_intervention_and_factual(factual, twins):
    manifest = read_manifest(twins["mobile_only"])
    assert manifest["intervention"]["name"] == "mobile_only"
    assert manifest["intervention"]["do"] == {"device_type": "MOBILE"}
    assert manifest["factual"]["manifest_sha256"] == sha256(factual / "manifest.json")
    assert manifest["calibration"] == read_manifest(factual)["calibration"]
    assert ["has_performance_regression", "regression_severity"] in manifest["graph"]["edges"]


def test_graph_is_derived_from_the_model(graph):
    assert "has_performance_regression" in graph.ancestors("converted")
    assert "has_performance_regression" not in graph.ancestors("device_type")
    assert "test_coverage" in graph.ancestors("has_performance_regression")
    assert graph.parents["has_performance_regression"] == {"regression_probability"}
    assert graph.reading(["pull_request.coverage_logit_mean"]) == {"test_coverage"}
    assert "services.response_time_ms" in graph.ancestors("conversion_probability")


def _site_values(model, key, params, n, switches=None):
    """Every site's value in a trace of ``model`` (under ``switch_do``, entered outermost, with
    ``switches``), jitted: eager mode would compile each operation on its own."""
    def values(key, params):
        with switch_do(data=switches):
            trace = handlers.trace(handlers.seed(model, key)).get_trace(params, n)
        return {name: site["value"] for name, site in trace.items() if site["type"] in ("sample", "deterministic")}

    return jax.jit(values, compiler_options=compiler_options())(key, params)


def test_switch_do_matches_numpyro_do(key):
    """The engine's do, a traced switch (``switch_do``), is NumPyro's ``handlers.do``: every other site
    takes the same values. It knows no model: run on the small ci_builds plug-in."""
    config = load_config(CI_BUILDS / "ci_builds.yaml", overrides=["sampling.block_prs=6"])
    model, params = config.model.model, Program(config).initial_params()
    ours = _site_values(model, key, params, 6, switches={"has_bug": (True, 1.0)})
    # the same noise in both worlds, on purpose: the key is cloned for its second use
    theirs = _site_values(handlers.do(model, {"has_bug": 1.0}), jax.random.clone(key), params, 6)
    for name, value in ours.items():
        if name != "has_bug":
            np.testing.assert_array_equal(np.asarray(value), np.asarray(theirs[name]), err_msg=name)
    assert np.all(np.asarray(ours["has_bug"]) == 1)


@pytest.mark.parametrize("fmt", ["json", "dot"])
def test_graph_command(fmt):
    """The full graph has every site; the default view only the story's columns, noise hidden."""
    full = runner.invoke(app, ["graph", "--format", fmt, "--full"])
    story = runner.invoke(app, ["graph", "--format", fmt])
    assert full.exit_code == 0 and story.exit_code == 0, full.output + story.output
    if fmt == "json":
        full_graph, story_graph = json.loads(full.output), json.loads(story.output)
        assert ["has_performance_regression", "regression_severity"] in full_graph["edges"]
        assert ["has_performance_regression", "regression_severity"] in story_graph["edges"]
        sites = {n["site"] for n in story_graph["nodes"]}
        assert not any(s.startswith("_") for s in sites) and len(sites) < len(full_graph["nodes"]) / 3
        # an edge of the view is a path of the full graph through sites not shown
        assert ["regression_severity", "converted"] in story_graph["edges"]
    else:
        for result in (full, story):
            assert result.output.startswith("digraph") and '"has_performance_regression" -> ' in result.output
        assert '"_' in full.output and '"_' not in story.output


@pytest.mark.parametrize("args", [["--format", "svg"], ["--format", "svg", "--full"], ["--format", "png"]])
def test_graph_drawn_by_graphviz(tmp_path, args):
    out = tmp_path / "graph"
    result = runner.invoke(app, ["graph", *args, "--out", str(out)])
    assert result.exit_code == 0, result.output
    data = out.read_bytes()
    if "png" in args:
        assert data.startswith(b"\x89PNG")
        return
    svg = data.decode()
    assert svg.lstrip().startswith("<?xml") and "<svg" in svg and ">has_performance_regression<" in svg
    width_pt = float(re.search(r'<svg width="([\d.]+)pt"', svg).group(1))
    if "--full" in args:
        assert ">_merge_day<" in svg
    else:  # the default view (nine ranks, PR to conversion) fits a 1600-pixel page at 96 dpi, labels at their own size
        assert width_pt * 96 / 72 <= 1600 and ">_" not in svg


def test_graph_without_graphviz_is_one_clear_error(tmp_path, monkeypatch):
    monkeypatch.setenv("PATH", str(tmp_path))  # no dot on it
    result = runner.invoke(app, ["graph", "--format", "svg"])
    assert result.exit_code == 2 and result.output.startswith("error: Graphviz's dot program is not installed")
    assert "Traceback" not in result.output


def test_effects_command(tmp_path):
    out = tmp_path / "effect.csv"
    result = runner.invoke(app, ["effects", "--treatment", "has_performance_regression", "--levels", "false,true",
                                 "--outcome", "system_runs.response_time_ms", "--n-prs", "300",
                                 "--set", "sampling.block_prs=1000", "--out", str(out)])
    assert result.exit_code == 0, result.output
    assert "average effect" in result.output and "95% CI" in result.output
    units = pd.read_csv(out)
    assert len(units) == 1_500 and (units.effect >= 0).mean() > 0.9


def _variant_file(tmp_path, text):
    path = tmp_path / "v.yaml"
    path.write_text(text)
    return str(path)


@pytest.mark.parametrize("args, expected", [
    (["--do", "has_performance_regresion=false"], "did you mean 'has_performance_regression'"),
    (["--do", "nonsense=1"], "sites that can be intervened on"),
    (["--do", "device_type=PHONE"], "one of MOBILE, DESKTOP, TABLET"),
    (["--do", "test_coverage=1.5"], "a number in [0, 1]"),
    (["--do", "has_performance_regression=maybe"], "true or false"),
    (["--do", "converted=true"], "cannot be intervened on"),
    (["--do", "_call_u=0.5"], "latent noise"),
    (["--do", "device_type"], "expected SITE=VALUE"),
    (["--variant", "no_such_variant"], "shipped variants: all_regressions"),
])
def test_bad_interventions_fail_cleanly(tmp_path, factual, args, expected):
    out = tmp_path / "twin"
    result = runner.invoke(app, ["variant", str(factual), "--out", str(out), *args])
    assert result.exit_code == 2, result.output
    assert expected in result.output
    assert not out.exists() and list(tmp_path.iterdir()) == []


@pytest.mark.parametrize("text, expected", [
    ("do:\n  device_type: MOBILE\nsett:\n  run.load_log_mean: 0.3\n", "unknown key 'sett' (did you mean 'set'?)"),
    ("set:\n  regression.rate: 0.5\n", "calibrated marginal"),
    ("set:\n  shape.runs_per_pr: 2\n", "identity"),
    ("set:\n  run.load_log_meen: 0.3\n", "run.load_log_mean"),
])
def test_bad_variant_files_fail_cleanly(tmp_path, factual, text, expected):
    variant = _variant_file(tmp_path, text)
    out = tmp_path / "twin"
    result = runner.invoke(app, ["variant", str(factual), "--out", str(out), "--variant", variant])
    assert result.exit_code == 2, result.output
    assert expected in result.output
    assert not out.exists()


def test_sample_with_do_and_missing_factual(tmp_path):
    result = runner.invoke(app, ["sample", "--n-prs", "30", "--out", str(tmp_path / "m"),
                                 "--set", "sampling.block_prs=1000", "--do", "device_type=TABLET"])
    assert result.exit_code == 0, result.output
    assert (read_tables(tmp_path / "m")["ecommerce_flows"].device_type == "TABLET").all()
    result = runner.invoke(app, ["variant", str(tmp_path / "nowhere"), "--variant", "mobile_only",
                                 "--out", str(tmp_path / "t")])
    assert result.exit_code == 2 and "not a causalsynth dataset" in result.output
