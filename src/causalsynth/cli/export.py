"""``causalsynth export``: ML task datasets, or incident cases in RCAEval's, RCABench's or OpenTelemetry's
layouts."""

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
    fmt: Annotated[str, typer.Option("--format", help="Comma-separated: parquet, csv, jsonl, json; or one of "
                                                      "rcaeval (incident cases in RCAEval's RE1 layout), re2 "
                                                      "(RE2's: metrics, logs, traces), rcabench (RCABench "
                                                      "datapacks) or otlp (OpenTelemetry JSON Lines) alone, "
                                                      "default --out DATASET_DIR/FORMAT."
                                     )] = "parquet",
    split_by: Annotated[str, typer.Option("--split-by", help="pr (hashed per PR) or time (by merge time).")] = "pr",
    split_seed: Annotated[int, typer.Option("--split-seed", help="Seed of the per-PR split.")] = 0,
    out_dir: Annotated[Optional[str], typer.Option("--out", help="Output directory (default: "
                                                                  "DATASET_DIR/ml).")] = None,
    force: Annotated[bool, typer.Option("--force", help="Replace an existing output directory.")] = False,
    model: Model = None,
) -> None:
    """Write ML task datasets (features, labels, split) and ml/schema.json, the data dictionary."""
    formats = [f.lower() for f in comma_list(fmt) or []]
    if layouts := [f for f in formats if f in INCIDENT_LAYOUTS]:
        if len(formats) > 1 or tasks is not None:
            raise ConfigError(f"--format {layouts[0]}: writes the incident cases alone; give it without other "
                              f"formats or --tasks")
        _export_incidents(layouts[0], dataset_dir, out_dir, force)
        return
    from causalsynth.tasks.ml import FORMATS
    from causalsynth.tasks.ml import export as export_tasks

    if unknown := [f for f in formats if f not in FORMATS]:
        raise ConfigError(f"--format {unknown[0]}: allowed are {', '.join(FORMATS)} (task datasets, comma-separated) "
                          f"or one of {', '.join(INCIDENT_LAYOUTS)} alone (incident cases)")

    written = export_tasks(dataset_dir, tasks=comma_list(tasks), formats=formats, split_by=split_by,
                           seed=split_seed, out=out_dir, force=force,
                           on_file=lambda path: err.print(f"[dim]wrote {path.name}[/dim]"))
    out.print(f"{len(written)} task files and schema.json in {out_dir or Path(dataset_dir) / 'ml'}")


# Incident layouts: --format name -> (module, writer, what one case is called).
INCIDENT_LAYOUTS = {"rcaeval": ("causalsynth.tasks.rcaeval", "write_rcaeval", "RCAEval cases"),
                    "re2": ("causalsynth.tasks.re2", "write_re2", "RCAEval RE2 cases"),
                    "rcabench": ("causalsynth.tasks.rcabench", "write_rcabench", "RCABench datapacks"),
                    "otlp": ("causalsynth.tasks.otlp", "write_otlp", "runs as OTLP JSON Lines")}


def _export_incidents(layout: str, dataset_dir: str, out_dir: str | None, force: bool) -> None:
    from importlib import import_module

    module, writer, what = INCIDENT_LAYOUTS[layout]
    n = 0

    def counted(_):
        nonlocal n
        n += 1

    path = getattr(import_module(module), writer)(dataset_dir, out_dir, force=force, on_case=counted)
    out.print(f"{n:,} {what} and cases.json in {path}")
