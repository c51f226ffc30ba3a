"""``causalsynth report``: one self-contained HTML report of a dataset."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated, Optional

import typer

from causalsynth.cli.console import err, out
from causalsynth.cli.options import Dataset, Model, enable_compilation_cache


def report(
    dataset_dir: Dataset,
    out_file: Annotated[Path, typer.Option("--out", help="The HTML file to write.")],
    compare: Annotated[Optional[str], typer.Option("--compare", help="Another dataset (e.g. a twin), "
                                                                     "drawn side by side.")] = None,
    model: Model = None,
) -> None:
    """One self-contained HTML report: validation, marginals, distributions, funnel, graphs."""
    from causalsynth.causal.graph import GRAPHVIZ_HELP, graphviz_program
    from causalsynth.dataset.staging import check_output_file
    from causalsynth.report.html import write_report

    check_output_file(out_file)
    enable_compilation_cache()  # the report validates, and so re-samples, each dataset
    if graphviz_program() is None:
        err.print(f"[yellow]warning:[/yellow] {GRAPHVIZ_HELP}; the report leaves its graphs out",
                  highlight=False, soft_wrap=True)
    path = write_report(dataset_dir, out_file, compare)
    out.print(f"wrote {path} ({path.stat().st_size / 1e6:.1f} MB)")
