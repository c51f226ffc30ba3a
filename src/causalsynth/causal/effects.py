"""Ground-truth causal effects: each unit's outcome under two interventions, same keys.

Both worlds run the one compiled sampler with the same block keys, switched
to ``do(treatment = a)`` and ``do(treatment = b)``, so each unit's two
outcomes differ only through the treatment's causal descendants: their
difference is the unit's individual effect, exactly, not an estimate. The
average is reported with a 95 % interval clustered by pull request (the
rows of one PR share its draws).
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pandas as pd
import pyarrow as pa
import pyarrow.parquet as pq

from causalsynth.config.limits import check_size
from causalsynth.config.loading import Config
from causalsynth.dataset.staging import atomic_file, check_output_file
from causalsynth.engine.interventions import Intervention, encode_do
from causalsynth.engine.program import Program
from causalsynth.engine.sampling import sample_blocks
from causalsynth.engine.tabulate import schemas, start_epoch_ms, tabulate
from causalsynth.engine.world import prepare_world
from causalsynth.errors import ConfigError

Z_95 = 1.959964


@dataclass(frozen=True)
class Effect:
    """Per-unit outcomes under both levels, and the average effect of b versus a."""

    units: pd.DataFrame
    treatment: str
    levels: tuple[str, str]
    outcome: str
    average: float
    ci_low: float
    ci_high: float
    n_units: int
    n_prs: int


def _outcome_rows(world, table: str, column: str, seed: int, n_prs: int, do: dict) -> pd.DataFrame:
    program = world.program
    layout = program.table(table)
    sch = {table: schemas(program)[table]}  # only the outcome's table is built
    start = start_epoch_ms(program.config.sampling["start"])
    frames = []
    for block in sample_blocks(program, world.params, seed, n_prs, do=do):
        batch = tabulate(program, block, start, sch)[table]
        keys = batch.column(layout.table.key).to_numpy()
        frames.append(pd.DataFrame({
            layout.table.key: keys,
            "pr_id": (keys - 1) // layout.cells_per_pr + 1,
            column: batch.column(column).to_numpy(zero_copy_only=False).astype(np.float64),
        }))
    return pd.concat(frames, ignore_index=True)


def estimate_effect(*, config: Config, treatment: str, levels: tuple[str, str], outcome: str,
                    n_prs: int, seed: int = 0) -> Effect:
    """The effect on ``outcome`` ("table.column") of setting ``treatment`` to ``levels[1]`` vs ``levels[0]``.

    The options (size, seed, levels, outcome, treatment and its values) are
    checked before calibration and sampling.
    """
    table, _, column = outcome.partition(".")
    if len(levels) != 2 or not all(levels):
        raise ConfigError(f"--levels: expected two values A,B, got {','.join(levels)!r}")
    check_size(n_prs, seed)
    program = Program(config)
    names = [t.table.name for t in program.tables]
    if table not in names:
        raise ConfigError(f"--outcome {outcome}: no table {table!r}; tables: {', '.join(names)}")
    col = next((c for c in program.table(table).columns if c.name == column), None)
    if col is None or col.kind not in ("bool", "int", "float"):
        numeric = [c.name for c in program.table(table).columns if c.kind in ("bool", "int", "float")]
        raise ConfigError(f"--outcome {outcome}: not a numeric or boolean column of {table}; "
                          f"choose one of: {', '.join(numeric)}")
    worlds = [encode_do(program, {treatment: level}, "--treatment") for level in levels]
    world = prepare_world(config, Intervention(name="effects"), program=program)
    a, b = (_outcome_rows(world, table, column, seed, n_prs, do) for do in worlds)
    key = program.table(table).table.key
    units = a.merge(b[[key, column]], on=key, suffixes=(f"_{levels[0]}", f"_{levels[1]}"))
    units = units.rename(columns={f"{column}_{lv}": f"{column}__{treatment}={lv}" for lv in levels})
    first, second = (f"{column}__{treatment}={lv}" for lv in levels)
    units["effect"] = units[second] - units[first]
    per_pr = units.groupby("pr_id").effect.agg(["sum", "count"])
    average = per_pr["sum"].sum() / per_pr["count"].sum()
    clusters = len(per_pr)
    resid = per_pr["sum"] - average * per_pr["count"]
    se = np.sqrt((resid ** 2).sum() * clusters / max(clusters - 1, 1)) / per_pr["count"].sum()
    return Effect(units=units, treatment=treatment, levels=tuple(levels), outcome=outcome,
                  average=float(average), ci_low=float(average - Z_95 * se),
                  ci_high=float(average + Z_95 * se), n_units=len(units), n_prs=clusters)


def check_effect_out(path: str | Path) -> Path:
    """Refuse an ``--out`` that is not a writable .parquet or .csv file, before any sampling."""
    return check_output_file(path, "--out", (".parquet", ".csv"))


def write_effect(effect: Effect, path: str | Path) -> Path:
    """Per-unit outcomes to Parquet (``.parquet``) or CSV (``.csv``), written atomically."""
    path = check_effect_out(path)
    with atomic_file(path) as partial:
        if path.suffix == ".parquet":
            pq.write_table(pa.Table.from_pandas(effect.units, preserve_index=False), partial)
        else:
            effect.units.to_csv(partial, index=False)
    return path
