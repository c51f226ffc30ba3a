"""The ``causalsynth`` command line: parse, validate, call the library, print."""

from __future__ import annotations

import json
import logging
import os
import time
from pathlib import Path
from typing import Annotated, Optional

import typer
from rich.console import Console
from rich.progress import (
    BarColumn,
    MofNCompleteColumn,
    TextColumn,
    TimeElapsedColumn,
    TimeRemainingColumn,
)
from rich.progress import (
    Progress as Bar,
)
from rich.table import Table

from causalsynth.errors import CausalsynthError, ConfigError

app = typer.Typer(
    name="causalsynth",
    help="Synthetic software-delivery and e-commerce telemetry from a structural causal model.",
    no_args_is_help=True,
    add_completion=False,
    pretty_exceptions_enable=False,
)
err = Console(stderr=True)
DATASET_HELP = "A dataset written by `causalsynth sample`: a directory or an fsspec URL (s3://bucket/prefix)."
out = Console()


def run() -> None:
    """The ``causalsynth`` command: the app, then an immediate exit.

    Unloading XLA's compiled executables at interpreter shutdown takes about
    half a second after a sampling job, for nothing: by the time a command
    returns, every file it wrote is complete and closed, and its output is
    flushed here. Library use (and ``CliRunner``) goes through ``app``.
    """
    import sys

    try:
        app()
        code = 0
    except SystemExit as exc:
        code = exc.code if isinstance(exc.code, int) else (0 if exc.code is None else 1)
        if isinstance(exc.code, str):
            print(exc.code, file=sys.stderr)
    logging.shutdown()
    for stream in (sys.stdout, sys.stderr):
        try:
            stream.flush()
        except OSError:  # a closed pipe (`causalsynth validate DIR | head`): nothing left to say
            pass
    os._exit(code)


def _version(value: bool) -> None:
    if value:
        from causalsynth.engine.cache import package_version

        out.print(f"causalsynth {package_version()}")
        raise typer.Exit()


@app.callback()
def main(
    version: Annotated[bool, typer.Option("--version", callback=_version, is_eager=True,
                                          help="Print the version and exit.")] = False,
) -> None:
    """Synthetic software-delivery and e-commerce telemetry from a structural causal model."""
    logger = logging.getLogger("causalsynth")
    if not any(isinstance(h, _NoteHandler) for h in logger.handlers):
        logger.addHandler(_NoteHandler())
        logger.setLevel(logging.INFO)


class _NoteHandler(logging.Handler):
    """What the library says in passing (a dead run's leftovers removed), as one ``note:`` line each."""

    def emit(self, record) -> None:
        from rich.markup import escape

        err.print(f"[yellow]note:[/yellow] {escape(record.getMessage())}", highlight=False, soft_wrap=True)


def _enable_compilation_cache() -> None:
    """Reuse compiled samplers, traced structures, solved intercepts and the graph across processes."""
    from causalsynth.engine import cache

    cache.enable()


class _RichProgress:
    """Draws a dataset's progress: a spinner per stage, then a bar over blocks."""

    def __init__(self, description: str = "sampling blocks", unit: str = "rows") -> None:
        self.bar = Bar(TextColumn("[bold]{task.description}"), BarColumn(), MofNCompleteColumn(),
                       TextColumn("{task.fields[rate]}"), TimeElapsedColumn(), TimeRemainingColumn(),
                       console=err, transient=False)
        self.description, self.unit = description, unit
        self.task = None
        self.rows = 0
        self.started = 0.0

    def on_stage(self, stage: str) -> None:
        if self.task is None:
            err.print(f"[dim]{stage}…[/dim]")

    def on_start(self, n_blocks: int) -> None:
        self.started = time.perf_counter()
        self.bar.start()
        self.task = self.bar.add_task(self.description, total=n_blocks, rate="")

    def on_block(self, rows: int) -> None:
        self.rows += rows
        rate = self.rows / max(time.perf_counter() - self.started, 1e-9)
        self.bar.update(self.task, advance=1, rate=f"{self.rows:,} {self.unit}  {rate:,.0f} {self.unit}/s")

    def stop(self) -> None:
        if self.task is not None:
            self.bar.stop()
            self.task = None


def _fail(exc: CausalsynthError) -> typer.Exit:
    """Print ``error: <message>`` on one line (the message as written, never markup) and exit."""
    from rich.markup import escape

    from causalsynth.errors import one_line

    err.print(f"[red]error:[/red] {escape(one_line(exc))}", highlight=False, soft_wrap=True)
    return typer.Exit(exc.exit_code)


def _trust_model(path: Optional[Path]) -> Optional[Path]:
    if path is not None:
        from causalsynth.config import plugins

        try:
            plugins.trust(path)
        except CausalsynthError as exc:
            raise _fail(exc) from None
    return path


# Reading commands: a dataset's manifest names its model, but only a model the user names is imported.
ModelOption = Annotated[Optional[Path], typer.Option(
    "--model", callback=_trust_model, help="The plug-in model (its .py file or package directory) the dataset "
    "was sampled from, where it is not a shipped one: a dataset never imports the code it names; this is "
    "loaded if its source is the one the manifest records.")]


@app.command()
def sample(
    n_prs: Annotated[int, typer.Option("--n-prs", help="Number of pull requests (each brings its runs, "
                                                        "service rows, flows and steps).")],
    out_dir: Annotated[Optional[str], typer.Option("--out", help="Output directory for Parquet, or an fsspec "
                                                                 "URL such as s3://bucket/prefix (written "
                                                                 "atomically).")] = None,
    runs_per_pr: Annotated[Optional[int], typer.Option(help="System runs per PR (config: shape.runs_per_pr).")] = None,
    flows_per_run: Annotated[Optional[int], typer.Option(help="Flows per run (config: shape.flows_per_run).")] = None,
    seed: Annotated[int, typer.Option(help="Root random seed; same seed and config, same bytes.")] = 0,
    config: Annotated[Optional[Path], typer.Option("--config", help="YAML whose values replace the defaults.")] = None,
    set_: Annotated[Optional[list[str]], typer.Option("--set", help="Override one value: dotted.key=value "
                                                                     "(repeatable).")] = None,
    force: Annotated[bool, typer.Option("--force", help="Replace a non-empty --out directory.")] = False,
    do: Annotated[Optional[list[str]], typer.Option("--do", help="Intervene: SITE=VALUE, e.g. "
                                                                 "device_type=MOBILE (repeatable).")] = None,
    variant: Annotated[Optional[str], typer.Option("--variant", help="A shipped variant name or a variant "
                                                                      "YAML file.")] = None,
    db: Annotated[Optional[str], typer.Option("--db", help="Also load into this database (SQLAlchemy URL: "
                                                          "sqlite:///file.db, postgresql+psycopg://...).")] = None,
    db_schema: Annotated[Optional[str], typer.Option("--schema", help="PostgreSQL schema for --db.")] = None,
    if_exists: Annotated[str, typer.Option("--if-exists", help="If --db already has the tables: "
                                                               "fail, replace or append.")] = "fail",
    full_validation: Annotated[bool, typer.Option("--validate", help="Print the full validation table "
                                                                     "(a one-line verdict is always shown).")] = False,
    latents: Annotated[bool, typer.Option("--latents", help="Also write the model's hidden causes as columns "
                                                            "(config: sampling.latents).")] = False,
    series: Annotated[bool, typer.Option("--series", help="Also sample per-service metric series and each "
                                                          "run's incident (config: telemetry.enabled).")] = False,
    workers: Annotated[Optional[int], typer.Option("--workers", help="Sample on a local Dask cluster of this "
                                                                     "many worker processes.")] = None,
    scheduler: Annotated[Optional[str], typer.Option("--scheduler", help="Sample on a running Dask cluster: "
                                                                         "its scheduler's address "
                                                                         "(tcp://host:8786).")] = None,
) -> None:
    """Sample a dataset: five linked tables as Parquet (--out) and/or into a database (--db)."""
    cluster = _start_cluster(workers, scheduler, out_dir, db)
    from causalsynth.config.limits import check_size
    from causalsynth.config.loading import load_config
    from causalsynth.jobs.sample import sample_dataset

    overrides = list(set_ or []) + ["sampling.latents=true"] * latents + ["telemetry.enabled=true"] * series
    if runs_per_pr is not None:
        overrides.append(f"shape.runs_per_pr={runs_per_pr}")
    if flows_per_run is not None:
        overrides.append(f"shape.flows_per_run={flows_per_run}")

    def job(progress):
        check_size(n_prs, seed)
        if db is not None:
            from causalsynth.sinks.sql import check_options  # SQLAlchemy only when a database is asked for

            check_options(db, db_schema, if_exists)
        intervention = _intervention(variant, do)
        return sample_dataset(config=load_config(config, overrides), n_prs=n_prs, seed=seed, out=out_dir,
                              force=force, db=db, db_schema=db_schema, if_exists=if_exists,
                              intervention=intervention, progress=progress, workers=workers, scheduler=scheduler,
                              cluster=cluster)

    manifest = _run_dataset_job(job, _destination(out_dir, db), cluster)
    if out_dir is not None and full_validation:
        from causalsynth.validate.quality import validate_dataset

        _print_checks(validate_dataset(out_dir), f"validation of {out_dir}")
    else:
        from causalsynth.validate.marginals import counted_checks

        checks = counted_checks(manifest)
        out.print(_verdict(checks, "marginal checks on sampling's own counts")
                  + (f"  (every check: causalsynth validate {out_dir})" if out_dir is not None else ""),
                  soft_wrap=True)


@app.command("variant")
def variant_cmd(
    factual_dir: Annotated[str, typer.Argument(help=DATASET_HELP)],
    variant: Annotated[Optional[str], typer.Option("--variant", help="A shipped variant name "
                                                                      "or a variant YAML file.")] = None,
    out_dir: Annotated[str, typer.Option("--out", help="Output directory (or fsspec URL) for the twin.")] = ...,
    do: Annotated[Optional[list[str]], typer.Option("--do", help="Intervene: SITE=VALUE (repeatable).")] = None,
    force: Annotated[bool, typer.Option("--force", help="Replace a non-empty --out directory.")] = False,
    workers: Annotated[Optional[int], typer.Option("--workers", help="Sample on a local Dask cluster of this "
                                                                     "many worker processes.")] = None,
    scheduler: Annotated[Optional[str], typer.Option("--scheduler", help="Sample on a running Dask cluster "
                                                                         "(its scheduler's address).")] = None,
    model: ModelOption = None,
) -> None:
    """Write the twin of a factual dataset under an intervention: same seed, size, keys and noise."""
    cluster = _start_cluster(workers, scheduler, out_dir, None)
    from causalsynth.jobs.sample import sample_twin

    def job(progress):
        intervention = _intervention(variant, do)
        if intervention.is_factual:
            raise ConfigError("variant: give --variant NAME and/or --do SITE=VALUE")
        return sample_twin(factual_dir=factual_dir, intervention=intervention, out=out_dir, force=force,
                           progress=progress, workers=workers, scheduler=scheduler, cluster=cluster)

    _run_dataset_job(job, _destination(out_dir, None), cluster)


@app.command()
def load(
    dataset_dir: Annotated[str, typer.Argument(help=DATASET_HELP)],
    db: Annotated[str, typer.Option("--db", help="SQLAlchemy URL: sqlite:///file.db, sqlite:// (in memory), "
                                                 "postgresql+psycopg://user@host/db.")],
    db_schema: Annotated[Optional[str], typer.Option("--schema", help="PostgreSQL schema (created if "
                                                                      "missing).")] = None,
    if_exists: Annotated[str, typer.Option("--if-exists", help="fail, replace or append.")] = "fail",
    model: ModelOption = None,
) -> None:
    """Load a dataset into SQLite or PostgreSQL in one transaction: all of it, or nothing."""
    from causalsynth.jobs.load import load_dataset
    from causalsynth.sinks.sql import masked

    started = time.perf_counter()
    rows = _with_progress(
        lambda progress: load_dataset(directory=dataset_dir, db=db, schema=db_schema, if_exists=if_exists,
                                      progress=progress),
        _RichProgress("loading parts", "rows"),
        f"the load was rolled back; {masked(db)} is as it was")
    seconds = time.perf_counter() - started
    table = Table(title=f"{masked(db)}  ({seconds:.1f} s)", title_justify="left")
    table.add_column("table")
    table.add_column("rows", justify="right")
    for name, n in rows.items():
        table.add_row(name, f"{n:,}")
    table.add_row("[bold]total", f"[bold]{sum(rows.values()):,}  ({sum(rows.values()) / seconds:,.0f} rows/s)")
    out.print(table)


def _destination(out_dir: Path | None, db: str | None) -> str:
    where = [] if out_dir is None else [str(out_dir)]
    if db is not None:
        from causalsynth.sinks.sql import masked  # SQLAlchemy only when a database is asked for

        where.append(masked(db))
    return " and ".join(where) or "-"


@app.command()
def graph(
    fmt: Annotated[str, typer.Option("--format", help="json, dot, svg or png (svg and png are laid out by "
                                                       "Graphviz).")] = "json",
    full: Annotated[bool, typer.Option("--full", help="Every site of the model, noise and scaffolding "
                                                      "included, instead of the story's columns by table.")] = False,
    out_file: Annotated[Optional[Path], typer.Option("--out", help="File to write (default: standard "
                                                                   "output; required for png).")] = None,
    config: Annotated[Optional[Path], typer.Option("--config", help="YAML whose values replace the defaults.")] = None,
    set_: Annotated[Optional[list[str]], typer.Option("--set", help="Override one value (repeatable).")] = None,
    adjust: Annotated[Optional[tuple[str, str]], typer.Option(
        "--adjust", metavar="TREATMENT OUTCOME",
        help="Print a back-door adjustment set of observed columns for the effect of a sample site on "
             "TABLE.COLUMN, or why none exists.")] = None,
    latents: Annotated[bool, typer.Option("--latents", help="With --adjust: count the model's hidden causes "
                                                            "as observed (a dataset sampled with --latents).")] = False,
) -> None:
    """The model's causal graph, derived from the model program; or an adjustment set.

    By default the story's view: the columns the model's checks and report name, in their
    tables, an arrow meaning "causes, directly or through sites not shown". --full: every site.
    """
    from causalsynth.causal.graph import model_graph, story_sites
    from causalsynth.config.loading import load_config
    from causalsynth.dataset.staging import check_output_file
    from causalsynth.engine.program import Program

    try:
        if adjust is not None:
            raise typer.Exit(_print_adjustment(load_config(config, list(set_ or [])), *adjust, latents))
        if fmt not in ("json", "dot", "svg", "png"):
            raise ConfigError(f"--format {fmt}: allowed formats are json, dot, svg, png")
        if fmt == "png" and out_file is None:
            raise ConfigError("--format png: give --out FILE.png (PNG is not written to a terminal)")
        if out_file is not None:
            check_output_file(out_file)
        program = Program(load_config(config, list(set_ or [])))
        graph = model_graph(program)
        data = (graph.render(fmt) if full
                else graph.stage_view(story_sites(program)).render(fmt, labels="column"))
        if out_file is None:
            typer.echo(data.decode(), nl=False)
        else:
            _write_file(out_file, data)
            err.print(f"wrote {out_file}")
    except CausalsynthError as exc:
        raise _fail(exc) from None


def _print_adjustment(config, treatment: str, outcome: str, latents: bool) -> int:
    """Print the back-door set (one "table.column" per line) or why there is none; the exit code."""
    from causalsynth.causal.adjustment import backdoor_set
    from causalsynth.causal.graph import model_graph
    from causalsynth.engine.program import Program

    # Hidden causes are columns of the program only when latents are written.
    program = Program(config.with_overrides(["sampling.latents=true"]) if latents else config)
    found = backdoor_set(model_graph(program), program, treatment, outcome, latents=latents)
    if found.columns is None:
        err.print(f"[yellow]no adjustment set:[/yellow] {found.reason}", highlight=False, soft_wrap=True)
        return 1
    err.print(f"back-door adjustment set for the effect of {treatment} on {outcome} "
              f"({len(found.columns)} observed column{'s' * (len(found.columns) != 1)}"
              + ("; no causal path, the effect is 0 by the graph" if not found.is_effect else "") + "):",
              highlight=False, soft_wrap=True)
    if found.columns:
        typer.echo("\n".join(found.columns))
    else:
        err.print("(the empty set: compare the groups as they are)")
    return 0


@app.command()
def effects(
    treatment: Annotated[str, typer.Option(help="Sample site to intervene on, e.g. has_performance_regression.")],
    levels: Annotated[str, typer.Option(help="Two values A,B: the effect is outcome(B) - outcome(A).")],
    outcome: Annotated[str, typer.Option(help="TABLE.COLUMN, e.g. ecommerce_flows.conversion_probability.")],
    out_file: Annotated[Path, typer.Option("--out", help="Per-unit outcomes and effects (.parquet or .csv).")],
    n_prs: Annotated[int, typer.Option("--n-prs", help="Number of pull requests.")] = 5000,
    seed: Annotated[int, typer.Option(help="Root random seed.")] = 0,
    config: Annotated[Optional[Path], typer.Option("--config", help="YAML whose values replace the defaults.")] = None,
    set_: Annotated[Optional[list[str]], typer.Option("--set", help="Override one value (repeatable).")] = None,
) -> None:
    """Ground-truth effect of a treatment on an outcome, unit by unit, from the same random keys."""
    from causalsynth.causal.effects import check_effect_out, estimate_effect, write_effect
    from causalsynth.config.loading import load_config

    try:
        check_effect_out(out_file)
        _enable_compilation_cache()
        effect = estimate_effect(config=load_config(config, list(set_ or [])), treatment=treatment,
                                 levels=tuple(v.strip() for v in levels.split(",")), outcome=outcome,
                                 n_prs=n_prs, seed=seed)
        write_effect(effect, out_file)
    except CausalsynthError as exc:
        raise _fail(exc) from None
    a, b = effect.levels
    out.print(f"average effect on {effect.outcome} of do({effect.treatment}={b}) vs "
              f"do({effect.treatment}={a}): {effect.average:+.6g}  "
              f"95% CI [{effect.ci_low:+.6g}, {effect.ci_high:+.6g}]  "
              f"({effect.n_units:,} units in {effect.n_prs:,} PRs; clustered by PR)", soft_wrap=True)
    out.print(f"per-unit outcomes and effects: {out_file}", soft_wrap=True)


@app.command()
def validate(
    dataset_dir: Annotated[str, typer.Argument(help=DATASET_HELP)],
    json_out: Annotated[Optional[Path], typer.Option("--json", help="Also write the results as JSON.")] = None,
    resample: Annotated[int, typer.Option("--resample", help="Blocks to sample again and compare byte for byte "
                                                             "with the stored parts (the first, the last, then "
                                                             "others at random); 0 for a dataset from another "
                                                             "engine.")] = 3,
    model: ModelOption = None,
) -> None:
    """Check a dataset against its manifest and config. Exit 0: all pass; 1: a check fails; 2: unreadable."""
    from causalsynth.dataset.staging import check_output_file
    from causalsynth.validate.quality import as_json, validate_dataset

    try:
        if json_out is not None:
            check_output_file(json_out, "--json")
        if resample < 0:
            raise ConfigError(f"--resample: a number of blocks, 0 or more, got {resample}")
        _enable_compilation_cache()  # re-sampling runs the compiled block sampler
        checks = validate_dataset(dataset_dir, resample=resample)
        if json_out is not None:
            _write_file(json_out, (json.dumps(as_json(checks), indent=2) + "\n").encode())
    except CausalsynthError as exc:
        raise _fail(exc) from None
    _print_checks(checks, f"validation of {dataset_dir}")
    raise typer.Exit(0 if all(c.passed for c in checks) else 1)


@app.command()
def report(
    dataset_dir: Annotated[str, typer.Argument(help=DATASET_HELP)],
    out_file: Annotated[Path, typer.Option("--out", help="The HTML file to write.")],
    compare: Annotated[Optional[str], typer.Option("--compare", help="Another dataset (e.g. a twin), "
                                                                     "drawn side by side.")] = None,
    model: ModelOption = None,
) -> None:
    """One self-contained HTML report: validation, marginals, distributions, funnel, graphs."""
    from causalsynth.causal.graph import GRAPHVIZ_HELP, graphviz_program
    from causalsynth.dataset.staging import check_output_file
    from causalsynth.report.html import write_report

    try:
        check_output_file(out_file)
        _enable_compilation_cache()  # the report validates, and so re-samples, each dataset
        if graphviz_program() is None:
            err.print(f"[yellow]warning:[/yellow] {GRAPHVIZ_HELP}; the report leaves its graphs out",
                      highlight=False, soft_wrap=True)
        path = write_report(dataset_dir, out_file, compare)
    except CausalsynthError as exc:
        raise _fail(exc) from None
    out.print(f"wrote {path} ({path.stat().st_size / 1e6:.1f} MB)")


def _print_checks(checks, title: str) -> None:
    table = Table(title=title, title_justify="left")
    for col in ("check", "expected", "observed", "verdict"):
        table.add_column(col, overflow="fold")
    for c in checks:
        colour = {"pass": "green", "FAIL": "red", "n/a": "dim"}[c.verdict]
        table.add_row(c.check, c.expected, c.observed, f"[{colour}]{c.verdict}[/{colour}]")
    (out if out.is_terminal else Console(width=160)).print(table)
    out.print(_verdict(checks))


def _verdict(checks, what: str = "checks") -> str:
    failed = [c for c in checks if not c.passed]
    if not failed:
        return f"[green]valid[/green]: all {len(checks)} {what} pass"
    return (f"[red]invalid[/red]: {len(failed)} of {len(checks)} {what} fail: "
            + "; ".join(c.check for c in failed[:5]) + (" …" if len(failed) > 5 else ""))


@app.command()
def export(
    dataset_dir: Annotated[str, typer.Argument(help=DATASET_HELP)],
    tasks: Annotated[Optional[str], typer.Option("--tasks", help="Comma-separated tasks (default: all).")] = None,
    fmt: Annotated[str, typer.Option("--format", help="Comma-separated: parquet, csv, jsonl, json; or rcaeval "
                                                      "alone (incident cases in RCAEval's RE1 layout, "
                                                      "default --out DATASET_DIR/rcaeval).")] = "parquet",
    split_by: Annotated[str, typer.Option("--split-by", help="pr (hashed per PR) or time (by merge time).")] = "pr",
    split_seed: Annotated[int, typer.Option("--split-seed", help="Seed of the per-PR split.")] = 0,
    out_dir: Annotated[Optional[str], typer.Option("--out", help="Output directory (default: "
                                                                  "DATASET_DIR/ml).")] = None,
    force: Annotated[bool, typer.Option("--force", help="Replace an existing output directory.")] = False,
    model: ModelOption = None,
) -> None:
    """Write ML task datasets (features, labels, split) and ml/schema.json, the data dictionary."""
    from causalsynth.tasks.ml import export as export_tasks

    formats = _csv(fmt) or []
    if "rcaeval" in formats:
        raise typer.Exit(_export_rcaeval(dataset_dir, formats, tasks, out_dir, force))
    try:
        written = export_tasks(dataset_dir, tasks=_csv(tasks), formats=_csv(fmt), split_by=split_by,
                               seed=split_seed, out=out_dir, force=force,
                               on_file=lambda path: err.print(f"[dim]wrote {path.name}[/dim]"))
    except CausalsynthError as exc:
        raise _fail(exc) from None
    out.print(f"{len(written)} task files and schema.json in {out_dir or Path(dataset_dir) / 'ml'}")


def _export_rcaeval(dataset_dir: str, formats: list[str], tasks: str | None, out_dir: str | None,
                    force: bool) -> int:
    from causalsynth.tasks.rcaeval import write_rcaeval

    try:
        if formats != ["rcaeval"] or tasks is not None:
            raise ConfigError("--format rcaeval: writes the incident cases alone; give it without other formats "
                              "or --tasks")
        n = 0

        def counted(_):
            nonlocal n
            n += 1

        path = write_rcaeval(dataset_dir, out_dir, force=force, on_case=counted)
    except CausalsynthError as exc:
        raise _fail(exc) from None
    out.print(f"{n:,} RCAEval cases and cases.json in {path}")
    return 0


@app.command()
def evaluate(
    dataset_dir: Annotated[str, typer.Argument(help="Dataset to train on (its train split): a directory or "
                                                    "an fsspec URL.")],
    test_dir: Annotated[Optional[str], typer.Option("--test", help="Dataset to test on (its test split); "
                                                                   "default: DATASET_DIR.")] = None,
    tasks: Annotated[Optional[str], typer.Option("--tasks", help="Comma-separated tasks (default: all).")] = None,
    model: ModelOption = None,
) -> None:
    """Baselines per task against the seed's targets, the Bayes ceiling and a constant; writes evaluation.json."""
    from causalsynth.tasks.evaluation import evaluate as run_evaluation
    from causalsynth.tasks.evaluation import verdict, write_evaluation

    try:
        results = run_evaluation(dataset_dir, test_dir=test_dir, tasks=_csv(tasks),
                                 on_task=lambda name: err.print(f"[dim]training {name}…[/dim]"))
        path = write_evaluation(results, dataset_dir)
    except CausalsynthError as exc:
        raise _fail(exc) from None
    table = Table(title=f"trained on {dataset_dir}, tested on {test_dir or dataset_dir}", title_justify="left")
    for col, justify in (("task", "left"), ("label", "left"), ("metric", "left"), ("baseline", "right"),
                         ("target", "right"), ("bayes", "right"), ("majority", "right"), ("", "left")):
        table.add_column(col, justify=justify, no_wrap=True)
    # A target that a constant meets too is met, but says nothing about the baseline: yellow, not green.
    colours = {"meets": "green", "meets (so does a constant)": "yellow", "misses": "red"}
    for task, metrics in results.items():
        for metric, m in metrics.items():
            if metric.startswith("_"):
                continue
            words = verdict(m)
            label, _, score = metric.rpartition(".")
            table.add_row(task, label, score, f"{m['value']:.4f}",
                          "" if m["target"] is None else f"> {m['target']:.2f}",
                          "" if m["bayes"] is None else f"{m['bayes']:.4f}", f"{m['majority']:.4f}",
                          f"[{colours[words]}]{words}[/{colours[words]}]" if words else "")
    # Whole rows also when piped (rich assumes 80 columns without a terminal).
    (out if out.is_terminal else Console(width=160)).print(table)
    out.print(f"written: {path}")


def _csv(value: str | None) -> list[str] | None:
    return None if value is None else [v.strip() for v in value.split(",") if v.strip()]


def _intervention(variant: str | None, do: list[str] | None):
    from causalsynth.engine.interventions import Intervention, load_variant, parse_assignments

    base = load_variant(variant) if variant else Intervention()
    assignments = parse_assignments(do or [], "--do")
    if assignments:
        base = base.merged(Intervention(name="do", do=assignments))
    return base


def _write_file(path: Path, data: bytes) -> None:
    from causalsynth.dataset.staging import atomic_file

    with atomic_file(path) as partial:
        partial.write_bytes(data)


def _with_progress(job, bar: _RichProgress, interrupted: str):
    """Run ``job(progress)`` drawing ``bar``; a clear error or interruption exits non-zero."""
    from causalsynth.engine.world import Progress

    try:
        return job(Progress(bar.on_stage, bar.on_start, bar.on_block))
    except CausalsynthError as exc:
        bar.stop()
        raise _fail(exc) from None
    except KeyboardInterrupt:
        bar.stop()
        err.print(f"[yellow]interrupted:[/yellow] {interrupted}")
        raise typer.Exit(130) from None
    finally:
        bar.stop()


def _run_dataset_job(job, destination: str, cluster=None) -> dict:
    """Run a dataset-writing job with progress, clear errors and a closing summary; close its ``cluster``."""
    started = time.perf_counter()
    _enable_compilation_cache()
    try:
        manifest = _with_progress(job, _RichProgress(), f"nothing was written to {destination}")
    finally:
        if cluster is not None:
            cluster.close()
    _print_summary(manifest, destination, time.perf_counter() - started)
    return manifest


def _start_cluster(workers: int | None, scheduler: str | None, out_dir: str | None, db: str | None):
    """The job's cluster, its start begun now, before this process imports JAX and loads the config,
    so both proceed at once (None: no cluster asked for). Bad options exit here."""
    from causalsynth.jobs.cluster import start_cluster

    try:
        return start_cluster(workers, scheduler, out_dir, db)
    except CausalsynthError as exc:
        raise _fail(exc) from None


def _print_summary(manifest: dict, destination: str, seconds: float) -> None:
    rows = Table(title=f"{destination}  ({seconds:.1f} s)", title_justify="left")
    rows.add_column("table")
    rows.add_column("rows", justify="right")
    for name, table in manifest["tables"].items():
        rows.add_row(name, f"{table['rows']:,}")
    rows.add_row("[bold]total", f"[bold]{sum(t['rows'] for t in manifest['tables'].values()):,}")
    rates = Table(title="headline rates", title_justify="left")
    for col, justify in (("rate", "left"), ("observed", "right"), ("target", "right")):
        rates.add_column(col, justify=justify)
    for h in manifest["headlines"]:
        rates.add_row(h["title"], f"{h['observed']:.2%}", f"{h['target']:.2%}")
    out.print(rows)
    out.print(rates)
    intervention = manifest["intervention"]
    if intervention["do"] or intervention["set"]:
        out.print(f"intervention [bold]{intervention['name']}[/bold]: "
                  + ", ".join([f"do({k}={v})" for k, v in intervention["do"].items()]
                              + [f"{k}={v}" for k, v in intervention["set"].items()]))
