"""``causalsynth export``: ML task datasets, or incident cases in RCAEval's layout."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated, Optional

import typer

from causalsynth.cli.console import err, out
from causalsynth.cli.options import Dataset, Model, Tasks, comma_list
from causalsynth.errors import ConfigError


def export(
    dataset_dir: Dataset,
    tasks: Tasks = None,
    fmt: Annotated[str, typer.Option("--format", help="Comma-separated: parquet, csv, jsonl, json; or rcaeval "
                                                      "alone (incident cases in RCAEval's RE1 layout, "
                                                      "default --out DATASET_DIR/rcaeval).")] = "parquet",
    split_by: Annotated[str, typer.Option("--split-by", help="pr (hashed per PR) or time (by merge time).")] = "pr",
    split_seed: Annotated[int, typer.Option("--split-seed", help="Seed of the per-PR split.")] = 0,
    out_dir: Annotated[Optional[str], typer.Option("--out", help="Output directory (default: "
                                                                  "DATASET_DIR/ml).")] = None,
    force: Annotated[bool, typer.Option("--force", help="Replace an existing output directory.")] = False,
    model: Model = None,
) -> None:
    """Write ML task datasets (features, labels, split) and ml/schema.json, the data dictionary."""
    formats = comma_list(fmt) or []
    if "rcaeval" in formats:
        if formats != ["rcaeval"] or tasks is not None:
            raise ConfigError("--format rcaeval: writes the incident cases alone; give it without other formats "
                              "or --tasks")
        _export_rcaeval(dataset_dir, out_dir, force)
        return
    from causalsynth.tasks.ml import export as export_tasks

    written = export_tasks(dataset_dir, tasks=comma_list(tasks), formats=formats, split_by=split_by,
                           seed=split_seed, out=out_dir, force=force,
                           on_file=lambda path: err.print(f"[dim]wrote {path.name}[/dim]"))
    out.print(f"{len(written)} task files and schema.json in {out_dir or Path(dataset_dir) / 'ml'}")


def _export_rcaeval(dataset_dir: str, out_dir: str | None, force: bool) -> None:
    from causalsynth.tasks.rcaeval import write_rcaeval

    n = 0

    def counted(_):
        nonlocal n
        n += 1

    path = write_rcaeval(dataset_dir, out_dir, force=force, on_case=counted)
    out.print(f"{n:,} RCAEval cases and cases.json in {path}")
