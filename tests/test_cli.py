"""The command line: outputs, options, and bad input (clear message, non-zero exit, nothing written)."""

from __future__ import annotations

import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest
from conftest import SMALL_BLOCKS, TABLES
from typer.testing import CliRunner

from causalsynth.cli import app
from causalsynth.dataset.manifest import read_manifest
from causalsynth.engine.world import Progress
from causalsynth.jobs.sample import Destination, Run, sample_dataset

runner = CliRunner()


def run(*args: str):
    return runner.invoke(app, list(args))


def leftovers(directory: Path) -> list[str]:
    return sorted(p.name for p in directory.iterdir() if p.name.startswith("."))


def test_sample_writes_tables_manifest_and_summary(tmp_path):
    out = tmp_path / "ds"
    result = run("sample", "--n-prs", "40", "--out", str(out), "--seed", "3", "--set", SMALL_BLOCKS,
                 "--runs-per-pr", "10", "--flows-per-run", "2")
    assert result.exit_code == 0, result.output
    assert sorted(p.name for p in out.iterdir()) == sorted([*TABLES, "manifest.json"])
    assert all(sorted(p.name for p in (out / t).iterdir()) == ["part-000000.parquet"] for t in TABLES)
    manifest = read_manifest(out)
    rows = {name: t["rows"] for name, t in manifest["tables"].items()}
    assert rows["system_runs"] == 400 and rows["service_metrics"] == 2_000 and rows["ecommerce_flows"] == 800
    assert manifest["seed"] == 3 and manifest["n_prs"] == 40
    assert manifest["config"]["shape"]["runs_per_pr"] == 10
    assert set(manifest["calibration"]["intercepts"]) == {"regression", "anomaly", "run_failure",
                                                          "service_failure", "conversion"}
    for text in ("pull_requests", "flow_steps", "conversion", "regression rate"):
        assert text in result.output
    assert leftovers(tmp_path) == []


def test_version():
    result = run("--version")
    assert result.exit_code == 0 and result.output.startswith("causalsynth ")


@pytest.mark.parametrize("command", ["sample", "variant", "validate", "report", "export", "load", "graph"])
def test_help_shows_every_option_as_written(command):
    """Flags take no value, so their help shows none; help text is printed as written (Rich markup off)."""
    result = runner.invoke(app, [command, "--help"], env={"COLUMNS": "200"})
    assert result.exit_code == 0, result.output
    assert "<bool>" not in result.output
    if command == "sample":
        assert "Print the full validation table (a one-line verdict is always shown)." in result.output
        assert "The chosen model adds its own options (its OPTIONS)." in result.output


HEAVY = ("jax", "numpyro", "numpy", "pandas", "pyarrow", "scipy", "sklearn", "sqlalchemy", "matplotlib", "dask")


def test_help_and_import_load_no_heavy_library():
    """`causalsynth --help` and `import causalsynth` pay for typer and rich only; the public names
    still resolve, each on first use."""
    import subprocess
    import sys

    probe = ("import sys, causalsynth, causalsynth.cli; from typer.testing import CliRunner; "
             "assert CliRunner().invoke(causalsynth.cli.app, ['--help']).exit_code == 0; "
             f"print(sorted(m for m in {HEAVY!r} if m in sys.modules))")
    loaded = subprocess.run([sys.executable, "-c", probe], capture_output=True, text=True, check=True).stdout
    assert loaded.strip() == "[]", loaded
    import causalsynth

    for name in causalsynth.__all__:
        assert getattr(causalsynth, name).__name__ == name


@pytest.mark.slow
def test_sample_to_parquet_loads_no_library_it_does_not_use(tmp_path):
    """A Parquet-only `sample` in one process imports no data-frame, database, learning, plotting or cluster library."""
    import subprocess
    import sys

    unused = ("pandas", "sqlalchemy", "sklearn", "matplotlib", "dask", "distributed")
    probe = ("import sys; from causalsynth.cli import app; from typer.testing import CliRunner; "
             f"result = CliRunner().invoke(app, ['sample', '--n-prs', '10', '--out', {str(tmp_path / 'ds')!r}, "
             f"'--set', {SMALL_BLOCKS!r}]); assert result.exit_code == 0, result.output; "
             f"print(sorted(m for m in {unused!r} if m in sys.modules))")
    loaded = subprocess.run([sys.executable, "-c", probe], capture_output=True, text=True, check=True).stdout
    assert loaded.strip().splitlines()[-1] == "[]", loaded


def test_non_empty_out_needs_force(tmp_path):
    out = tmp_path / "ds"
    out.mkdir()
    (out / "keep.txt").write_text("precious")
    result = run("sample", "--n-prs", "10", "--out", str(out), "--set", SMALL_BLOCKS)
    assert result.exit_code == 2 and "--force" in result.output
    assert [p.name for p in out.iterdir()] == ["keep.txt"]
    result = run("sample", "--n-prs", "10", "--out", str(out), "--set", SMALL_BLOCKS, "--force")
    assert result.exit_code == 2 and "--force replaces only a causalsynth dataset" in result.output
    assert [p.name for p in out.iterdir()] == ["keep.txt"]
    (out / "keep.txt").unlink()
    for n_prs in ("10", "12"):  # an empty directory, then the dataset now in it
        result = run("sample", "--n-prs", n_prs, "--out", str(out), "--set", SMALL_BLOCKS, "--force")
        assert result.exit_code == 0, result.output
        assert read_manifest(out)["n_prs"] == int(n_prs)
    assert leftovers(tmp_path) == []


def test_unwritable_out(tmp_path):
    blocker = tmp_path / "file"
    blocker.write_text("not a directory")
    result = run("sample", "--n-prs", "10", "--out", str(blocker / "sub" / "ds"))
    assert result.exit_code == 2
    assert str(blocker / "sub") in result.output
    assert blocker.read_text() == "not a directory"


def test_missing_parents_are_created_and_removed_on_failure(tmp_path, small_config):
    out = tmp_path / "a" / "b" / "ds"

    def interrupt(rows):
        raise KeyboardInterrupt

    with pytest.raises(KeyboardInterrupt):
        sample_dataset(config=small_config, n_prs=3_000, seed=0, to=out, run=Run(Progress(on_block=interrupt)))
    assert list(tmp_path.iterdir()) == []
    sample_dataset(config=small_config, n_prs=10, seed=0, to=out)
    assert (out / "manifest.json").exists()


def test_interrupted_run_leaves_an_existing_dataset_untouched(tmp_path, small_config):
    out = tmp_path / "ds"
    sample_dataset(config=small_config, n_prs=10, seed=0, to=out)
    before = (out / "manifest.json").read_bytes()

    def interrupt(rows):
        raise KeyboardInterrupt

    with pytest.raises(KeyboardInterrupt):
        sample_dataset(config=small_config, n_prs=3_000, seed=1, to=Destination(out, force=True),
                       run=Run(Progress(on_block=interrupt)))
    assert (out / "manifest.json").read_bytes() == before
    assert leftovers(tmp_path) == []


@pytest.mark.slow
def test_ctrl_c_from_any_directory_leaves_nothing(tmp_path):
    """A real process, started outside the source tree, interrupted while writing."""
    out = tmp_path / "ds"
    proc = subprocess.Popen(
        [sys.executable, "-c", "from causalsynth.cli import run; run()", "sample",
         "--n-prs", "400000", "--out", str(out), "--set", SMALL_BLOCKS],
        cwd=tmp_path, stdout=subprocess.PIPE, stderr=subprocess.PIPE)
    deadline = time.monotonic() + 120
    while time.monotonic() < deadline and proc.poll() is None:
        staged = [p for p in tmp_path.glob(".ds.*.partial") if any(p.glob("*/*.parquet"))]
        if staged:
            break
        time.sleep(0.2)
    assert proc.poll() is None, proc.communicate()
    proc.send_signal(signal.SIGINT)
    _, stderr = proc.communicate(timeout=60)
    assert proc.returncode == 130, stderr
    assert b"nothing was written" in stderr
    assert not out.exists() and leftovers(tmp_path) == []
