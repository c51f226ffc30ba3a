"""Models are plug-ins: a model file of one's own, named by its config, runs on the unchanged engine.

The plug-in is the second scenario shipped in ``examples/ci_builds`` (a model
file and its priors); the notebook ``second_scenario.ipynb`` tells its story.
"""

from __future__ import annotations

import json
import os
import re
from pathlib import Path

import pandas as pd
import pytest
from conftest import CI_BUILDS, SMALL_BLOCKS, read_table
from typer.testing import CliRunner

from causalsynth.cli import app
from causalsynth.cli.sample import EPILOG
from causalsynth.config.loading import load_config
from causalsynth.config.plugins import source_files
from causalsynth.engine.interventions import Intervention
from causalsynth.jobs.sample import sample_dataset, sample_twin
from causalsynth.validate.quality import validate_dataset

EXAMPLE = CI_BUILDS
CONFIG = EXAMPLE / "ci_builds.yaml"


@pytest.fixture(scope="module")
def dataset(tmp_path_factory) -> Path:
    out = tmp_path_factory.mktemp("plugin") / "ci"
    sample_dataset(config=load_config(CONFIG, ["sampling.block_prs=1000"]), n_prs=3000, seed=4, to=out)
    return out


def test_the_plug_in_shares_no_file_with_the_shipped_model(default_config):
    config = load_config(CONFIG)
    ours = {path.resolve() for _, path in source_files(config.model)}
    shipped = {path.resolve() for _, path in source_files(default_config.model)}
    assert ours == {(EXAMPLE / "ci_builds.py").resolve()} and not ours & shipped
    assert config.model.NAME == "ci_builds" and config.data["model"] == str((EXAMPLE / "ci_builds.py").resolve())
    # its priors join the engine's sections, and none of the shipped model's
    assert config.get("bug.rate") == 0.15 and config.get("sampling.block_prs") == 5000
    assert "regression" not in config.data and "services" not in config.data


def test_its_tables_are_linked_and_hold_its_calibrated_rates(dataset):
    manifest = json.loads((dataset / "manifest.json").read_text())
    assert {name: t["rows"] for name, t in manifest["tables"].items()} == {"pull_requests": 3000, "builds": 12000}
    prs = read_table(dataset, "pull_requests").to_pandas()
    builds = read_table(dataset, "builds").to_pandas()
    assert builds.pr_id.isin(prs.pr_id).all() and (builds.groupby("pr_id").size() == 4).all()
    assert abs(prs.has_bug.mean() - 0.15) < 0.03 and abs(builds.failed.mean() - 0.12) < 0.02
    checks = validate_dataset(dataset)
    assert [c.check for c in checks if not c.passed] == []
    assert {"marginal pull_requests.has_bug", "marginal builds.failed"} <= {c.check for c in checks}


def test_a_relative_model_path_is_resolved_against_its_config_file(tmp_path, dataset):
    """Read from another directory, the dataset's manifest still finds its model."""
    here = os.getcwd()
    os.chdir(tmp_path)
    try:
        assert [c.check for c in validate_dataset(dataset) if not c.passed] == []
    finally:
        os.chdir(here)


def test_its_twin_intervenes_on_its_own_sites(dataset, tmp_path):
    sample_twin(factual_dir=dataset, intervention=Intervention(name="clean", do={"has_bug": False}),
                to=tmp_path / "clean")
    factual = read_table(dataset, "builds").to_pandas()
    twin = read_table(tmp_path / "clean", "builds").to_pandas()
    prs = read_table(dataset, "pull_requests").to_pandas().set_index("pr_id")
    buggy = factual.pr_id.map(prs.has_bug).to_numpy()
    assert not read_table(tmp_path / "clean", "pull_requests").to_pandas().has_bug.any()
    # Same keys and the same build times (the bug does not cause them); fewer failures, on buggy PRs only.
    pd.testing.assert_series_equal(factual.duration_s, twin.duration_s)
    assert twin.failed[buggy].mean() < factual.failed[buggy].mean() - 0.2
    assert (twin.failed[~buggy] == factual.failed[~buggy]).all()


def test_sample_offers_the_options_the_chosen_model_declares(tmp_path):
    """`--builds-per-pr` is ci_builds' own; the shipped model's `--runs-per-pr` is refused for it, in one
    line naming what it offers; `sample --help` names both models' options."""
    base = ["sample", "--n-prs", "50", "--config", str(CONFIG), "--set", SMALL_BLOCKS]
    result = CliRunner().invoke(app, [*base, "--out", str(tmp_path / "two"), "--builds-per-pr", "2"])
    assert result.exit_code == 0, result.output
    assert json.loads((tmp_path / "two" / "manifest.json").read_text())["tables"]["builds"]["rows"] == 100
    result = CliRunner().invoke(app, [*base, "--out", str(tmp_path / "no"), "--runs-per-pr", "2"])
    assert result.exit_code == 2 and not (tmp_path / "no").exists()
    assert result.output.splitlines() == ["error: --runs-per-pr: not an option of sample, nor one its model "
                                          "ci_builds declares (its options: --builds-per-pr; --set KEY=VALUE "
                                          "sets any config value)"]
    plugin = load_config(CONFIG).model
    shipped = load_config().model
    assert all(o.flag in EPILOG for o in (*plugin.OPTIONS, *shipped.OPTIONS))


def test_its_task_exports_and_evaluates_and_rca_says_why_not(dataset, tmp_path):
    """ci_builds declares one ML task with no categorical label; `export` and `evaluate` run it as they run
    the shipped model's, and root-cause analysis, which needs incident series, is refused by name."""
    model = ["--model", str(EXAMPLE / "ci_builds.py")]
    runner = CliRunner()
    result = runner.invoke(app, ["export", str(dataset), "--out", str(tmp_path / "ml"), *model])
    assert result.exit_code == 0, result.output
    fields = json.loads((tmp_path / "ml" / "schema.json").read_text())["tasks"]["build_failure"]["fields"]
    assert [f["role"] for f in fields if f["role"].startswith("label")] == ["label (binary)", "label (continuous)"]
    assert len(pd.read_parquet(tmp_path / "ml" / "build_failure.parquet")) == 3000 * 4
    result = runner.invoke(app, ["evaluate", str(dataset), *model])
    assert result.exit_code == 0, result.output
    scores = json.loads((dataset / "evaluation.json").read_text())["build_failure"]
    assert set(scores) == {*(f"failed.{m}" for m in ("accuracy", "balanced_accuracy", "precision", "recall", "f1",
                                                     "roc_auc", "pr_auc")), "failure_probability.mae", "_rows"}
    assert scores["failed.roc_auc"]["value"] > 0.7 > scores["failed.roc_auc"]["majority"]
    for args in (["export", str(dataset), "--format", "rcaeval"], ["evaluate", str(dataset), "--tasks", "root_cause"]):
        result = runner.invoke(app, [*args, *model])
        assert result.exit_code == 2
        assert result.output.strip().endswith(f"{dataset} has no incident series: its model ci_builds samples none")


def test_the_model_guide_names_every_declaration():
    """docs/guides/models.md's table has a row for every name the engine reads from a model."""
    from causalsynth.config.plugins import OPTIONAL, REQUIRED

    guide = (Path(__file__).parents[1] / "docs" / "guides" / "models.md").read_text()
    named = {name for line in guide.splitlines() if line.startswith("| `")
             for name in re.findall(r"`(\w+)", line.split("|")[1])}
    assert {*REQUIRED, *OPTIONAL} - named == set()
