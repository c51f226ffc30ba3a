"""``causalsynth graph``: the model's causal graph, or a back-door adjustment set."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated, Optional

import typer

from causalsynth.cli.console import err, write_file
from causalsynth.cli.options import ConfigFile, Overrides
from causalsynth.errors import ConfigError


def graph(
    fmt: Annotated[str, typer.Option("--format", help="json, dot, svg or png (svg and png are laid out by "
                                                       "Graphviz).")] = "json",
    full: Annotated[bool, typer.Option("--full", help="Every site of the model, noise and scaffolding "
                                                      "included, instead of the story's columns by table.")] = False,
    out_file: Annotated[Optional[Path], typer.Option("--out", help="File to write (default: standard "
                                                                   "output; required for png).")] = None,
    config: ConfigFile = None,
    set_: Overrides = None,
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

    if adjust is not None:
        raise typer.Exit(_print_adjustment(load_config(config, list(set_ or [])), *adjust, latents))
    if fmt not in ("json", "dot", "svg", "png"):
        raise ConfigError(f"--format {fmt}: allowed formats are json, dot, svg, png")
    if fmt == "png" and out_file is None:
        raise ConfigError("--format png: give --out FILE.png (PNG is not written to a terminal)")
    if out_file is not None:
        check_output_file(out_file)
    program = Program(load_config(config, list(set_ or [])))
    found = model_graph(program)
    data = found.render(fmt) if full else found.stage_view(story_sites(program)).render(fmt, labels="column")
    if out_file is None:
        typer.echo(data.decode(), nl=False)
    else:
        write_file(out_file, data)
        err.print(f"wrote {out_file}")


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
