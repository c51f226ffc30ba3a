"""A dataset cannot hurt its reader: reading one never imports the code its manifest names."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import pytest
from conftest import CI_BUILDS
from typer.testing import CliRunner

from causalsynth.cli import app
from causalsynth.jobs.sample import sample_dataset

runner = CliRunner()
EXAMPLE = CI_BUILDS


@pytest.fixture(scope="module")
def small(tmp_path_factory, small_config) -> Path:
    out = tmp_path_factory.mktemp("trust") / "ds"
    sample_dataset(config=small_config, n_prs=300, seed=5, to=out)
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

    cli = str(Path(sys.executable).parent / "causalsynth")
    subprocess.run([cli, "sample", "--config", str(EXAMPLE / "ci_builds.yaml"),
                    "--n-prs", "200", "--set", "sampling.block_prs=1000", "--out", str(out)],
                   check=True, capture_output=True)
    return out


@pytest.mark.slow
def test_a_plugin_dataset_is_read_with_the_model_its_reader_names(plugin_dataset, tmp_path):
    import subprocess
    import sys

    def validate(*extra: str) -> subprocess.CompletedProcess:
        cli = str(Path(sys.executable).parent / "causalsynth")
        return subprocess.run([cli, "validate", str(plugin_dataset), *extra],
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
    assert edited.returncode == 2 and "name the model yourself with --model PATH" in edited.stderr
    assert f"{moved} (named here) has SHA-256" in edited.stderr


def test_force_never_replaces_what_is_not_a_dataset(tmp_path):
    precious = tmp_path / "precious"
    precious.mkdir()
    (precious / "thesis.tex").write_text("years of work")
    result = runner.invoke(app, ["sample", "--n-prs", "20", "--out", str(precious), "--force"])
    assert result.exit_code == 2 and "--force replaces only a causalsynth dataset" in result.output, result.output
    assert [p.name for p in precious.iterdir()] == ["thesis.tex"]
    assert sorted(p.name for p in tmp_path.iterdir()) == ["precious"]


def test_force_keeps_a_file_of_the_users_inside_a_dataset(tmp_path):
    """A dataset whose directory also holds a file of the user's is not replaced; one holding only what
    causalsynth derived into it (an export, an evaluation) is."""
    out = tmp_path / "ds"
    assert runner.invoke(app, ["sample", "--n-prs", "20", "--out", str(out)]).exit_code == 0
    (out / "ml").mkdir()
    (out / "ml" / "schema.json").write_text("{}")
    (out / "evaluation.json").write_text("{}")
    (out / "NOTES.txt").write_text("mine")
    result = runner.invoke(app, ["sample", "--n-prs", "20", "--out", str(out), "--force"])
    assert result.exit_code == 2 and "--force replaces only a causalsynth dataset" in result.output, result.output
    assert (out / "NOTES.txt").read_text() == "mine" and (out / "manifest.json").exists()
    (out / "NOTES.txt").unlink()
    result = runner.invoke(app, ["sample", "--n-prs", "20", "--out", str(out), "--force"])
    assert result.exit_code == 0, result.output
    assert not (out / "ml").exists() and (out / "manifest.json").exists()


@pytest.mark.parametrize("out", ["", ".", "/", "~"])
def test_an_empty_or_root_like_out_is_refused(tmp_path, monkeypatch, out):
    monkeypatch.chdir(tmp_path)
    monkeypatch.setenv("HOME", str(tmp_path / "home"))
    (tmp_path / "home").mkdir()
    (tmp_path / "mine.txt").write_text("keep")
    result = runner.invoke(app, ["sample", "--n-prs", "20", "--out", str(Path(out).expanduser()) if out else out,
                                 "--force"])
    assert result.exit_code == 2 and result.output.startswith("error: --out "), result.output
    assert "give a directory of its own" in result.output
    assert sorted(p.name for p in tmp_path.iterdir()) == ["home", "mine.txt"]


def test_a_run_into_an_out_another_run_claims_fails_at_once(tmp_path):
    from causalsynth.dataset.staging import _claim

    out = tmp_path / "ds"
    with _claim(out):  # what a running sample holds from before its first block to its publish
        result = runner.invoke(app, ["sample", "--n-prs", "20", "--out", str(out), "--force"])
    assert result.exit_code == 2 and result.output.count("\n") == 1, result.output
    assert "another causalsynth run is writing it now" in result.output
    assert sorted(p.name for p in tmp_path.iterdir()) == []


@pytest.mark.slow
def test_two_writers_started_together_give_one_dataset_and_one_clear_error(tmp_path):
    """Whichever claims the directory first writes it; the other fails in one line (its claim refused, or
    the directory already a dataset), and never replaces the first."""
    import subprocess
    import sys

    out = tmp_path / "ds"
    command = [str(Path(sys.executable).parent / "causalsynth"), "sample", "--n-prs", "4000", "--out", str(out),
               "--set", "sampling.block_prs=1000"]
    runs = [subprocess.Popen(command, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True) for _ in range(2)]
    errors = [run.communicate(timeout=600)[1] for run in runs]
    codes = sorted(run.returncode for run in runs)
    assert codes == [0, 2], errors
    lost = errors[[run.returncode for run in runs].index(2)]
    assert lost.count("\n") == 1 and ("another causalsynth run is writing it now" in lost
                                      or "directory is not empty" in lost), lost
    result = runner.invoke(app, ["validate", str(out)])
    assert result.exit_code == 0, result.output
    assert sorted(p.name for p in tmp_path.iterdir()) == ["ds"]


def test_a_dead_runs_leftovers_are_removed_or_restored_and_said(small, tmp_path):
    out = tmp_path / "ds"
    staging = tmp_path / ".ds.abc123.partial"  # a run killed while writing
    (staging / "flow_steps").mkdir(parents=True)
    (staging / "flow_steps" / "part-000000.parquet").write_bytes(b"x" * 1000)
    old = tmp_path / ".ds.def456.old"  # a run killed between the two renames of a --force replacement
    old.mkdir()
    shutil.copytree(small, old / "previous")
    result = runner.invoke(app, ["sample", "--n-prs", "20", "--out", str(out), "--force"])
    assert result.exit_code == 0, result.output
    assert "note: restored" in result.output and "note: removed .ds.abc123.partial" in result.output
    assert sorted(p.name for p in tmp_path.iterdir()) == ["ds"]
    assert json.loads((out / "manifest.json").read_text())["n_prs"] == 20  # the restored one, then replaced


def test_a_stray_file_in_a_table_directory_fails_the_check_that_names_it(small, tmp_path):
    ds = tmp_path / "ds"
    shutil.copytree(small, ds)
    shutil.copy(ds / "flow_steps" / "part-000000.parquet", ds / "flow_steps" / "part-000099.parquet")
    from causalsynth.validate.quality import validate_dataset

    failed = [c for c in validate_dataset(ds) if not c.passed]
    assert [c.check for c in failed] == ["files flow_steps"]
    assert "flow_steps/part-000099.parquet" in failed[0].observed


def _edit_parts(ds: Path, edit) -> None:
    manifest = json.loads((ds / "manifest.json").read_text())
    edit(manifest["tables"]["system_runs"])
    (ds / "manifest.json").write_text(json.dumps(manifest))


@pytest.mark.parametrize("edit, message", [
    (lambda t: t["parts"][0].update(file="../../elsewhere/part-000000.parquet"), "is not a file inside the dataset"),
    (lambda t: t["parts"][0].update(file="/etc/passwd"), "is not a file inside the dataset"),
    (lambda t: t["parts"][0].update(file="flow_steps/part-000000.parquet"), "is not a file inside the dataset"),
    (lambda t: t["parts"].append(dict(t["parts"][0], first_row=t["rows"])), "listed more than once"),
    (lambda t: t["parts"].append(dict(t["parts"][0], file="system_runs/part-000001.parquet", first_row=1)),
     "overlap the rows before"),
    (lambda t: t["parts"][0].update(first_row=5), "leave a gap after the rows before"),
    (lambda t: t.update(rows=t["rows"] + 1), "the table's rows say"),
])
def test_parts_that_are_not_exactly_the_tables_rows_are_refused_by_every_reader(small, tmp_path, edit, message):
    ds = tmp_path / "ds"
    shutil.copytree(small, ds)
    _edit_parts(ds, edit)
    for command in (["validate", str(ds)], ["export", str(ds), "--out", str(tmp_path / "ml")],
                    ["variant", str(ds), "--variant", "no_regressions", "--out", str(tmp_path / "twin")]):
        result = runner.invoke(app, command)
        assert result.exit_code == 2 and message in result.output and result.output.count("\n") == 1, result.output
        assert "tables.system_runs" in result.output
    assert sorted(p.name for p in tmp_path.iterdir()) == ["ds"]


@pytest.mark.parametrize("claim, edit", [
    ("seed", lambda m: m.update(seed=m["seed"] + 1)),
    ("intercepts", lambda m: m["calibration"]["intercepts"].update(
        regression=m["calibration"]["intercepts"]["regression"] + 0.01)),
    ("intervention", lambda m: m["intervention"].update(do={"device_type": "MOBILE"})),
    ("a prior", lambda m: m["config"]["run"].update(load_log_mean=m["config"]["run"]["load_log_mean"] + 0.3)),
])
def test_a_manifest_claim_the_parts_did_not_come_from_fails_provenance(small, tmp_path, claim, edit):
    from causalsynth.validate.quality import validate_dataset

    ds = tmp_path / "ds"
    shutil.copytree(small, ds)
    manifest = json.loads((ds / "manifest.json").read_text())
    edit(manifest)
    (ds / "manifest.json").write_text(json.dumps(manifest))
    checks = {c.check: c for c in validate_dataset(ds)}
    assert not checks["provenance"].passed and "block 0" in checks["provenance"].observed, claim
    assert checks["checksum pull_requests"].passed  # every file is as written: only the claim is false
    assert validate_dataset(ds, resample=0) and next(
        c for c in validate_dataset(ds, resample=0) if c.check == "provenance").verdict == "n/a"


def test_validate_says_how_many_blocks_it_sampled_again(small):
    result = runner.invoke(app, ["validate", str(small), "--resample", "5"])
    assert result.exit_code == 0, result.output
    n_blocks = json.loads((small / "manifest.json").read_text())["n_prs"] // 1000 or 1
    assert f"{n_blocks} of {n_blocks} blocks" in result.output
