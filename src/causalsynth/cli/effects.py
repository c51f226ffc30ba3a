"""``causalsynth effects``: a treatment's ground-truth effect, unit by unit."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated

import typer

from causalsynth.cli.console import out
from causalsynth.cli.options import ConfigFile, Overrides, enable_compilation_cache


def effects(
    treatment: Annotated[str, typer.Option(help="Sample site to intervene on, e.g. has_performance_regression.")],
    levels: Annotated[str, typer.Option(help="Two values A,B: the effect is outcome(B) - outcome(A).")],
    outcome: Annotated[str, typer.Option(help="TABLE.COLUMN, e.g. ecommerce_flows.conversion_probability.")],
    out_file: Annotated[Path, typer.Option("--out", help="Per-unit outcomes and effects (.parquet or .csv).")],
    n_prs: Annotated[int, typer.Option("--n-prs", help="Number of pull requests.")] = 5000,
    seed: Annotated[int, typer.Option(help="Root random seed.")] = 0,
    config: ConfigFile = None,
    set_: Overrides = None,
) -> None:
    """Ground-truth effect of a treatment on an outcome, unit by unit, from the same random keys."""
    from causalsynth.causal.effects import check_effect_out, estimate_effect, write_effect
    from causalsynth.config.loading import load_config

    check_effect_out(out_file)
    enable_compilation_cache()
    effect = estimate_effect(config=load_config(config, list(set_ or [])), treatment=treatment,
                             levels=tuple(v.strip() for v in levels.split(",")), outcome=outcome,
                             n_prs=n_prs, seed=seed)
    write_effect(effect, out_file)
    a, b = effect.levels
    out.print(f"average effect on {effect.outcome} of do({effect.treatment}={b}) vs "
              f"do({effect.treatment}={a}): {effect.average:+.6g}  "
              f"95% CI [{effect.ci_low:+.6g}, {effect.ci_high:+.6g}]  "
              f"({effect.n_units:,} units in {effect.n_prs:,} PRs; clustered by PR)", soft_wrap=True)
    out.print(f"per-unit outcomes and effects: {out_file}", soft_wrap=True)
