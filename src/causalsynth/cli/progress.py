"""Long jobs on the command line: a progress bar, an interruption that says what it left, a summary."""

from __future__ import annotations

import time

import typer
from rich.progress import BarColumn, MofNCompleteColumn, TextColumn, TimeElapsedColumn, TimeRemainingColumn
from rich.progress import Progress as Bar
from rich.table import Table

from causalsynth.cli.console import err, out


class RichProgress:
    """Draws a job's progress: a spinner per stage, then a bar over blocks."""

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


def with_progress(job, bar: RichProgress, interrupted: str):
    """``job(progress)`` drawing ``bar``, which is gone before any error is printed; Ctrl-C says
    ``interrupted`` and exits 130."""
    from causalsynth.engine.world import Progress

    try:
        return job(Progress(bar.on_stage, bar.on_start, bar.on_block))
    except KeyboardInterrupt:
        bar.stop()
        err.print(f"[yellow]interrupted:[/yellow] {interrupted}")
        raise typer.Exit(130) from None
    finally:
        bar.stop()


def run_dataset_job(job, destination: str, cluster=None) -> dict:
    """Run a dataset-writing job with progress and a closing summary; close its ``cluster``. The
    command has enabled the caches already (``enable_compilation_cache``, before its imports)."""
    started = time.perf_counter()
    try:
        manifest = with_progress(job, RichProgress(), f"nothing was written to {destination}")
    finally:
        if cluster is not None:
            cluster.close()
    _print_summary(manifest, destination, time.perf_counter() - started)
    return manifest


def destination(out_dir: str | None, db: str | None) -> str:
    """Where a job writes, as its messages name it (a database URL masked)."""
    where = [] if out_dir is None else [str(out_dir)]
    if db is not None:
        from causalsynth.sinks.sql import masked  # SQLAlchemy only when a database is asked for

        where.append(masked(db))
    return " and ".join(where) or "-"


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
