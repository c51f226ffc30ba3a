"""The environment the tests run in: uv.lock is resolved from pyproject.toml's current dependencies,
the environment under test is the locked one, the bounds exclude the pairings known to break, and
the system programs the tests use are installed by README's command or named in one line."""

from __future__ import annotations

import importlib.metadata
import re
import shutil
import subprocess
import tomllib
from pathlib import Path

import pytest
from packaging.requirements import Requirement
from packaging.utils import canonicalize_name
from packaging.version import Version

ROOT = Path(__file__).parents[1]
PROJECT = tomllib.loads((ROOT / "pyproject.toml").read_text())["project"]
LOCKED = tomllib.loads((ROOT / "uv.lock").read_text())["package"]

# Releases that install together within the bounds as they once were, and break: each set must be
# excluded by pyproject.toml's bounds.
KNOWN_BROKEN = [
    ({"numpyro": "0.21.0", "jax": "0.11.2"}, "NumPyro 0.21 fails to derive the graph with JAX 0.11 "
                                             "(numpyro.ops.provenance: length mismatch)"),
    ({"typer": "0.29.0"}, "Typer 0.29 shows a value placeholder on every flag in --help"),
    ({"dowhy": "0.14", "networkx": "3.5"}, "DoWhy 0.14 calls nx.algorithms.d_separated, which networkx 3.5 removed"),
]


def uv(*args: str, cwd: Path) -> subprocess.CompletedProcess:
    from uv import find_uv_bin

    return subprocess.run([find_uv_bin(), *args], cwd=cwd, capture_output=True, text=True, timeout=300)


def test_the_lock_is_resolved_from_the_current_dependencies():
    result = uv("lock", "--check", cwd=ROOT)
    assert result.returncode == 0, f"uv.lock is stale: regenerate it with `.venv/bin/uv lock`\n{result.stderr}"


def test_a_dependency_change_makes_the_lock_stale_until_it_is_regenerated(tmp_path):
    for name in ("pyproject.toml", "uv.lock", "README.md"):
        shutil.copy(ROOT / name, tmp_path / name)
    pyproject = tmp_path / "pyproject.toml"
    text = pyproject.read_text()
    planted = text.replace('    "pyyaml>=6",\n', '    "pyyaml>=6",\n    "tomli-w>=1",\n')
    assert planted != text
    pyproject.write_text(planted)

    stale = uv("lock", "--check", cwd=tmp_path)
    assert stale.returncode != 0 and "needs to be updated" in stale.stderr, stale.stderr
    regenerated = uv("lock", cwd=tmp_path)
    assert regenerated.returncode == 0, regenerated.stderr
    assert uv("lock", "--check", cwd=tmp_path).returncode == 0
    assert 'name = "tomli-w"' in (tmp_path / "uv.lock").read_text()


def test_the_environment_under_test_is_the_locked_one():
    """Every locked package installed here is at its locked version (uv sync --locked put it there)."""
    versions: dict[str, set[str]] = {}
    for package in LOCKED:
        versions.setdefault(canonicalize_name(package["name"]), set()).add(package["version"])
    installed = {canonicalize_name(d.metadata["Name"]): d.version for d in importlib.metadata.distributions()}
    checked = {name: installed[name] for name in versions if name in installed and name != "causalsynth"}
    off = {name: (version, sorted(versions[name])) for name, version in checked.items()
           if version not in versions[name]}
    assert not off, f"installed against locked: {off}"
    wanted = {canonicalize_name(Requirement(r).name) for r in PROJECT["optional-dependencies"]["test"]}
    assert wanted - {"causalsynth"} <= set(checked), "a test dependency is not installed"


@pytest.mark.parametrize("releases, why", KNOWN_BROKEN)
def test_the_bounds_exclude_the_pairings_known_to_break(releases, why):
    """Each set is excluded by the test environment's bounds (the base ones and the test extra's)."""
    declared = [Requirement(r) for r in PROJECT["dependencies"] + PROJECT["optional-dependencies"]["test"]]
    bounds: dict[str, list] = {}
    for requirement in declared:
        bounds.setdefault(canonicalize_name(requirement.name), []).append(requirement.specifier)
    assert any(Version(v) not in spec for name, v in releases.items() for spec in bounds[name]), why
    locked = {canonicalize_name(p["name"]): p["version"] for p in LOCKED}
    assert any(locked[name] != v for name, v in releases.items())


def test_readme_bootstraps_the_locked_uv():
    readme = (ROOT / "README.md").read_text()
    pins = set(re.findall(r"pip install uv==([\w.]+)", readme))
    locked = {p["version"] for p in LOCKED if p["name"] == "uv"}
    assert pins and pins == locked, (pins, locked)


def test_missing_system_programs_are_named_in_one_line_where_they_cannot_be_installed(tmp_path):
    """Without apt-get (and without dot or Chromium on PATH) the script installs nothing and says
    which packages to install, in one line."""
    bin_dir = tmp_path / "bin"
    bin_dir.mkdir()
    for program in ("bash", "ls", "id"):
        (bin_dir / program).symlink_to(shutil.which(program))
    result = subprocess.run(["bash", str(ROOT / "tests" / "system-programs.sh")], capture_output=True, text=True,
                            env={"PATH": str(bin_dir)}, timeout=60)
    assert result.returncode == 1 and result.stdout == ""
    assert result.stderr.count("\n") == 1 and result.stderr.startswith("error: the tests need these system packages")
    assert "graphviz chromium" in result.stderr and "apt-get install" in result.stderr


def test_the_system_programs_are_there():
    """README's command installed them: nothing in this run is skipped or failed for want of one."""
    result = subprocess.run(["bash", str(ROOT / "tests" / "system-programs.sh")], capture_output=True, text=True,
                            timeout=60)
    assert result.returncode == 0 and result.stderr == "", result.stderr
