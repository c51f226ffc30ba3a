"""The documentation: every code block in it is run here or generated from the code, and the site builds
with warnings as errors.

The guides' ``bash`` and ``python`` blocks run in order, page after page, in one working directory,
as a reader would run them (later pages use the datasets earlier ones made). The servers a page needs
are the test session's: ``DATABASE_URL`` names a fresh PostgreSQL database, ``BUCKET`` an S3 bucket on
the session's moto server. Any other block must be a snippet of a file (``--8<--``), so it cannot drift.
The site's home page is README's opening, set-up and taste: CI runs the second set-up command
verbatim, and the taste's commands (each one a guide runs too) are parsed by the CLI (checked below).
"""

from __future__ import annotations

import os
import re
import signal
import subprocess
import sys
import uuid
from pathlib import Path

import pytest
import yaml

ROOT = Path(__file__).parents[1]
DOCS = ROOT / "docs"
FENCE = re.compile(r"^```(\w*)\n(.*?)^```$", re.M | re.S)
SNIPPET = re.compile(r'^--8<-- "([^"]+)"$', re.M)
RUN = ("bash", "python")
NOT_RUN = {"README.md:setup"}  # pip installs into a fresh environment: CI's own job
BLOCK_TIMEOUT_S = 300


def nav_pages() -> list[str]:
    """The site's Markdown pages in the order of its navigation (notebooks aside)."""
    def walk(node):
        if isinstance(node, str):
            yield node
        elif isinstance(node, dict):
            for value in node.values():
                yield from walk(value)
        elif isinstance(node, list):
            for item in node:
                yield from walk(item)

    nav = yaml.safe_load((ROOT / "mkdocs.yml").read_text())["nav"]
    return [p for p in walk(nav) if p.endswith(".md") and (DOCS / p).is_file()]


def snippet(spec: str) -> str:
    """A ``--8<--`` include as pymdownx.snippets expands it: a file, a line range, or a named section."""
    name, *where = spec.split(":")
    text = (ROOT / name).read_text()
    if len(where) == 2:
        return "\n".join(text.splitlines()[int(where[0]) - 1:int(where[1])])
    if where:
        start, end = f"--8<-- [start:{where[0]}]", f"--8<-- [end:{where[0]}]"
        lines = text.splitlines()
        first = next(i for i, line in enumerate(lines) if start in line)
        last = next(i for i, line in enumerate(lines) if end in line)
        return "\n".join(lines[first + 1:last])
    return text


def runnable_blocks(page: str) -> list[tuple[str, str]]:
    """The page's ``bash`` and ``python`` blocks, snippets expanded, in order."""
    def expand(match):
        return "" if match.group(1) in NOT_RUN else snippet(match.group(1))

    text = SNIPPET.sub(expand, (DOCS / page).read_text())
    return [(lang, code) for lang, code in FENCE.findall(text) if lang in RUN]


def test_every_code_block_is_run_or_a_snippet():
    pages = sorted(p.relative_to(DOCS) for p in DOCS.rglob("*.md") if "notebooks" not in p.parts)
    assert {str(p) for p in pages} <= set(nav_pages()), "a page outside the navigation is never built"
    for page in pages:
        for lang, code in FENCE.findall((DOCS / page).read_text()):
            generated = SNIPPET.fullmatch(code.strip())
            assert lang in RUN and not generated or generated, f"{page}: a ```{lang} block neither run nor generated"
    readme = (ROOT / "README.md").read_text()
    for lang, code in FENCE.findall(readme):
        assert lang == "bash", f"README: a ```{lang} block"


def test_the_readme_taste_parses_as_the_cli_expects():
    """README's taste (also the site's home) repeats commands the guides run; here each is parsed
    by the CLI itself, so an option renamed or retyped fails here."""
    import shlex

    import click
    import typer.main

    from causalsynth.cli import app

    command = typer.main.get_command(app)
    lines = snippet("README.md:taste").replace("\\\n", " ").splitlines()
    taste = [shlex.split(line, comments=True) for line in lines if line.startswith("causalsynth ")]
    assert len(taste) >= 5
    for args in taste:
        sub = command.commands[args[1]]
        sub.make_context(args[1], args[2:], parent=click.Context(command, info_name="causalsynth"))


def test_ci_runs_the_readme_test_command():
    commands = [code.strip() for _, code in FENCE.findall(snippet("README.md:setup"))]
    assert len(commands) == 2 and commands[1].endswith(".venv/bin/pytest")
    assert (ROOT / ".ci" / "run").read_text().rstrip().splitlines()[-1] == commands[1]


@pytest.fixture(scope="module")
def workdir(tmp_path_factory) -> Path:
    work = tmp_path_factory.mktemp("docs-run")
    (work / "examples").symlink_to(ROOT / "examples")
    return work


def _run(lang: str, code: str, cwd: Path, env: dict[str, str], log: Path) -> tuple[int, str]:
    """Run one block; return its exit status and output. What it left running in the background
    (a Dask scheduler and its workers) is stopped when it ends: it is its own process group."""
    args = ["bash", "-euo", "pipefail", "-c", code] if lang == "bash" else [sys.executable, "-c", code]
    with log.open("w") as out:  # a file, not a pipe: background processes keep a pipe open
        process = subprocess.Popen(args, cwd=cwd, env=env, stdout=out, stderr=subprocess.STDOUT,
                                   start_new_session=True)
        try:
            status = process.wait(timeout=BLOCK_TIMEOUT_S)
        except subprocess.TimeoutExpired:
            status = "timed out"
        finally:
            try:
                os.killpg(process.pid, signal.SIGTERM)
            except ProcessLookupError:
                pass
    return status, log.read_text()[-6000:]


@pytest.mark.parametrize("page", [p for p in nav_pages() if p.startswith("guides/") and runnable_blocks(p)])
def test_the_guides_commands_run(page, workdir, request):
    env = dict(os.environ, PATH=f"{Path(sys.executable).parent}{os.pathsep}{os.environ['PATH']}")
    text = "\n".join(code for _, code in runnable_blocks(page))
    if "$DATABASE_URL" in text:
        env["DATABASE_URL"] = request.getfixturevalue("postgres_url")
    if "$BUCKET" in text:
        request.getfixturevalue("s3_endpoint")
        import s3fs

        env["BUCKET"] = f"docs-{uuid.uuid4().hex[:8]}"
        s3fs.S3FileSystem().mkdir(env["BUCKET"])
        env |= {k: v for k, v in os.environ.items() if k.startswith("AWS_")}
    for i, (lang, code) in enumerate(runnable_blocks(page)):
        status, output = _run(lang, code, workdir, env, workdir / f"{page.replace('/', '_')}.{i}.log")
        assert status == 0, f"{page}: this {lang} block failed ({status}):\n{code}\n--- output ---\n{output}"


def test_the_site_builds_without_a_warning(tmp_path):
    result = subprocess.run([sys.executable, "-m", "mkdocs", "build", "--strict", "--site-dir", str(tmp_path)],
                            cwd=ROOT, capture_output=True, text=True, timeout=BLOCK_TIMEOUT_S,
                            env=dict(os.environ, NO_MKDOCS_2_WARNING="1"))
    assert result.returncode == 0, result.stderr
    assert "WARNING" not in result.stderr, result.stderr
    built = {p.relative_to(tmp_path).as_posix() for p in tmp_path.rglob("index.html")}
    assert {"reference/cli/index.html", "reference/api/index.html", "reference/data-dictionary/index.html",
            "notebooks/second_scenario/index.html", "guides/models/index.html"} <= built
    api = (tmp_path / "reference/api/index.html").read_text()
    assert "sample_dataset" in api and "Calibration" in api
