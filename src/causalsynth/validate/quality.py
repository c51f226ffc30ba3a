"""`causalsynth validate`: is this dataset what its manifest and config say it is?

Every check is read against the dataset's own manifest and resolved config,
so a dataset sampled with a 35 % regression rate validates against 35 %:

- integrity: each table's parts' SHA-256 and its row count against the manifest,
  and no file the manifest does not list;
- provenance: a few blocks sampled again from the manifest's claims equal the parts;
- completeness: the non-null share of every column (``quality.completeness``);
- structure, domains and identities (``consistency.py``);
- computed again: what the model computes without randomness, from the stored
  columns (``recompute.py``);
- marginals: every configured rate and mix (the model's ``MARGINALS``)
  within ``quality.tolerances``, widened to 4 standard errors on small
  samples so that a correct small dataset is not failed by sampling noise;
  the manifest's headline rates equal the files'; a variable-length table's
  missing rows against their configured rate (``GAPS``);
- shapes: the model's ``SHAPES`` (log-normal response times, Beta error
  rates) within ``quality.max_ks_distance`` of the fitted family (or the
  KS test's 1 % critical value, when a small sample makes that larger);
- causal signatures: the model's ``SIGNATURES`` (regressed PRs' runs are
  slower, their flows convert less).

Uses Arrow compute and Parquet statistics; child tables are streamed by row
group, so memory stays bounded as the dataset grows.
"""

from __future__ import annotations

import math
from concurrent.futures import ThreadPoolExecutor
from dataclasses import asdict
from pathlib import Path
from typing import Any

import numpy as np
import pyarrow.compute as pc
from scipy import special

from causalsynth.dataset.location import Location, locate
from causalsynth.dataset.manifest import dataset_config, read_manifest
from causalsynth.dataset.reading import DatasetFiles, UnreadableTable, recorded_intervention
from causalsynth.engine.interventions import Intervention, shifted_config
from causalsynth.engine.program import Program
from causalsynth.errors import CausalsynthError, OutputError, UnreadableDataset
from causalsynth.validate.checks import Check, not_applicable
from causalsynth.validate.consistency import guarded, row_checks, schema_check
from causalsynth.validate.marginals import Tally, judge, marginal_checks, moved_columns, parse_column, tally

__all__ = ["Check", "UnreadableDataset", "validate_dataset", "as_json"]

# Fewer rows than this cannot fit a distribution's two parameters and test the fit.
MIN_SHAPE_ROWS = 20


# Blocks ``validate`` samples again by default: the first, the last and one chosen at random.
RESAMPLE_BLOCKS = 3


def validate_dataset(directory: str | Path, resample: int = RESAMPLE_BLOCKS) -> list[Check]:
    """Every check on the dataset at ``directory`` (a path or URL); raises UnreadableDataset if there is none.

    A check that cannot run (its table unreadable, a column missing) is
    reported as a failed check saying so: no check is ever dropped.
    ``resample`` blocks (the first, the last, then others at random; 0: none)
    are sampled again from the manifest's config, seed, intervention and
    intercepts, and their parts compared byte for byte with the stored ones.
    """
    try:
        manifest = read_manifest(directory)
        config = dataset_config(directory, manifest)
        program = Program(config)
        # An identity's constants are the sampled world's (a variant may set them).
        world = shifted_config(config, recorded_intervention(locate(directory), manifest, config, program))
    except (UnreadableDataset, OutputError):
        raise
    except (CausalsynthError, ValueError, KeyError, TypeError) as exc:
        raise UnreadableDataset(f"{directory}: cannot be read as a dataset: {exc}") from None
    location = locate(directory)
    files = DatasetFiles(location, manifest)
    model, quality = config.model, config.data["quality"]
    # What runs the model (sampling again, computing columns again: JAX) runs beside what reads the
    # files (pyarrow and NumPy); both release the GIL. A trace of the model holds program.TRACING, so
    # two never share NumPyro's handler stack, and DatasetFiles' caches only ever gain whole columns.
    with ThreadPoolExecutor(2, thread_name_prefix="causalsynth-model") as pool:
        provenance = pool.submit(guarded, "provenance", PROVENANCE,
                                 lambda: _provenance(manifest, config, program, resample))
        recomputed = pool.submit(_recomputed, files, manifest, config, program)
        checks = _integrity(location, manifest, files)
        rows = row_checks(files, program, world, manifest["n_prs"])
        by_table = [guarded(f"schema {layout.table.name}", "the model's columns and types",
                            lambda: schema_check(files, layout))
                    + guarded(f"completeness {layout.table.name}", "non-null",
                              lambda: _completeness(files, layout, quality["completeness"]))
                    + [c for c in rows[layout.table.name] if not c.check.startswith("identity ")]
                    for layout in program.tables]
        identities = [c for layout in program.tables for c in rows[layout.table.name]
                      if c.check.startswith("identity ")]
        tallies: dict[tuple, Tally] = {}

        def tallied(m) -> Tally:  # once per column: the headlines read the marginals' tallies again
            key = (m.column, m.among)
            if key not in tallies:
                tallies[key] = _tally(files, m)
            return tallies[key]

        counted = (marginal_checks(config, moved_columns(manifest, program), manifest["intervention"]["name"],
                                   tallied, guarded)
                   + _headlines(manifest, model, tallied) + _gaps(files, manifest, config, program))
        checks += provenance.result()
        checks += [c for table in by_table for c in table] + identities + recomputed.result() + counted
    checks += _shapes(files, model, quality["max_ks_distance"])
    checks += _signatures(files, model, set(manifest["intervention"]["do"]))
    return checks


def _integrity(location: Location, manifest: dict, files: DatasetFiles) -> list[Check]:
    out = []
    for name, entry in manifest["tables"].items():
        parts = entry["parts"] or []
        differ = [p["file"] for p in parts if _digest(location, p["file"]) != p["sha256"]]
        out.append(Check(f"checksum {name}", f"{len(parts)} of {len(parts)} parts as written",
                         f"{len(parts) - len(differ)} of {len(parts)}"
                         + (f" ({', '.join(differ[:3])}{', …' * (len(differ) > 3)} differ)" if differ else ""),
                         bool(parts) and not differ))
        out += guarded(f"files {name}", "the manifest's parts, and no other file",
                       lambda: [_unlisted(location, name, parts)])
        try:
            rows = files.rows(name)
            out.append(Check(f"rows {name}", f"{entry['rows']:,}", f"{rows:,}", rows == entry["rows"]))
        except UnreadableTable as exc:
            out.append(Check(f"rows {name}", f"{entry['rows']:,}", str(exc), False))
    return out


PROVENANCE = "blocks sampled again from the manifest's config, seed, intervention and intercepts equal the parts"


def _provenance(manifest: dict, config, program: Program, resample: int) -> list[Check]:
    """Sample a few blocks again from what the manifest claims and compare their parts' SHA-256 with the
    stored ones': a seed, intervention, calibration, block size or model that is not the one the parts
    came from fails here, whatever else was edited to match."""
    import hashlib
    import random

    import jax

    from causalsynth.engine.sampling import sample_blocks
    from causalsynth.engine.tabulate import Tables
    from causalsynth.sinks.parquet import encode_part

    if resample < 1:
        return [not_applicable("provenance", PROVENANCE, "not sampled again (--resample 0)")]
    if manifest.get("format_version", 1) < 2:
        return [not_applicable("provenance", PROVENANCE, "format version 1 keeps one file per table, not one "
                                                         "per block: nothing to compare a block with")]
    if manifest.get("block_prs") != program.block_prs:
        return [Check("provenance", PROVENANCE, f"blocks of {manifest.get('block_prs')} PRs in the manifest, "
                                                f"{program.block_prs} in its config", False)]
    parts = {name: entry["parts"] or [] for name, entry in manifest["tables"].items()}
    n_blocks = -(-manifest["n_prs"] // program.block_prs)
    others = random.SystemRandom().sample(range(1, max(n_blocks - 1, 1)), max(min(resample, n_blocks) - 2, 0))
    chosen = list(dict.fromkeys([0, n_blocks - 1, *others]))[:resample]
    world = _world(manifest, config, program)
    tables, differ = Tables(program), []
    for block in sample_blocks(program, world.params, manifest["seed"], manifest["n_prs"], sorted(chosen), world.do):
        for table, batch in tables.batches(block).items():
            index, digest = block.index, hashlib.sha256(encode_part(batch)).hexdigest()
            stored = parts.get(table, [])
            if index >= len(stored) or stored[index]["sha256"] != digest:
                differ.append(f"block {index} {table}")
    runtime = manifest.get("runtime", {})
    here = f"JAX {jax.__version__} on {jax.default_backend()}"
    there = f"JAX {runtime.get('jax')} on {runtime.get('backend')}"
    observed = (f"{len(chosen)} of {len(chosen)} blocks ({', '.join(map(str, sorted(chosen)))}) identical" if not differ
                else f"{', '.join(differ[:3])}{', …' * (len(differ) > 3)} differ" +
                ("" if here == there else f" (sampled with {there}; this is {here}: its last bits may differ)"))
    return [Check("provenance", PROVENANCE, observed, not differ)]


def _world(manifest: dict, config, program: Program):
    """The world the manifest says its parts were sampled in: its intervention and intercepts."""
    from causalsynth.engine.world import prepare_world

    return prepare_world(config, Intervention(**manifest["intervention"]), manifest["calibration"]["intercepts"],
                         program=program)


def _recomputed(files: DatasetFiles, manifest: dict, config, program: Program) -> list[Check]:
    """The ``derived`` and ``possible`` checks (``recompute.py``): what the model computes without
    randomness, computed again by the model from the stored columns."""
    from causalsynth.validate import recompute

    unreadable = {}
    for name in manifest["tables"]:
        try:
            files.file(name)
        except UnreadableTable as exc:
            unreadable[name] = str(exc)
    plan = recompute.plan(program, set(manifest["tables"]), set(manifest["intervention"]["do"]), unreadable)
    return recompute.checks(files, program, _world(manifest, config, program).params, plan, manifest["n_prs"])


def _unlisted(location: Location, table: str, parts: list[dict]) -> Check:
    """Files in a table's directory that the manifest does not list: a reader of the directory (pandas,
    DuckDB, Spark) would read them as rows of the table."""
    root = location.join(table).rstrip("/")
    found = {f"{table}/{path[len(root) + 1:]}" for path in location.fs.find(root)} if location.exists(table) else set()
    extra = sorted(found - {p["file"] for p in parts})
    return Check(f"files {table}", "the manifest's parts, and no other file",
                 f"{len(extra)} unlisted: {', '.join(extra[:3])}{', …' * (len(extra) > 3)}" if extra
                 else f"{len(found)} files, each listed", not extra)


def _digest(location: Location, relative: str) -> str:
    try:
        return location.sha256(relative)
    except OSError:
        return "missing"


def _completeness(files: DatasetFiles, layout, minimum: float) -> list[Check]:
    """The worst column's non-null share, from the row groups' statistics when written. A reference
    (``Table.refs``) is null by design at a tree's root: its own check counts those."""
    name = layout.table.name
    f = files.file(name)
    n = max(f.num_rows, 1)
    worst, worst_column = 1.0, None
    refs = {ref.column for ref, _ in layout.refs}
    for index, field in enumerate(f.schema_arrow):
        if field.name in refs:
            continue
        nulls = 0
        for part, i in f.row_groups():
            st = f.metadata[part].row_group(i).column(index).statistics
            if st is None or not st.has_null_count:
                nulls = files.own(name, field.name).null_count
                break
            nulls += st.null_count
        if 1.0 - nulls / n < worst:
            worst, worst_column = 1.0 - nulls / n, field.name
    return [Check(f"completeness {name}", f"> {minimum:.2%} non-null",
                  f"{worst:.2%} ({worst_column})" if worst_column else "100.00%", worst > minimum)]


def _tally(files: DatasetFiles, m) -> Tally:
    table, column, _ = parse_column(m.column)
    return tally(files.own(table, column, keep=True), files.column(table, m.among) if m.among else None)


def _headlines(manifest: dict, model, tallied) -> list[Check]:
    """The headline rates the manifest claims (what ``sample`` printed) against the files' counts."""
    out = []
    by_title = {m.headline: m for m in model.MARGINALS if m.headline}
    for h in manifest.get("headlines", []):
        name, claimed = f"headline {h['title']}", f"the manifest's {h['observed']:.4%}"
        m = by_title.get(h["title"])
        if m is None or m.column != h["column"]:
            out.append(Check(name, claimed, f"the model has no headline {h['title']!r} of {h['column']}", False))
            continue

        def judged(m=m, h=h, name=name, claimed=claimed) -> list[Check]:
            hits, n = tallied(m)
            share = hits.get(parse_column(m.column)[2], 0) / max(n, 1)
            return [Check(name, claimed, f"{share:.4%} in the files", share == h["observed"], share,
                          h["observed"])]
        out += guarded(name, claimed, judged)
    return out


def _gaps(files: DatasetFiles, manifest: dict, config, program: Program) -> list[Check]:
    """The share of a variable-length table's cells without a row, against its configured rate (``GAPS``)."""
    out = []
    tolerances = config.data["quality"]["tolerances"]
    changed = tuple(manifest["intervention"]["set"])
    for g in getattr(config.model, "GAPS", ()):
        name, expected = f"gaps {g.table}", float(config.get(g.target))
        if g.table not in manifest["tables"]:
            out.append(not_applicable(name, f"{expected:.2%}", f"{g.table} is not in this dataset"))
        elif any(g.target == c or g.target.startswith(c + ".") for c in changed):
            out.append(not_applicable(name, f"{expected:.2%}", f"moved by the intervention "
                                                               f"{manifest['intervention']['name']}"))
        else:
            def judged(g=g, name=name, expected=expected) -> list[Check]:
                cells = manifest["n_prs"] * program.table(g.table).cells_per_pr
                # A rate of 0 (or 1) is kept exactly: a single missing row is then a failure.
                tolerance = 0.0 if expected in (0.0, 1.0) else tolerances[g.tolerance]
                return [judge(name, expected, tolerance, ({None: cells - files.rows(g.table)}, cells), None, None)]
            out += guarded(name, f"{expected:.2%}", judged)
    return out


def _shapes(files: DatasetFiles, model, max_distance: float) -> list[Check]:
    out = []
    for shape in model.SHAPES:
        name = f"shape {shape.column} is {shape.family}" + (f" ({', '.join(shape.where)})" if shape.where else "")
        out += guarded(name, "KS distance", lambda: [_shape(files, shape, name, max_distance)])
    return out


def _shape(files: DatasetFiles, shape, name: str, max_distance: float) -> Check:
    table, _, column = shape.column.partition(".")
    values = files.own(table, column)
    mask = files.mask(table, shape.where)
    if mask is not None:
        values = pc.filter(values, mask)
    x = values.to_numpy().astype(np.float64)
    if len(x) < MIN_SHAPE_ROWS:  # e.g. no clean runs in a world where every PR regresses
        return not_applicable(name, "KS distance", f"{len(x)} rows where {', '.join(shape.where)}")
    distance = ks_distance(x, shape.family)
    # On small samples the KS distance of even a perfect fit exceeds a fixed bound:
    # allow its 1 % critical value, 1.63 / sqrt(n), when that is larger.
    bound = max(max_distance, 1.63 / math.sqrt(len(x)))
    return Check(name, f"KS distance < {bound:.3f}", f"{distance:.4f} (n={len(x):,})", distance < bound)


def ks_distance(x: np.ndarray, family: str) -> float:
    """The Kolmogorov-Smirnov distance between ``x`` and ``family`` fitted to it by moments.

    The statistic of ``scipy.stats.kstest`` (the tests hold the two equal), from
    ``scipy.special``'s CDFs: JAX has already imported those, where importing
    ``scipy.stats`` would add 0.4 s to every ``validate``.
    """
    x = np.sort(x)
    if family == "lognormal":
        logs = np.log(x)
        cdf = special.ndtr((logs - logs.mean()) / logs.std())
    else:
        mean, var = x.mean(), x.var()
        common = mean * (1 - mean) / var - 1
        cdf = special.betainc(mean * common, (1 - mean) * common, x)
    n = len(x)
    return float(max((np.arange(1, n + 1) / n - cdf).max(), (cdf - np.arange(n) / n).max()))


def _signatures(files: DatasetFiles, model, fixed: set[str]) -> list[Check]:
    """The model's causal signatures; ``fixed`` are the columns a ``do`` set to one value."""
    out = []
    for sig in model.SIGNATURES:
        name = f"signature {sig.column} {sig.direction} when {sig.by}"
        out += guarded(name, f"mean {sig.direction}", lambda: [_signature(files, sig, name, fixed)])
    return out


def _signature(files: DatasetFiles, sig, name: str, fixed: set[str]) -> Check:
    table, _, column = sig.column.partition(".")
    if column in fixed:  # e.g. no_regressions: the effect's outcome is a constant
        return not_applicable(name, f"mean {sig.direction}", f"do({column}) fixes it")
    values = files.own(table, column).to_numpy().astype(np.float64)
    by = files.column(table, sig.by).to_numpy(zero_copy_only=False).astype(bool)
    if by.all() or not by.any():  # e.g. a twin where every PR, or none, regressed
        return not_applicable(name, f"mean {sig.direction}", f"{sig.by} is {bool(by.any())} everywhere")
    if np.all(values == values[0]):  # e.g. regression.rate=1: every PR regresses, whenever it merged
        return not_applicable(name, f"mean {sig.direction}", f"{sig.column} is {values[0]:g} everywhere")
    with_, without = values[by].mean(), values[~by].mean()
    ok = with_ > without if sig.direction == "higher" else with_ < without
    return Check(name, f"mean {sig.direction}", f"{with_:.4g} vs {without:.4g}", bool(ok))


def as_json(checks: list[Check]) -> dict[str, Any]:
    return {"passed": all(c.passed for c in checks),
            "checks": [asdict(c) | {"verdict": c.verdict} for c in checks]}
