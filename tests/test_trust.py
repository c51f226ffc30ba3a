"""A dataset cannot hurt its reader: reading one never imports the code its manifest names."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import pytest
from typer.testing import CliRunner

from causalsynth.cli import app
from causalsynth.dataset import sample_dataset

runner = CliRunner()
EXAMPLE = Path(__file__).parents[1] / "examples" / "ci_builds"


@pytest.fixture(scope="module")
def small(tmp_path_factory, small_config) -> Path:
    out = tmp_path_factory.mktemp("trust") / "ds"
    sample_dataset(config=small_config, n_prs=300, seed=5, out=out)
    return out


def planted(small: Path, tmp_path: Path) -> tuple[Path, Path]:
    """A copy of ``small`` whose manifest names a model file that, imported, leaves a marker."""
    marker = tmp_path / "it-ran"
    evil = tmp_path / "evil.py"
    evil.write_text(f"from pathlib import Path\nPath({str(marker)!r}).write_text('imported')\n"
                    "NAME, VERSION, TABLES = 'evil', '1', ()\ndef model(p, n):\n    pass\n")
    ds = tmp_path / "ds"
    shutil.copytree(small, ds)
    manifest = json.loads((ds / "manifest.json").read_text())
    manifest["config"]["model"] = str(evil)
    (ds / "manifest.json").write_text(json.dumps(manifest))
    return ds, marker


@pytest.mark.parametrize("command", [
    ["validate", "{ds}"],
    ["load", "{ds}", "--db", "sqlite:///{tmp}/x.db"],
    ["report", "{ds}", "--out", "{tmp}/r.html"],
    ["export", "{ds}", "--out", "{tmp}/ml"],
    ["export", "{ds}", "--format", "rcaeval", "--out", "{tmp}/cases"],
    ["evaluate", "{ds}"],
    ["variant", "{ds}", "--variant", "no_regressions", "--out", "{tmp}/twin"],
])
def test_a_model_planted_in_a_manifest_is_never_imported(small, tmp_path, command):
    ds, marker = planted(small, tmp_path)
    result = runner.invoke(app, [arg.format(ds=ds, tmp=tmp_path) for arg in command])
    assert not marker.exists(), "a reading command imported the model a manifest named"
    assert result.exit_code == 2, result.output
    assert result.output.startswith("error: ") and result.output.count("\n") == 1, result.output
    assert "reading a dataset never imports the code it names" in result.output
    assert sorted(p.name for p in tmp_path.iterdir()) == ["ds", "evil.py"]  # nothing written


def test_a_dotted_shipped_model_name_is_refused(small, tmp_path):
    ds = tmp_path / "ds"
    shutil.copytree(small, ds)
    manifest = json.loads((ds / "manifest.json").read_text())
    manifest["config"]["model"] = "delivery_commerce.telemetry"
    (ds / "manifest.json").write_text(json.dumps(manifest))
    result = runner.invoke(app, ["validate", str(ds)])
    assert result.exit_code == 2 and "is neither a shipped model" in result.output, result.output


@pytest.fixture(scope="module")
def plugin_dataset(tmp_path_factory) -> Path:
    """A ci_builds dataset sampled in a separate process, so this one has never been told of the model."""
    out = tmp_path_factory.mktemp("trust-plugin") / "ci"
    import subprocess
    import sys

    subprocess.run([str(Path(sys.executable).parent / "causalsynth"), "sample", "--config", str(EXAMPLE / "ci_builds.yaml"),
                    "--n-prs", "200", "--set", "sampling.block_prs=1000", "--out", str(out)],
                   check=True, capture_output=True)
    return out


def test_a_plugin_dataset_is_read_with_the_model_its_reader_names(plugin_dataset, tmp_path):
    import subprocess
    import sys

    def validate(*extra: str) -> subprocess.CompletedProcess:
        return subprocess.run([str(Path(sys.executable).parent / "causalsynth"), "validate", str(plugin_dataset), *extra],
                              capture_output=True, text=True)

    refused = validate()
    assert refused.returncode == 2 and "name the model yourself with --model PATH" in refused.stderr
    assert validate("--model", str(EXAMPLE / "ci_builds.py")).returncode == 0
    moved = tmp_path / "ci_builds.py"  # the same source at another path: the dataset moved machines
    shutil.copy(EXAMPLE / "ci_builds.py", moved)
    shutil.copy(EXAMPLE / "ci_builds.yaml", tmp_path / "ci_builds.yaml")
    assert validate("--model", str(moved)).returncode == 0
    moved.write_text(moved.read_text() + "\n# edited\n")
    edited = validate("--model", str(moved))
    assert edited.returncode == 2 and "is not the model this dataset was sampled from" in edited.stderr
