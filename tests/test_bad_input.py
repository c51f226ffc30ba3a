"""Bad input, command by command: one line `error: ...` naming the key or path, exit 2, nothing written.

A table of command lines: config values of every type, malformed ``--set``
and ``--do``, variants, options checked before any work, and corrupt,
missing or truncated manifests and tables for every command that reads a
dataset. Every case must end with exactly one line, ``error: <message>``,
holding the case's expected words (the key or path and what is wrong), exit
with code 2, raise nothing but SystemExit, and leave every file as it was:
no output, no half-written file, the datasets untouched. Cases rejected
before any work print nothing else; the few that need the compiled model
(``--do`` sites, calibration) may print its progress stages first.

Every corrupt dataset is a copy of one small real sample, made once.
"""

from __future__ import annotations

import json
import shutil
from collections.abc import Callable
from pathlib import Path

import pyarrow.parquet as pq
import pytest
from conftest import SMALL_BLOCKS
from typer.testing import CliRunner

from causalsynth.cli import app
from causalsynth.config.loading import load_config
from causalsynth.jobs.sample import sample_dataset

runner = CliRunner()
SAMPLE = ["sample", "--n-prs", "10", "--out", "{tmp}/ds", "--set", SMALL_BLOCKS]
FAST_CALIBRATION = "sampling.calibration_prs=1000"


@pytest.fixture(scope="module")
def base(tmp_path_factory) -> Path:
    """The one real dataset the corrupt copies are made from (60 PRs)."""
    out = tmp_path_factory.mktemp("bad-input") / "base"
    sample_dataset(config=load_config(overrides=[SMALL_BLOCKS, FAST_CALIBRATION]), n_prs=60, seed=1, to=out)
    return out


def snapshot(root: Path) -> dict[str, tuple[int, int]]:
    """Every file and directory under ``root`` (hidden ones too), with its size and modification time."""
    if not root.exists():
        return {}
    return {str(p.relative_to(root)): (p.stat().st_size if p.is_file() else -1, p.stat().st_mtime_ns)
            for p in sorted(root.rglob("*"))}


def check_fails_cleanly(args: list[str], expected: tuple[str, ...], roots: list[Path], early: bool) -> str:
    """Run the command; assert one clean error line holding ``expected``, exit 2, nothing written."""
    before = [snapshot(r) for r in roots]
    result = runner.invoke(app, args)
    output = result.output
    assert result.exit_code == 2, output
    assert result.exception is None or isinstance(result.exception, SystemExit), repr(result.exception)
    assert "Traceback" not in output
    lines = output.splitlines()
    assert lines and lines[-1].startswith("error: "), output
    assert sum("error" in line for line in lines) == 1, output
    if early:  # refused before any work: the error is the whole output
        assert len(lines) == 1, output
    else:  # only the stages of work begun (compiling, calibrating) may come before it
        assert all(line.endswith("…") for line in lines[:-1]), output
    for words in expected:
        assert words in lines[-1], f"{words!r} not in {lines[-1]!r}"
    assert [snapshot(r) for r in roots] == before, "something was written"
    return lines[-1]


# --- config values, --set, --config, options: refused before any work ------------------------------------

def _file(name: str, text: str) -> Callable[[Path], None]:
    return lambda tmp: (tmp / name).write_text(text)


def _blocker(tmp: Path) -> None:
    (tmp / "file").write_text("not a directory")


CONFIG_CASES = [
    # floats
    ("float-out-of-range", ["--set", "regression.rate=1.5"], ("regression.rate", "[0, 1]")),
    ("float-negative-rate", ["--set", "run.anomaly.rate=-0.1"], ("run.anomaly.rate", "[0, 1]")),
    ("float-a-word", ["--set", "regression.rate=high"], ("regression.rate", "expected a number, got 'high'")),
    ("float-a-bool", ["--set", "regression.rate=true"], ("regression.rate", "expected a number, got true")),
    ("float-a-list", ["--set", "regression.rate=[1, 2]"], ("regression.rate", "expected a number, got [1, 2]")),
    ("float-infinite", ["--set", "run.response_time_ms=.inf"], ("run.response_time_ms", "finite")),
    ("float-not-positive", ["--set", "run.response_time_sd=0"], ("run.response_time_sd", "> 0")),
    ("float-empty", ["--set", "regression.rate="], ("regression.rate", "expected a number, got None")),
    # integers
    ("int-fraction", ["--set", "shape.runs_per_pr=2.5"], ("shape.runs_per_pr", "whole number")),
    ("int-a-bool", ["--set", "shape.runs_per_pr=false"], ("shape.runs_per_pr", "whole number, got false")),
    ("runs-per-pr-0", ["--runs-per-pr", "0"], ("shape.runs_per_pr", "> 0")),
    ("flows-per-run-negative", ["--flows-per-run", "-1"], ("shape.flows_per_run", "> 0")),
    ("block-negative", ["--set", "sampling.block_prs=-3"], ("sampling.block_prs", "> 0")),
    ("seed-key-negative", ["--set", "sampling.calibration_seed=-1"], ("sampling.calibration_seed", "[0, 4294967295]")),
    ("hour-out-of-range", ["--set", "calendar.friday_evening_from_hour=24"], ("calendar.friday_evening_from_hour",)),
    # booleans
    ("bool-a-word", ["--set", "sampling.latents=maybe"], ("sampling.latents", "expected true or false, got 'maybe'")),
    ("bool-a-number", ["--set", "team_workload.enabled=2"], ("team_workload.enabled", "expected true or false")),
    # strings, dates, names
    ("date-garbage", ["--set", "sampling.start=garbage"], ("sampling.start", "ISO 8601")),
    ("date-not-a-day", ["--set", "sampling.start=2026-13-45"], ("sampling.start", "'2026-13-45'", "ISO 8601")),
    ("day-of-year", ["--set", "calendar.seasons.code_freeze.to=12-32"], ("calendar.seasons.code_freeze.to", "MM-DD")),
    ("model-unknown", ["--set", "model=nope"], ("model", "no model program named 'nope'")),
    ("service-unknown", ["--set", "funnel.steps.PAYMENT.service=billing"],
     ("funnel.steps.PAYMENT.service", "is not one of")),
    # shares mappings
    ("shares-sum", ["--set", "flow.region.shares.US=0.5"], ("flow.region.shares", "sum to 1")),
    ("shares-a-number", ["--set", "flow.device.shares=0.5"], ("flow.device.shares", "is a section")),
    ("shares-a-word", ["--set", "flow.device.shares.MOBILE=most"], ("flow.device.shares.MOBILE", "expected a number")),
    # lists
    ("list-a-word", ["--set", "funnel.abandonment.stock_out.at=PAYMENT"],
     ("funnel.abandonment.stock_out.at", "a list")),
    ("list-bad-item", ["--set", "funnel.abandonment.stock_out.at=[PAYMENT]"],
     ("funnel.abandonment.stock_out.at", "PAYMENT")),
    ("list-unknown-service", ["--set", "service.depends_on.gateway=[billing]"],
     ("service.depends_on.gateway", "billing")),
    # relations between keys
    ("min-above-max", ["--set", "pull_request.size_class.min_lines.SMALL=200"],
     ("pull_request.size_class.min_lines.SMALL (200) must be below pull_request.size_class.max_lines.SMALL (100)",)),
    ("min-equals-max", ["--set", "pull_request.size_class.max_lines.LARGE=501"],
     ("pull_request.size_class.min_lines.LARGE (501) must be below pull_request.size_class.max_lines.LARGE (501)",)),
    ("thresholds-order", ["--set", "service.status_thresholds.DEGRADED=0.9"],
     ("service.status_thresholds", "HEALTHY (0.8) is not above DEGRADED (0.9)")),
    ("thresholds-lowest", ["--set", "service.status_thresholds.UNHEALTHY=0.1"],
     ("service.status_thresholds.UNHEALTHY", "must be 0")),
    # keys and the shape of --set
    ("unknown-key", ["--set", "regresion.rate=0.3"], ("regresion", "did you mean 'regression.rate'")),
    ("set-without-equals", ["--set", "regression.rate"], ("--set 'regression.rate'", "dotted.key=value")),
    ("set-without-key", ["--set", "=0.3"], ("--set '=0.3'", "dotted.key=value")),
    ("set-a-section", ["--set", "regression=0.3"], ("--set regression", "is a section")),
    ("several-errors", ["--set", "regression.rate=2", "--set", "run.anomaly.rate=3"],
     ("regression.rate", "run.anomaly.rate")),
    # --config files
    ("config-missing", ["--config", "{tmp}/missing.yaml"], ("{tmp}/missing.yaml", "No such file")),
    ("config-a-directory", ["--config", "{tmp}"], ("{tmp}", "Is a directory")),
    ("config-bad-yaml", ["--config", "{tmp}/bad.yaml"], ("{tmp}/bad.yaml", "not valid YAML", "line 2, column 1"),
     _file("bad.yaml", "regression: [unclosed\n")),
    ("config-not-utf8", ["--config", "{tmp}/latin.yaml"], ("config file {tmp}/latin.yaml", "not UTF-8 text"),
     lambda tmp: (tmp / "latin.yaml").write_bytes(b"regression:\n  rate: 0.3 # \xe9t\xe9\n")),
    ("config-not-a-day", ["--config", "{tmp}/day.yaml"], ("config file {tmp}/day.yaml", "month must be in 1..12"),
     _file("day.yaml", "sampling:\n  start: 2026-13-45\n")),
    ("config-a-list", ["--config", "{tmp}/list.yaml"], ("<root>: expected a mapping",), _file("list.yaml", "- 1\n")),
    ("config-unknown-key", ["--config", "{tmp}/typo.yaml"], ("regression.rat", "did you mean 'rate'"),
     _file("typo.yaml", "regression:\n  rat: 0.3\n")),
    ("config-a-string-for-a-mapping", ["--config", "{tmp}/flat.yaml"], ("regression: expected a mapping",),
     _file("flat.yaml", "regression: 0.3\n")),
    ("service-call-cycle", ["--set", "service.depends_on.user=[gateway]"],
     ("service.depends_on", "cycle, gateway -> user -> gateway")),
    # size, seed, output and database options
    ("n-prs-0", ["--n-prs", "0"], ("--n-prs", "positive", "got 0")),
    ("n-prs-negative", ["--n-prs", "-5"], ("--n-prs", "got -5")),
    ("n-prs-beyond-any-machine", ["--n-prs", "1000000000000000"], ("--n-prs", "at most 1,000,000,000")),
    ("seed-negative", ["--seed", "-1"], ("--seed", "[0, 4294967295]", "got -1")),
    ("seed-too-large", ["--seed", "4294967296"], ("--seed", "got 4294967296")),
    ("out-under-a-file", ["--out", "{tmp}/file/sub/ds"], ("{tmp}/file/sub",), _blocker),
    ("out-a-file", ["--out", "{tmp}/file"], ("--out {tmp}/file", "not a directory"), _blocker),
    ("db-not-a-url", ["--db", "notaurl"], ("--db 'notaurl'", "not a database URL")),
    ("db-scheme", ["--db", "mysql://x/y"], ("--db mysql://x/y", "unsupported database 'mysql'")),
    ("if-exists", ["--db", "sqlite:///{tmp}/x.db", "--if-exists", "sometimes"],
     ("--if-exists sometimes", "fail, replace, append")),
    ("schema-on-sqlite", ["--db", "sqlite:///{tmp}/x.db", "--schema", "s"], ("--schema s", "SQLite has no schemas")),
    ("db-sqlite-with-a-host", ["--db", "sqlite://u:hunter2@host/x.db"],
     ("--db sqlite://u:***@host/x.db", "a SQLite URL names a file")),
    ("out-unknown-url", ["--out", "nosuchscheme://bucket/ds"],
     ("nosuchscheme://bucket/ds", "an object store", "not nosuchscheme://")),
    ("out-not-an-object-store", ["--out", "memory://bucket/ds"], ("--out memory://bucket/ds", "an object store")),
    ("out-ftp", ["--out", "ftp://example.invalid/ds"], ("ftp://example.invalid/ds", "an object store", "not ftp://")),
    ("db-port", ["--db", "postgresql://u:hunter2@localhost:abc/db"],
     ("--db: the port in postgresql://u:***@localhost:abc/db", "not a number")),
    ("db-password-in-query", ["--db", "mysql://u@h/db?password=hunter2"], ("--db mysql://u@h/db?password=***",)),
    ("schema-empty", ["--db", "postgresql://u@127.0.0.1:1/db", "--schema", ""], ("--schema: empty",)),
    # the model a config names: a shipped name, or a model file of one's own
    ("model-unknown-name", ["--set", "model=retail"], ("no model program named 'retail'", "delivery_commerce")),
    ("model-missing-file", ["--set", "model={tmp}/nope.py"], ("model: {tmp}/nope.py", "not a Python file")),
    ("model-missing-names", ["--set", "model={tmp}/m.py"], ("model {tmp}/m.py", "missing: VERSION, TABLES, model"),
     _file("m.py", "NAME = 'm'\n")),
    ("model-fails-to-import", ["--config", "{tmp}/c.yaml"],
     ("model {tmp}/m.py", "importing it failed (line 2)", "ValueError: no priors"),
     lambda tmp: (_file("m.py", "NAME = 'm'\nraise ValueError('no priors')\n")(tmp),
                  _file("c.yaml", "model: m.py\n")(tmp))),
    ("workers-zero", ["--workers", "0"], ("--workers: must be from 1 to", "got 0")),
    ("workers-beyond-the-machine", ["--workers", "100000"], ("--workers: must be from 1 to", "on this machine",
                                                              "got 100000")),
    ("workers-and-scheduler", ["--workers", "2", "--scheduler", "tcp://127.0.0.1:1"], ("give one of them",)),
    # --do, before the model is compiled
    ("do-without-equals", ["--do", "has_performance_regression"], ("--do 'has_performance_regression'", "SITE=VALUE")),
    ("do-without-site", ["--do", "=true"], ("--do '=true'", "SITE=VALUE")),
    ("do-without-value", ["--do", "device_type="], ("--do 'device_type='", "SITE=VALUE")),
    ("do-twice", ["--do", "device_type=MOBILE", "--do", "device_type=DESKTOP"],
     ("--do device_type", "given twice", "MOBILE", "DESKTOP")),
    # --variant files
    ("variant-unknown", ["--variant", "no_such_variant"], ("--variant no_such_variant", "shipped variants: all_")),
    ("variant-missing-file", ["--variant", "{tmp}/missing.yaml"], ("{tmp}/missing.yaml", "No such file")),
    ("variant-bad-yaml", ["--variant", "{tmp}/v.yaml"], ("--variant {tmp}/v.yaml", "not valid YAML", "line 2"),
     _file("v.yaml", "do: [unclosed\n")),
    ("variant-not-utf8", ["--variant", "{tmp}/v.yaml"], ("--variant {tmp}/v.yaml", "not UTF-8 text"),
     lambda tmp: (tmp / "v.yaml").write_bytes(b"do: {region: \xff}\n")),
    ("variant-a-list", ["--variant", "{tmp}/v.yaml"], ("--variant {tmp}/v.yaml", "expected a mapping"),
     _file("v.yaml", "- do\n")),
    ("variant-unknown-keys", ["--variant", "{tmp}/v.yaml"],
     ("--variant {tmp}/v.yaml", "unknown key 'dox' (did you mean 'do'?)", "unknown key 'sett'"),
     _file("v.yaml", "dox: {device_type: MOBILE}\nsett: {run.load_log_mean: 0.3}\n")),
    ("variant-do-a-list", ["--variant", "{tmp}/v.yaml"], ("--variant {tmp}/v.yaml", "do: must be a mapping"),
     _file("v.yaml", "do: [device_type]\n")),
]
# Variant shifts and --do values are checked against the config and the compiled model (its sites
# and supports): the model is compiled first, but nothing is calibrated or sampled.
MODEL_CASES = [
    ("variant-set-unknown-key", ["--variant", "{tmp}/v.yaml"], ("variant v: set run.load_log_meen", "unknown key"),
     _file("v.yaml", "set: {run.load_log_meen: 0.3}\n")),
    ("variant-set-target", ["--variant", "{tmp}/v.yaml"], ("variant v: set regression.rate", "calibrated marginal"),
     _file("v.yaml", "set: {regression.rate: 0.5}\n")),
    ("variant-set-shape", ["--variant", "{tmp}/v.yaml"], ("variant v: set shape.runs_per_pr", "identity"),
     _file("v.yaml", "set: {shape.runs_per_pr: 2}\n")),
    ("variant-set-a-word", ["--variant", "{tmp}/v.yaml"], ("variant v: set run.load_log_mean", "numeric"),
     _file("v.yaml", "set: {run.load_log_mean: high}\n")),
    ("do-unknown-site", ["--do", "nosuchsite=1"], ("--do nosuchsite", "no such site", "device_type")),
    ("do-not-a-level", ["--do", "device_type=PHONE"], ("--do device_type=PHONE", "one of MOBILE, DESKTOP, TABLET")),
    ("do-not-a-bool", ["--do", "has_performance_regression=maybe"],
     ("has_performance_regression=maybe", "true or false")),
    ("do-probability", ["--do", "test_coverage=1.5"], ("--do test_coverage=1.5", "[0, 1]")),
    ("do-not-positive", ["--do", "cart_value=-3"], ("--do cart_value=-3", "> 0")),
    ("do-deterministic", ["--do", "converted=true"], ("--do converted", "cannot be intervened on")),
    ("do-noise", ["--do", "_size_u=0.5"], ("--do _size_u", "latent noise")),
    ("do-latent-when-off", ["--do", "team_workload=1"], ("--do team_workload", "no such site")),
]


def _params(cases, early: bool):
    for name, args, expected, *setup in cases:
        yield pytest.param(args, expected, setup[0] if setup else None, early, id=name)


@pytest.mark.parametrize("args, expected, setup, early",
                         [*_params(CONFIG_CASES, True), *_params(MODEL_CASES, False)])
def test_sample_refuses_bad_input(tmp_path, args, expected, setup, early):
    if setup:
        setup(tmp_path)
    fill = lambda text: text.replace("{tmp}", str(tmp_path))  # noqa: E731
    check_fails_cleanly([fill(a) for a in SAMPLE + args], tuple(map(fill, expected)), [tmp_path], early)


def test_unreachable_target_is_a_config_error(tmp_path):
    """Found by calibration, after compiling: still one line, and nothing written (no SQLite file either)."""
    args = SAMPLE + ["--db", "sqlite:///{tmp}/x.db", "--set", FAST_CALIBRATION, "--set", "funnel.conversion.rate=0.95"]
    check_fails_cleanly([a.replace("{tmp}", str(tmp_path)) for a in args],
                        ("funnel.conversion.rate: 0.95 is out of reach",), [tmp_path], early=False)


def test_sample_needs_somewhere_to_write(tmp_path):
    check_fails_cleanly(["sample", "--n-prs", "5"], ("--out DIR",), [tmp_path], early=True)


def test_a_cluster_loading_a_database_needs_out(tmp_path):
    check_fails_cleanly(["sample", "--n-prs", "5", "--db", f"sqlite:///{tmp_path}/x.db", "--workers", "2"],
                        ("--db with --workers/--scheduler needs --out too",), [tmp_path], early=True)


# --- other commands' options: refused before any work ----------------------------------------------------

EFFECTS = ["effects", "--treatment", "has_performance_regression", "--levels", "false,true",
           "--outcome", "system_runs.response_time_ms", "--n-prs", "10", "--set", SMALL_BLOCKS]
COMMAND_CASES = [
    ("effects-out-suffix", EFFECTS + ["--out", "{tmp}/x.txt"], ("--out {tmp}/x.txt", ".parquet or .csv")),
    ("effects-out-no-directory", EFFECTS + ["--out", "{tmp}/nowhere/x.parquet"],
     ("--out {tmp}/nowhere/x.parquet", "does not exist")),
    ("effects-out-a-directory", EFFECTS + ["--out", "{tmp}/dir.csv"], ("--out {tmp}/dir.csv", "is a directory")),
    ("effects-one-level", [*EFFECTS[:4], "false", *EFFECTS[5:], "--out", "{tmp}/x.parquet"], ("--levels",)),
    ("effects-empty-level", [*EFFECTS[:4], "false,", *EFFECTS[5:], "--out", "{tmp}/x.parquet"], ("--levels",)),
    ("effects-n-prs", EFFECTS + ["--n-prs", "0", "--out", "{tmp}/x.parquet"], ("--n-prs", "got 0")),
    ("effects-seed", EFFECTS + ["--seed", "-2", "--out", "{tmp}/x.parquet"], ("--seed", "got -2")),
    ("effects-bad-set", EFFECTS + ["--set", "regression.rate=2", "--out", "{tmp}/x.parquet"], ("regression.rate",)),
    ("effects-outcome-table", [*EFFECTS[:6], "nope.x", *EFFECTS[7:], "--out", "{tmp}/x.parquet"],
     ("--outcome nope.x", "no table 'nope'")),
    ("effects-outcome-column", [*EFFECTS[:6], "system_runs.nope", *EFFECTS[7:], "--out", "{tmp}/x.parquet"],
     ("--outcome system_runs.nope", "not a numeric or boolean column")),
    ("effects-treatment", [EFFECTS[0], "--treatment", "nosite", *EFFECTS[3:], "--out", "{tmp}/x.parquet"],
     ("--treatment nosite", "no such site")),
    ("effects-treatment-level", [EFFECTS[0], "--treatment", "device_type", "--levels", "MOBILE,PHONE", *EFFECTS[5:],
                                 "--out", "{tmp}/x.parquet"], ("--treatment device_type=PHONE", "one of MOBILE")),
    ("graph-format", ["graph", "--format", "xml"], ("--format xml", "json, dot, svg, png")),
    ("graph-png-to-terminal", ["graph", "--format", "png"], ("--format png", "--out")),
    ("graph-out", ["graph", "--out", "{tmp}/nowhere/g.json"], ("--out {tmp}/nowhere/g.json", "does not exist")),
    ("graph-bad-set", ["graph", "--set", "shape.max_attempts=0"], ("shape.max_attempts", "> 0")),
    ("graph-adjust-site", ["graph", "--adjust", "nosite", "ecommerce_flows.converted"], ("nosite",)),
    ("validate-json", ["validate", "{base}", "--json", "{tmp}/nowhere/checks.json"],
     ("--json {tmp}/nowhere/checks.json", "does not exist")),
    ("report-out", ["report", "{base}", "--out", "{tmp}/nowhere/r.html"],
     ("--out {tmp}/nowhere/r.html", "does not exist")),
    ("report-out-a-directory", ["report", "{base}", "--out", "{tmp}"], ("--out {tmp}", "is a directory")),
    ("export-format", ["export", "{base}", "--format", "xlsx", "--out", "{tmp}/x"],
     ("--format xlsx", "allowed are parquet, csv, jsonl, json", "rcaeval, re2, rcabench, otlp")),
    ("export-split-by", ["export", "{base}", "--split-by", "moon", "--out", "{tmp}/x"],
     ("--split-by moon", "pr, time")),
    ("export-split-seed", ["export", "{base}", "--split-seed", "-1", "--out", "{tmp}/x"], ("--split-seed", "got -1")),
    ("export-tasks", ["export", "{base}", "--tasks", "fraud"], ("--tasks fraud", "no such task")),
    ("export-out-a-file", ["export", "{base}", "--out", "{tmp}/file"], ("--out {tmp}/file", "not a directory")),
    ("export-out-a-url", ["export", "{base}", "--out", "s3://bucket/ml"], ("--out s3://bucket/ml", "local directory")),
    ("evaluate-tasks", ["evaluate", "{base}", "--tasks", "fraud"], ("--tasks fraud", "no such task")),
    ("load-db", ["load", "{base}", "--db", "notaurl"], ("--db 'notaurl'",)),
    ("load-if-exists", ["load", "{base}", "--db", "sqlite:///{tmp}/x.db", "--if-exists", "merge"],
     ("--if-exists merge", "fail, replace, append")),
    ("load-schema-empty", ["load", "{base}", "--db", "postgresql://u@127.0.0.1:1/db", "--schema", ""],
     ("--schema: empty",)),
    ("load-schema-on-sqlite", ["load", "{base}", "--db", "sqlite:///{tmp}/x.db", "--schema", "s"],
     ("--schema s", "SQLite has no schemas")),
    ("variant-nothing-to-do", ["variant", "{base}", "--out", "{tmp}/twin"], ("--variant NAME and/or --do",)),
    ("variant-do-twice", ["variant", "{base}", "--out", "{tmp}/twin", "--do", "region=US", "--do", "region=EU"],
     ("--do region", "given twice")),
]


@pytest.mark.parametrize("args, expected", [pytest.param(a, e, id=n) for n, a, e in COMMAND_CASES])
def test_commands_refuse_bad_options(tmp_path, base, args, expected):
    (tmp_path / "file").write_text("not a directory")
    (tmp_path / "dir.csv").mkdir()
    fill = lambda text: text.replace("{tmp}", str(tmp_path)).replace("{base}", str(base))  # noqa: E731
    # Compiling the model (effects' treatment and outcome) prints nothing: every case is one line.
    check_fails_cleanly([fill(a) for a in args], tuple(map(fill, expected)), [tmp_path, base], early=True)


@pytest.mark.parametrize("url", ["postgresql://u:hunter2@127.0.0.1:1/db",
                                 "postgresql://u@127.0.0.1:1/db?password=hunter2",
                                 "postgresql://u@127.0.0.1:1/db?sslmode=disable&PASSWORD=hunter2",
                                 "postgresql://u:hunter2/x@127.0.0.1:1/db", "postgresql://u:x?hunter2@127.0.0.1:1/db",
                                 "postgresql://u:x#hunter2@127.0.0.1:1/db", "postgresql://u:p@hunter2@127.0.0.1:1/db"])
def test_a_password_is_never_printed(tmp_path, base, url):
    """However a URL carries it, an unreachable database's error shows the password as ***."""
    lines = check_fails_cleanly(["load", str(base), "--db", url], ("cannot connect",), [tmp_path, base], early=False)
    assert "hunter2" not in lines and "***" in lines


# --- corrupt, missing and truncated datasets, for every command that reads one ----------------------------

def _edit_manifest(change: Callable[[dict], None]) -> Callable[[Path], None]:
    def edit(ds: Path) -> None:
        manifest = json.loads((ds / "manifest.json").read_text())
        change(manifest)
        (ds / "manifest.json").write_text(json.dumps(manifest))
    return edit


PART = "system_runs/part-000000.parquet"


def _truncate(ds: Path) -> None:
    path = ds / PART
    path.write_bytes(path.read_bytes()[: path.stat().st_size // 2])


def _flip_a_byte(ds: Path) -> None:
    with open(ds / PART, "r+b") as f:
        f.seek(100)
        byte = f.read(1)
        f.seek(100)
        f.write(bytes([byte[0] ^ 0xFF]))


def _a_file(ds: Path) -> None:
    shutil.rmtree(ds)
    ds.write_text("not a dataset")


# name -> (what to do to a copy of the dataset, words the error must hold; {ds} is the dataset)
MANIFEST_DAMAGE = {
    "no-directory": (shutil.rmtree, ("{ds}: not a causalsynth dataset (no such directory)",)),
    "a-file": (_a_file, ("{ds}: not a causalsynth dataset (not a directory)",)),
    "no-manifest": (lambda ds: (ds / "manifest.json").unlink(),
                    ("{ds}: not a causalsynth dataset (no manifest.json)",)),
    "manifest-not-json": (lambda ds: (ds / "manifest.json").write_text('{"tables": {,}'),
                          ("{ds}/manifest.json: not valid JSON", "at line 1, column 13")),
    "manifest-empty": (lambda ds: (ds / "manifest.json").write_text(""), ("{ds}/manifest.json: not valid JSON",)),
    "manifest-binary": (lambda ds: (ds / "manifest.json").write_bytes(b"\xff\xfe\x00garbage"),
                        ("{ds}/manifest.json: not valid JSON",)),
    "manifest-a-list": (lambda ds: (ds / "manifest.json").write_text("[1, 2]"),
                        ("{ds}/manifest.json: expected a JSON object", "got a list")),
    "manifest-no-tables": (_edit_manifest(lambda m: m.pop("tables")), ("{ds}/manifest.json: missing key tables",)),
    "manifest-no-config": (_edit_manifest(lambda m: m.pop("config")), ("{ds}/manifest.json: missing key config",)),
    "manifest-seed-a-string": (_edit_manifest(lambda m: m.update(seed="one")),
                               ("{ds}/manifest.json: seed: expected an integer, got a string",)),
    "manifest-tables-a-list": (_edit_manifest(lambda m: m.update(tables=[])),
                               ("{ds}/manifest.json: tables: expected an object",)),
    "manifest-table-no-parts": (_edit_manifest(lambda m: m["tables"]["system_runs"].pop("parts")),
                                ("{ds}/manifest.json: tables.system_runs: missing key parts",)),
    "manifest-part-no-sha256": (_edit_manifest(lambda m: m["tables"]["system_runs"]["parts"][0].pop("sha256")),
                                ("{ds}/manifest.json: tables.system_runs.parts[0]: missing key sha256",)),
    "manifest-version-1-no-file": (_edit_manifest(lambda m: m.update(format_version=1)),
                                   ("{ds}/manifest.json: tables.pull_requests: missing keys file, sha256",)),
    "manifest-table-bad-parent": (
        _edit_manifest(lambda m: m["tables"]["system_runs"].update(parent={"table": "nope", "key": "pr_id"})),
        ("{ds}/manifest.json: tables.system_runs.parent: no table 'nope'",)),
    "manifest-intervention-keys": (_edit_manifest(lambda m: m["intervention"].update(extra=1)),
                                   ("{ds}/manifest.json: intervention: unknown key extra",)),
    "manifest-newer-format": (_edit_manifest(lambda m: m.update(format_version=99)),
                              ("{ds}/manifest.json: format_version 99", "newer causalsynth")),
    "manifest-bad-config": (_edit_manifest(lambda m: m["config"]["regression"].update(rate=3)),
                            ("{ds}", "regression.rate: must be a probability in [0, 1], got 3")),
    "manifest-nested-deeply": (lambda ds: (ds / "manifest.json").write_text("[" * 200_000 + "]" * 200_000),
                               ("{ds}/manifest.json: not a manifest: nested too deeply",)),
    "manifest-seed-negative": (_edit_manifest(lambda m: m.update(seed=-5)),
                               ("{ds}/manifest.json: seed: expected an integer in [0, 4294967295], got -5",)),
    "manifest-n-prs-negative": (_edit_manifest(lambda m: m.update(n_prs=-1)),
                                ("{ds}/manifest.json: n_prs: expected a positive integer, got -1",)),
    "manifest-intercept-a-string": (
        _edit_manifest(lambda m: m["calibration"]["intercepts"].update(regression="x")),
        ("{ds}/manifest.json: calibration.intercepts.regression: expected a number, got a string",)),
    "manifest-intercept-missing": (_edit_manifest(lambda m: m["calibration"]["intercepts"].pop("regression")),
                                   ("{ds}/manifest.json: calibration.intercepts: expected one per calibrated rate",)),
    "manifest-headlines-a-string": (_edit_manifest(lambda m: m.update(headlines="x")),
                                    ("{ds}/manifest.json: headlines: expected a list of objects",)),
    "manifest-key-not-a-column": (_edit_manifest(lambda m: m["tables"]["pull_requests"].update(key="nosuchcol")),
                                  ("{ds}/manifest.json: tables.pull_requests.key: 'nosuchcol' is none of",)),
}
TABLE_DAMAGE = {
    "table-missing": (lambda ds: shutil.rmtree(ds / "system_runs"),
                      ("{ds}/" + PART + ": missing (the manifest lists it as part of table system_runs)",)),
    "part-truncated": (_truncate, ("{ds}/" + PART + ": not readable Parquet",)),
    "part-not-parquet": (lambda ds: (ds / PART).write_text("hello"), ("{ds}/" + PART + ": not readable Parquet",)),
    "part-a-directory": (lambda ds: ((ds / PART).unlink(), (ds / PART).mkdir()), ("{ds}/" + PART + ": not a file",)),
    "part-cut": (lambda ds: pq.write_table(pq.read_table(ds / PART).slice(0, 3), ds / PART),
                 ("{ds}/" + PART + ": changed since it was written: it holds 3 rows where the manifest lists",)),
    "part-of-another-table": (lambda ds: shutil.copy(ds / "pull_requests" / Path(PART).name, ds / PART),
                              ("{ds}/" + PART + ": changed since it was written: it holds",)),
}
READERS = {
    "validate": ["validate", "{ds}", "--json", "{tmp}/checks.json"],
    "export": ["export", "{ds}"],  # into {ds}/ml: the dataset must stay as it was
    "export-out": ["export", "{ds}", "--format", "csv", "--out", "{tmp}/ml"],
    "evaluate": ["evaluate", "{ds}", "--tasks", "pr_impact"],  # would write {ds}/evaluation.json
    "evaluate-test": ["evaluate", "{base}", "--test", "{ds}", "--tasks", "pr_impact"],
    "load": ["load", "{ds}", "--db", "sqlite:///{tmp}/x.db"],
    "variant": ["variant", "{ds}", "--variant", "no_regressions", "--out", "{tmp}/twin"],
    "report": ["report", "{ds}", "--out", "{tmp}/report.html"],
    "report-compare": ["report", "{base}", "--compare", "{ds}", "--out", "{tmp}/report.html"],
}
# validate reports an unreadable table as failed checks (exit 1, tests/test_quality.py); variant reads
# only the manifest of its factual dataset.
MANIFEST_ONLY = ("validate", "variant")


def _dataset_cases():
    for damage, (make, expected) in {**MANIFEST_DAMAGE, **TABLE_DAMAGE}.items():
        for reader, args in READERS.items():
            if damage in TABLE_DAMAGE and reader in MANIFEST_ONLY:
                continue
            yield pytest.param(make, args, expected, True, id=f"{reader}-{damage}")
    # Found by hashing the files against the manifest, a stage load shows as it goes.
    yield pytest.param(_flip_a_byte, READERS["load"], ("{ds}/" + PART + ": changed since it was written",),
                       False, id="load-table-changed")


# What reads the world a dataset was sampled in (its recorded intervention) checks it against the model;
# export and load read the tables alone.
INTERVENTION_READERS = ("validate", "variant", "report")


@pytest.mark.parametrize("reader", INTERVENTION_READERS)
def test_a_recorded_intervention_on_no_site_names_the_manifest(tmp_path, base, reader):
    ds = tmp_path / "ds"
    shutil.copytree(base, ds)
    _edit_manifest(lambda m: m["intervention"]["do"].update(nosuch=1))(ds)
    args = [a.replace("{ds}", str(ds)).replace("{tmp}", str(tmp_path)) for a in READERS[reader]]
    check_fails_cleanly(args, (f"{ds}/manifest.json: intervention.do: nosuch: no such site",), [tmp_path, base],
                        early=False)


@pytest.mark.parametrize("damage, args, expected, early", list(_dataset_cases()))
def test_unreadable_datasets_fail_cleanly(tmp_path, base, damage, args, expected, early):
    ds = tmp_path / "ds"
    shutil.copytree(base, ds)
    damage(ds)
    fill = lambda text: (text.replace("{ds}", str(ds)).replace("{tmp}", str(tmp_path))  # noqa: E731
                         .replace("{base}", str(base)))
    check_fails_cleanly([fill(a) for a in args], tuple(map(fill, expected)), [tmp_path, base], early)
