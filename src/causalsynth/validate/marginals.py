"""The model's configured rates and mixes (``MARGINALS``): counting them, and holding them to target.

Counting works on any rows (one block's batches while sampling, or a whole
column read back by ``validate``), so ``sample``'s closing verdict and
``validate`` judge a marginal with the same code: ``sample`` from what it
counted as it wrote, ``validate`` from the files.
"""

from __future__ import annotations

import math
from collections.abc import Callable

import pyarrow as pa
import pyarrow.compute as pc

from causalsynth.validate.checks import Check, not_applicable

# The hits of each level (``None`` for a boolean column's true rows) and the population they are out of.
Tally = tuple[dict[str | None, int], int]


def tally_key(m) -> str:
    """The key a column's tally is kept under (a manifest's ``tallies``)."""
    return f"{m.column}|{m.among or ''}"


def parse_column(ref: str) -> tuple[str, str, str | None]:
    """"table.column" or "table.column=LEVEL" → (table, column, level)."""
    where, _, level = ref.partition("=")
    table, _, column = where.partition(".")
    return table, column, level or None


def tally(values: pa.Array | pa.ChunkedArray, among: pa.Array | pa.ChunkedArray | None = None) -> Tally:
    """Rows per level of a categorical column (true rows of a boolean one), where ``among`` holds."""
    if among is not None:
        values = pc.filter(values, among)
    n = len(values)
    if pa.types.is_dictionary(values.type):
        if isinstance(values, pa.ChunkedArray):
            values = values.combine_chunks()
        counts = pc.value_counts(values.dictionary_decode())
        return {str(v): int(c) for v, c in zip(counts.field("values").to_pylist(),
                                               counts.field("counts").to_pylist())}, n
    return {None: int(pc.sum(values).as_py() or 0)}, n


def levels(m, config) -> list[tuple[str | None, float]]:
    """Each level a marginal checks, with its target share."""
    level = parse_column(m.column)[2]
    target = config.get(m.target)
    return list(target.items()) if isinstance(target, dict) else [(level, float(target))]


def check_name(m, level: str | None) -> str:
    table, column, _ = parse_column(m.column)
    return (f"marginal {table}.{column}" + (f"={level}" if level else "")
            + (f" among {m.among}" if m.among else ""))


def judge(name: str, expected: float, tolerance: float, found: Tally, level: str | None,
          among: str | None) -> Check:
    """One level's share against its target: within the tolerance, or 4 standard errors when wider."""
    hits, n = found
    if n == 0:  # e.g. severities in a world where no PR regresses
        return not_applicable(name, f"{expected:.2%}", f"no rows where {among}")
    observed = hits.get(level, 0) / n
    se = math.sqrt(max(expected * (1 - expected), 1e-12) / n)
    allowed = max(tolerance, 4 * se)
    return Check(name, f"{expected:.2%} ± {allowed:.2%}", f"{observed:.2%}", abs(observed - expected) <= allowed,
                 observed, float(expected))


def moved_columns(manifest: dict, program) -> set[tuple[str, str]]:
    """(table, column) of every column the dataset's intervention moves: its site or an ancestor is
    intervened on, so its configured marginal no longer applies."""
    intervention = manifest["intervention"]
    if not intervention["do"] and not intervention["set"]:
        return set()
    from causalsynth.causal.graph import model_graph

    graph = model_graph(program)
    moved = graph.descendants(set(intervention["do"]) | graph.reading(intervention["set"]))
    return {(t.table.name, c.name) for t in program.tables for c in t.columns if c.site in moved}


def marginal_checks(config, moved: set[tuple[str, str]], intervention: str, found: Callable[[object], Tally],
                    guard: Callable[[str, str, Callable[[], list[Check]]], list[Check]]) -> list[Check]:
    """A check per level of every marginal; ``found(m)`` tallies it (from files or from counts).

    A marginal of a column the intervention moves (``moved_columns``) is n/a.
    ``guard`` turns a tally that cannot be made (an unreadable table) into a
    failed "not run" check.
    """
    tolerances = config.data["quality"]["tolerances"]
    out = []
    for m in config.model.MARGINALS:
        table, column, _ = parse_column(m.column)
        for level, expected in levels(m, config):
            name = check_name(m, level)
            if (table, column) in moved:
                out.append(not_applicable(name, f"{expected:.2%}", f"moved by the intervention {intervention}"))
            else:
                out += guard(name, f"{expected:.2%}", lambda: [
                    judge(name, expected, tolerances[m.tolerance], found(m), level, m.among)])
    return out


def counted_checks(manifest: dict, config) -> list[Check]:
    """The marginal checks, judged on the tallies sampling wrote into the manifest: no file is read.

    ``config`` is the one the dataset was sampled with. ``sample`` closes with these; ``validate``
    runs every check from the files.
    """
    intervention = manifest["intervention"]
    moved = set()
    if intervention["do"] or intervention["set"]:
        from causalsynth.engine.program import Program

        moved = moved_columns(manifest, Program(config))
    tallies = manifest["marginals"]
    return marginal_checks(config, moved, intervention["name"], lambda m: tally_from_json(tallies[tally_key(m)]),
                           lambda name, expected, run: run())


# In a manifest, a boolean column's hits (level None) are recorded under this key.
TRUE = "true"


def tallies_to_json(tallies: dict[str, Tally]) -> dict[str, list]:
    """Tallies as a manifest records them: [hits by level, population]."""
    return {key: [{TRUE if k is None else k: v for k, v in hits.items()}, n] for key, (hits, n) in tallies.items()}


def tally_from_json(entry: list) -> Tally:
    hits, n = entry
    return {None if k == TRUE else k: v for k, v in hits.items()}, n
