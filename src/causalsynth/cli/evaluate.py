"""``causalsynth evaluate``: baselines per ML task against the seed's targets."""

from __future__ import annotations

from typing import Annotated, Optional

import typer
from rich.table import Table

from causalsynth.cli.console import err, out, wide
from causalsynth.cli.options import Model, Tasks, comma_list


def evaluate(
    dataset_dir: Annotated[str, typer.Argument(help="Dataset to train on (its train split): a directory or "
                                                    "an fsspec URL.")],
    test_dir: Annotated[Optional[str], typer.Option("--test", help="Dataset to test on (its test split); "
                                                                   "default: DATASET_DIR.")] = None,
    tasks: Tasks = None,
    model: Model = None,
) -> None:
    """Baselines per task against the seed's targets, the Bayes ceiling and a constant; writes evaluation.json."""
    from causalsynth.tasks.evaluation import evaluate as run_evaluation
    from causalsynth.tasks.evaluation import verdict, write_evaluation

    results = run_evaluation(dataset_dir, test_dir=test_dir, tasks=comma_list(tasks),
                             on_task=lambda name: err.print(f"[dim]training {name}…[/dim]"))
    path = write_evaluation(results, dataset_dir)
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
    wide().print(table)
    out.print(f"written: {path}")
