"""``causalsynth load``: a dataset into SQLite or PostgreSQL, in one transaction."""

from __future__ import annotations

import time
from typing import Annotated, Optional

import typer
from rich.table import Table

from causalsynth.cli.console import out
from causalsynth.cli.options import Dataset, Model
from causalsynth.cli.progress import RichProgress, with_progress


def load(
    dataset_dir: Dataset,
    db: Annotated[str, typer.Option("--db", help="SQLAlchemy URL: sqlite:///file.db, sqlite:// (in memory), "
                                                 "postgresql+psycopg://user@host/db.")],
    db_schema: Annotated[Optional[str], typer.Option("--schema", help="PostgreSQL schema (created if "
                                                                      "missing).")] = None,
    if_exists: Annotated[str, typer.Option("--if-exists", help="fail, replace or append.")] = "fail",
    model: Model = None,
) -> None:
    """Load a dataset into SQLite or PostgreSQL in one transaction: all of it, or nothing."""
    from causalsynth.jobs.load import load_dataset
    from causalsynth.sinks.sql import masked

    started = time.perf_counter()
    rows = with_progress(
        lambda progress: load_dataset(directory=dataset_dir, db=db, schema=db_schema, if_exists=if_exists,
                                      progress=progress),
        RichProgress("loading parts", "rows"),
        f"the load was rolled back; {masked(db)} is as it was")
    seconds = time.perf_counter() - started
    table = Table(title=f"{masked(db)}  ({seconds:.1f} s)", title_justify="left")
    table.add_column("table")
    table.add_column("rows", justify="right")
    for name, n in rows.items():
        table.add_row(name, f"{n:,}")
    table.add_row("[bold]total", f"[bold]{sum(rows.values()):,}  ({sum(rows.values()) / seconds:,.0f} rows/s)")
    out.print(table)
