"""Sample a dataset end to end: calibrate, run blocks (here or on a cluster), write parts, manifest.

A dataset is a directory (local, or an fsspec URL such as ``s3://bucket/x``)
holding ``manifest.json`` and one directory of Parquet part files per table,
one part per block of PRs: ``flow_steps/part-000003.parquet`` holds block 3's
steps. pyarrow, pandas, Polars, DuckDB, Spark and Dask read each table
directory as one table; the manifest lists every part with its row range and
SHA-256. Datasets of format version 1 (one file per table) are still read.
"""

from __future__ import annotations

import hashlib
import json
from collections.abc import Callable
from contextlib import ExitStack, closing
from dataclasses import dataclass
from pathlib import Path, PurePosixPath
from typing import Any

import jax
import pyarrow as pa

from causalsynth import plugins
from causalsynth.cache import model_digest, package_version
from causalsynth.config import MAX_SEED, Config, load_config
from causalsynth.cluster import ClusterStart, check_cluster, start_cluster
from causalsynth.engine import BlockJob, BlockResult, Counts, run_local, run_on_dask, versions, warm_up
from causalsynth.errors import ConfigError, OutputError, UnreadableDataset, one_line
from causalsynth.graph import model_graph
from causalsynth.interventions import Intervention, encode_do, soft_overrides
from causalsynth.marginals import levels, tallies_to_json
from causalsynth.params import Params
from causalsynth.program import Program
from causalsynth.sampling import calibrate, with_intercepts
from causalsynth.sinks import TableSpec
from causalsynth.staging import deferred_interrupts, staged_location
from causalsynth.store import Location, locate, unreadable
from causalsynth.tabulate import schemas

MANIFEST = "manifest.json"
FORMAT = "causalsynth-dataset"
FORMAT_VERSION = 2
LOAD_BATCH_ROWS = 500_000


@dataclass
class Progress:
    """Callbacks for long work; the CLI draws them, tests ignore them."""

    on_stage: Callable[[str], None] = lambda stage: None
    on_start: Callable[[int], None] = lambda n_blocks: None
    on_block: Callable[[int], None] = lambda rows: None


def headlines(program: Program, counts: Counts) -> list[dict[str, Any]]:
    """The model's headline rates as sampled, beside their targets."""
    config = program.config
    out = []
    for m in program.model.MARGINALS:
        if m.headline:
            hits, n = counts.tally(m)
            level, target = levels(m, config)[0]
            out.append({"title": m.headline, "column": m.column, "observed": hits.get(level, 0) / max(n, 1),
                        "target": target})
    return out


def _schema_json(schema: pa.Schema, layout) -> list[dict[str, Any]]:
    """Each column's name and Arrow type, with the levels of categorical ones."""
    levels_of = {c.name: list(c.levels) for c in layout.columns if c.levels}
    return [{"name": f.name, "type": str(f.type)} | ({"levels": levels_of[f.name]} if f.name in levels_of else {})
            for f in schema]


def table_specs(program: Program) -> list[TableSpec]:
    """What a sink needs to know of each table: schema, keys, and the data dictionary."""
    schema_by_table = schemas(program)
    docs = program.model.DESCRIPTIONS
    specs = []
    for layout in program.tables:
        t = layout.table
        descriptions = {c.name: docs[c.site] for c in layout.columns}
        descriptions[t.key] = f"Key of {t.name}"
        if t.number is not None:
            descriptions[t.number[0]] = f"Readable label of {t.key}"
        parent = None
        if layout.parent is not None:
            parent = (layout.parent.name, layout.parent.key)
            descriptions[layout.parent.key] = f"The {layout.parent.name} row this row belongs to"
        specs.append(TableSpec(t.name, schema_by_table[t.name], t.key, parent, descriptions))
    return specs


def manifest_bytes(manifest: dict[str, Any]) -> bytes:
    return (json.dumps(manifest, indent=2) + "\n").encode()


def sample_dataset(
    *,
    config: Config,
    n_prs: int,
    seed: int,
    out: str | Path | None = None,
    force: bool = False,
    db: str | None = None,
    db_schema: str | None = None,
    if_exists: str = "fail",
    intervention: Intervention | None = None,
    intercepts: dict[str, float] | None = None,
    factual: dict[str, Any] | None = None,
    progress: Progress | None = None,
    workers: int | None = None,
    scheduler: str | None = None,
    order: list[int] | None = None,
    cluster: ClusterStart | None = None,
) -> dict[str, Any]:
    """Sample ``n_prs`` PRs and all their child rows; return the manifest.

    Writes Parquet parts into ``out`` (a directory or an fsspec URL) and/or
    loads straight into the database ``db`` (a SQLAlchemy URL). Nothing
    becomes visible until everything succeeded: ``out`` gets its manifest
    last (a local directory is published from a staging directory), the
    database load is one transaction. Blocks run in this process, or as tasks
    on a Dask cluster: ``workers`` starts a local one, ``scheduler`` is the
    address of a running one. The dataset is a function of (config, seed,
    n_prs, intervention): byte-identical on every run, whatever the engine,
    the number of workers or the ``order`` blocks run in (``cluster``: that
    cluster's start, begun by the caller for these options). ``intercepts``
    reuses solved calibration intercepts (a twin takes its factual dataset's);
    ``factual`` names that dataset in the manifest.
    """
    check_size(n_prs, seed)
    if out is None and db is None:
        raise ConfigError("give --out DIR (Parquet) and/or --db URL (a database)")
    if db is not None:
        from causalsynth.sinks.sql import SqlSink, check_options  # SQLAlchemy only when a database is asked for

        check_options(db, db_schema, if_exists)
    check_cluster(workers, scheduler, out, db)
    progress = progress or Progress()
    with ExitStack() as stack:
        output = None if out is None else stack.enter_context(staged_location(out, force=force))
        target = None if output is None else output.location
        client = None
        from causalsynth import cache

        cache_dir = None if cache.DIRECTORY is None else str(cache.DIRECTORY)
        if cluster is None:
            cluster = start_cluster(workers, scheduler, out, db)
            if cluster is not None:
                stack.callback(cluster.close)
        if cluster is not None:
            progress.on_stage(f"connecting to {scheduler}" if scheduler else f"starting {workers} workers")
            client = cluster.client()
            stack.enter_context(client.as_current())  # the client Dask's helpers (``wait``) find, in this thread
            warming = warm_up(client, config.data, cache_dir)  # noqa: F841 - held until the job ends
        sql = None if db is None else SqlSink(db, schema=db_schema, if_exists=if_exists)
        checkpoint = stack.enter_context(deferred_interrupts())
        try:
            world = prepare_world(config, intervention, intercepts, progress)
            checkpoint()
            program = world.program
            specs = table_specs(program)
            if output is not None:
                output.begin()  # from here on the job writes: a forced replacement removes the old dataset now
                for spec in specs:
                    target.makedirs(spec.name)
            if sql is not None:
                sql.open(specs)
            job = BlockJob(config=config.data, params=world.params, do=world.do, seed=seed, n_prs=n_prs,
                           out=target, cache_dir=cache_dir, versions=versions(program.model))
            n_blocks = -(-n_prs // program.block_prs)
            indices = list(range(n_blocks)) if order is None else list(order)
            if sorted(indices) != list(range(n_blocks)):
                raise ConfigError(f"order: must list each of the {n_blocks} blocks once")
            progress.on_start(n_blocks)
            if client is not None:
                stream = run_on_dask(client, job, indices, checkpoint=checkpoint)
            else:
                write_sql = (lambda batches: [sql.write(t, b) for t, b in batches.items()]) if sql else None
                stream = run_local(job, program, indices, on_batches=write_sql or (lambda batches: None),
                                   checkpoint=checkpoint)
            results: dict[int, BlockResult] = {}
            counts = Counts()
            with closing(stream):  # on a failure, blocks still being written finish before the clean-up
                for result in stream:
                    results[result.index] = result
                    counts.add(result.counts)
                    progress.on_block(result.n_rows)
            parts = _parts(specs, [results[i] for i in range(n_blocks)]) if target is not None else None
            if client is not None and target.local:
                _check_parts_arrived(target, out, parts)
            if sql is not None:
                if client is not None:
                    stream_parts(target, {s.name: parts[s.name] for s in specs}, sql, progress, checkpoint)
                sql.close()
            progress.on_stage("writing manifest")
            manifest = _manifest(world, config, seed, n_prs, specs, counts, parts, factual)
            data = manifest_bytes(manifest)
            if target is not None:
                target.write_bytes(MANIFEST, data)
            if sql is not None:
                sql.commit(data)
        except BaseException:
            if sql is not None:
                sql.abort()
            raise
    return manifest


def _check_parts_arrived(target: Location, out, parts: dict[str, list[dict[str, Any]]]) -> None:
    """Workers on other machines write to their own disks: a local ``--out`` must be a filesystem
    they all share, and every part they reported must be here."""
    missing = [p["file"] for table in parts.values() for p in table if not target.is_file(p["file"])]
    if missing:
        raise OutputError(f"--out {out}: {len(missing)} of the parts the workers wrote are not here (e.g. "
                          f"{missing[0]}); with --scheduler, --out must be a filesystem every worker shares, or an "
                          f"object store URL")


def _parts(specs: list[TableSpec], results: list[BlockResult]) -> dict[str, list[dict[str, Any]]]:
    """Each table's parts in block order, with the row range each holds."""
    out = {}
    for spec in specs:
        first, parts = 0, []
        for result in results:
            part = result.parts[spec.name]
            parts.append({"file": part["file"], "first_row": first, "rows": part["rows"], "sha256": part["sha256"]})
            first += part["rows"]
        out[spec.name] = parts
    return out


# About 166 billion rows: past any dataset one job writes, and within every index the engine keeps.
MAX_PRS = 10**9


def check_size(n_prs: int, seed: int) -> None:
    """Refuse ``--n-prs`` outside [1, MAX_PRS] or a seed outside [0, 2**32 - 1] before any work."""
    if not 1 <= n_prs <= MAX_PRS:
        raise ConfigError(f"--n-prs: must be a positive number of pull requests, at most {MAX_PRS:,}, "
                          f"got {n_prs:,}")
    check_seed(seed, "--seed")


def check_seed(seed: int, option: str) -> None:
    if not 0 <= seed <= MAX_SEED:
        raise ConfigError(f"{option}: must be a whole number in [0, {MAX_SEED}], got {seed}")


def _manifest(world, config, seed, n_prs, specs, counts: Counts, parts, factual) -> dict[str, Any]:
    program = world.program
    return {
        "format": FORMAT,
        "format_version": FORMAT_VERSION,
        "package_version": package_version(),
        "model": {"name": config.model.NAME, "version": config.model.VERSION,
                  "sha256": model_digest(config.model)},
        "seed": seed,
        "n_prs": n_prs,
        "block_prs": program.block_prs,
        "intervention": world.intervention.to_json(),
        "factual": factual,
        "config": config.data,
        "calibration": {"intercepts": world.intercepts},
        "runtime": {"jax": jax.__version__, "backend": jax.default_backend()},
        "tables": {
            spec.name: {
                "rows": counts.rows.get(spec.name, 0),
                "key": spec.key,
                "parent": None if spec.parent is None else {"table": spec.parent[0], "key": spec.parent[1]},
                "schema": _schema_json(spec.schema, program.table(spec.name)),
                "parts": None if parts is None else parts[spec.name],
            }
            for spec in specs
        },
        "headlines": headlines(program, counts),
        "marginals": tallies_to_json(counts.tallies),
        "graph": {"edges": [list(e) for e in model_graph(program).edges]},
    }


def stream_parts(location: Location, parts: dict[str, list[dict[str, Any]]], sink, progress: Progress,
                 checkpoint: Callable[[], None] = lambda: None) -> None:
    """Every part of every table, in row order, to ``sink`` in batches of at most ``LOAD_BATCH_ROWS``."""
    for table, table_parts in parts.items():
        for part in table_parts:
            try:
                rows = location.parquet(part["file"]).read()
            except (OSError, pa.ArrowException) as exc:
                raise unreadable(location, part["file"], exc) from None
            for batch in rows.to_batches(max_chunksize=LOAD_BATCH_ROWS):
                sink.write(table, batch)
            progress.on_block(rows.num_rows)
            checkpoint()


def load_dataset(*, directory: str | Path, db: str, schema: str | None = None, if_exists: str = "fail",
                 progress: Progress | None = None) -> dict[str, int]:
    """Load a Parquet dataset into the database ``db``, all or nothing; return rows per table.

    The parts are checked against the manifest's checksums first, and the
    load is recorded under the manifest's SHA-256.
    """
    from causalsynth.sinks.sql import SqlSink, check_options

    progress = progress or Progress()
    check_options(db, schema, if_exists)
    location = locate(directory)
    data = manifest_bytes_at(location)
    manifest = parse_manifest(location, data)
    # The files are checked before the database is touched: a dataset that cannot be loaded
    # leaves no trace there (not even a new SQLite file).
    specs, parts = _checked_specs(location, manifest, progress)
    sink = SqlSink(db, schema=schema, if_exists=if_exists, manifest_sha256=hashlib.sha256(data).hexdigest())
    with deferred_interrupts() as checkpoint:
        try:
            sink.open(specs)
            progress.on_start(sum(len(p) for p in parts.values()))
            stream_parts(location, {s.name: parts[s.name] for s in specs}, sink, progress, checkpoint)
            sink.close()
            sink.commit(data)
        except BaseException:
            sink.abort()
            raise
    return dict(sink.rows)


def _checked_specs(location: Location, manifest: dict[str, Any],
                   progress: Progress) -> tuple[list[TableSpec], dict[str, list[dict[str, Any]]]]:
    """The dataset's table specs and parts, after checking its config, and its files against the manifest."""
    config = dataset_config(location.url, manifest)
    parts = table_parts(location, manifest)
    for name, table_parts_ in parts.items():
        progress.on_stage(f"checking {name}")
        for part in table_parts_:
            if location.sha256(part["file"]) != part["sha256"]:
                raise UnreadableDataset(f"{location.show(part['file'])}: changed since it was written (its SHA-256 "
                                        f"differs from the manifest's)")
    specs = table_specs(Program(config))
    for spec in specs:
        if spec.name not in parts:
            raise UnreadableDataset(f"{location.show(MANIFEST)}: tables: no table {spec.name}, which this "
                                    f"version writes")
        first = parts[spec.name][0]["file"] if parts[spec.name] else None
        if first is not None and not read_schema(location, first).equals(spec.schema):
            raise UnreadableDataset(f"{location.show(first)}: {spec.name} does not have the schema this version "
                                    f"writes")
    return specs, parts


@dataclass(frozen=True)
class World:
    """A compiled program and the parameters and switches of one world (factual or not)."""

    program: Program
    params: Params
    intercepts: dict[str, float]
    do: dict[str, float]
    intervention: Intervention


def prepare_world(config: Config, intervention: Intervention | None = None,
                  intercepts: dict[str, float] | None = None,
                  progress: Progress | None = None, program: Program | None = None) -> World:
    """Compile, validate the intervention, calibrate on the factual config, then shift priors.

    Soft interventions apply after calibration, so a variant moves rates
    through its mechanisms instead of being recalibrated back to the targets.
    ``program`` is ``config``'s, when the caller already has it.
    """
    progress = progress or Progress()
    intervention = intervention or Intervention()
    shifted = config.with_overrides(soft_overrides(config, intervention), source=f"variant {intervention.name}: set")
    if program is None:
        progress.on_stage("compiling the model")
        program = Program(config)
    do = encode_do(program, intervention.do)
    if intercepts is None:
        progress.on_stage("calibrating intercepts")
        intercepts = calibrate(program)
    return World(program=program, params=with_intercepts(shifted.params, intercepts),
                 intercepts=intercepts, do=do, intervention=intervention)


def sample_twin(*, factual_dir: str | Path, intervention: Intervention, out: str | Path,
                force: bool = False, progress: Progress | None = None, workers: int | None = None,
                scheduler: str | None = None, cluster: ClusterStart | None = None) -> dict[str, Any]:
    """The twin of a factual dataset under ``intervention``: same seed, config, size and keys."""
    factual = locate(factual_dir)
    data = manifest_bytes_at(factual)
    manifest = parse_manifest(factual, data)
    model = manifest["model"]
    config = dataset_config(factual_dir, manifest)
    if (config.model.NAME, config.model.VERSION) != (model["name"], model["version"]):
        raise ConfigError(f"{factual_dir}: sampled with model {model['name']} {model['version']}, but this "
                          f"installation has {config.model.NAME} {config.model.VERSION}; its twin would "
                          f"not share its mechanisms")
    base = Intervention(**manifest["intervention"])
    return sample_dataset(
        config=config, n_prs=manifest["n_prs"], seed=manifest["seed"], out=out, force=force,
        intervention=base.merged(intervention), intercepts=manifest["calibration"]["intercepts"],
        factual={"path": factual.absolute, "manifest_sha256": hashlib.sha256(data).hexdigest()},
        progress=progress, workers=workers, scheduler=scheduler, cluster=cluster)


# What a manifest must hold for the code that reads it: key -> (type, what it is).
MANIFEST_KEYS: dict[str, tuple[type | tuple[type, ...], str]] = {
    "model": (dict, "an object with name and version"),
    "seed": (int, "an integer"),
    "n_prs": (int, "an integer"),
    "config": (dict, "an object (the resolved config)"),
    "intervention": (dict, "an object with name, do and set"),
    "calibration": (dict, "an object with intercepts"),
    "tables": (dict, "an object: table name -> its entry"),
}
_COMMON_TABLE_KEYS: dict[str, tuple[type | tuple[type, ...], str]] = {
    "rows": (int, "an integer"),
    "key": (str, "a column name"),
    "parent": ((dict, type(None)), "an object with table and key, or null"),
    "schema": (list, "a list of columns"),
}
# Each table's entry, by format version: version 1 has one file per table, version 2 a list of parts.
TABLE_KEYS: dict[int, dict[str, tuple[type | tuple[type, ...], str]]] = {
    1: {"file": ((str, type(None)), "a file name or null"), **_COMMON_TABLE_KEYS,
        "sha256": ((str, type(None)), "a hex digest or null")},
    2: {**_COMMON_TABLE_KEYS, "parts": ((list, type(None)), "a list of parts or null")},
}
PART_KEYS: dict[str, tuple[type | tuple[type, ...], str]] = {
    "file": (str, "a file name"),
    "first_row": (int, "an integer"),
    "rows": (int, "an integer"),
    "sha256": (str, "a hex digest"),
}
INNER_KEYS = {"model": ("name", "version"), "intervention": ("name", "do", "set"), "calibration": ("intercepts",)}
INTERVENTION_KEYS = ("name", "description", "do", "set")


def _json_kind(value: Any) -> str:
    return {dict: "an object", list: "a list", str: "a string", bool: "a boolean", int: "an integer",
            float: "a number", type(None): "null"}.get(type(value), type(value).__name__)


def _typed(value: Any, kind: type | tuple[type, ...]) -> bool:
    kinds = kind if isinstance(kind, tuple) else (kind,)
    return isinstance(value, kinds) and not (isinstance(value, bool) and bool not in kinds)


def _entry_problems(where: str, entry: Any, keys: dict[str, tuple[type | tuple[type, ...], str]]) -> list[str]:
    if not isinstance(entry, dict):
        return [f"{where}: expected an object, got {_json_kind(entry)}"]
    lacking = [k for k in keys if k not in entry]
    if lacking:
        return [f"{where}: missing key{'s' * (len(lacking) > 1)} {', '.join(lacking)}"]
    return [f"{where}.{key}: expected {what}, got {_json_kind(entry[key])}"
            for key, (kind, what) in keys.items() if not _typed(entry[key], kind)]


def _manifest_problems(manifest: Any) -> list[str]:
    """What keeps ``manifest`` from being read as a dataset's manifest (empty: nothing)."""
    if not isinstance(manifest, dict):
        return [f"expected a JSON object (a causalsynth manifest), got {_json_kind(manifest)}"]
    if manifest.get("format", FORMAT) != FORMAT:
        return [f"format: {manifest['format']!r} is not a causalsynth dataset ({FORMAT!r})"]
    version = manifest.get("format_version", 1)
    if not _typed(version, int) or version < 1:
        return [f"format_version: expected a positive integer, got {version!r}"]
    if version > FORMAT_VERSION:
        return [f"format_version {version}: written by a newer causalsynth; this one reads versions 1 to "
                f"{FORMAT_VERSION}"]
    missing = [k for k in MANIFEST_KEYS if k not in manifest]
    if missing:
        return [f"missing key{'s' * (len(missing) > 1)} {', '.join(missing)}"]
    problems = [f"{key}: expected {what}, got {_json_kind(manifest[key])}"
                for key, (kind, what) in MANIFEST_KEYS.items() if not _typed(manifest[key], kind)]
    if problems:
        return problems
    for key, inner in INNER_KEYS.items():
        lacking = [k for k in inner if k not in manifest[key]]
        if lacking:
            problems.append(f"{key}: missing key{'s' * (len(lacking) > 1)} {', '.join(lacking)}")
    intervention = manifest["intervention"]
    unknown = [k for k in intervention if k not in INTERVENTION_KEYS]
    if unknown:
        problems.append(f"intervention: unknown key{'s' * (len(unknown) > 1)} {', '.join(map(str, unknown))}; "
                        f"allowed: {', '.join(INTERVENTION_KEYS)}")
    for key in ("do", "set"):
        if key in intervention and not isinstance(intervention[key], dict):
            problems.append(f"intervention.{key}: expected an object, got {_json_kind(intervention[key])}")
    if "intercepts" in manifest["calibration"] and not isinstance(manifest["calibration"]["intercepts"], dict):
        problems.append("calibration.intercepts: expected an object, got "
                        f"{_json_kind(manifest['calibration']['intercepts'])}")
    if not manifest["tables"]:
        problems.append("tables: no tables")
    for name, entry in manifest["tables"].items():
        where = f"tables.{name}"
        found = _entry_problems(where, entry, TABLE_KEYS[version])
        problems += found
        if found:
            continue
        parent = entry["parent"]
        if isinstance(parent, dict) and not {"table", "key"} <= set(parent):
            problems.append(f"{where}.parent: expected an object with table and key")
        elif isinstance(parent, dict) and parent["table"] not in manifest["tables"]:
            problems.append(f"{where}.parent: no table {parent['table']!r} in the manifest")
        if version == 1:
            problems += _path_problems(f"{where}.file", entry["file"], None) if entry["file"] else []
            continue
        parts = entry["parts"] or []
        for i, part in enumerate(parts):
            problems += _entry_problems(f"{where}.parts[{i}]", part, PART_KEYS)
        if not problems:
            problems += _parts_problems(where, name, entry["rows"], parts)
    return problems


def _path_problems(where: str, file: str, table: str | None) -> list[str]:
    """A part's file must be a plain relative path inside its table's directory (format version 1: inside
    the dataset, ``table`` None): nothing outside the dataset is ever read."""
    path = PurePosixPath(file)
    outside = path.is_absolute() or "\\" in file or ".." in path.parts or not path.parts
    if outside or (table is not None and (len(path.parts) < 2 or path.parts[0] != table)):
        return [f"{where}: {file!r} is not a file inside the dataset" + (f"'s {table}/ directory" if table else "")]
    return []


def _parts_problems(where: str, table: str, rows: int, parts: list[dict[str, Any]]) -> list[str]:
    """The parts of one table: each file once, inside the table's directory, row ranges end to end from 0."""
    problems = [p for i, part in enumerate(parts) for p in _path_problems(f"{where}.parts[{i}].file",
                                                                           part["file"], table)]
    files = [part["file"] for part in parts]
    twice = sorted({f for f in files if files.count(f) > 1})
    if twice:
        problems.append(f"{where}.parts: {', '.join(twice)} listed more than once")
    start = 0
    for i, part in enumerate(parts):
        if part["rows"] < 0 or part["first_row"] != start:
            problems.append(f"{where}.parts[{i}]: rows {part['first_row']:,} to {part['first_row'] + part['rows']:,} "
                            f"{'overlap' if part['first_row'] < start else 'leave a gap after'} the rows before "
                            f"(which end at {start:,})")
            break
        start += part["rows"]
    else:
        if start != rows:
            problems.append(f"{where}: its parts hold {start:,} rows; the table's rows say {rows:,}")
    return problems


def _as_current(manifest: dict[str, Any]) -> dict[str, Any]:
    """A checked manifest in the current format: a version-1 table's one file becomes its one part."""
    if manifest.get("format_version", 1) >= 2:
        return manifest
    tables = {}
    for name, entry in manifest["tables"].items():
        entry = dict(entry)
        file, digest = entry.pop("file"), entry.pop("sha256")
        entry["parts"] = None if file is None else [{"file": file, "first_row": 0, "rows": entry["rows"],
                                                     "sha256": digest}]
        tables[name] = entry
    return manifest | {"tables": tables}


def read_manifest(directory: str | Path) -> dict[str, Any]:
    """The manifest of the dataset at ``directory`` (a path or URL), checked for what the code reads.

    Raises ``UnreadableDataset`` (one line naming the file and what is wrong)
    when the directory is missing or not a directory, the manifest is missing,
    unreadable, not JSON, not an object, or lacks a key the code reads. A
    version-1 manifest is returned in the current format.
    """
    location = locate(directory)
    return parse_manifest(location, manifest_bytes_at(location))


def manifest_bytes_at(location: Location) -> bytes:
    """The manifest file's bytes, as written (what a load or a twin records the SHA-256 of)."""
    try:
        if not location.exists():
            raise UnreadableDataset(f"{location.url}: not a causalsynth dataset (no such directory)")
        if not location.is_dir():
            raise UnreadableDataset(f"{location.url}: not a causalsynth dataset (not a directory)")
        return location.read_bytes(MANIFEST)
    except FileNotFoundError:
        raise UnreadableDataset(f"{location.url}: not a causalsynth dataset (no {MANIFEST})") from None
    except IsADirectoryError:
        raise UnreadableDataset(f"{location.show(MANIFEST)}: cannot be read: is a directory") from None
    except OSError as exc:
        raise UnreadableDataset(f"{location.show(MANIFEST)}: cannot be read: {exc.strerror or one_line(exc)}") from None
    except UnreadableDataset:
        raise
    except Exception as exc:  # noqa: BLE001 - a store's own errors (unreachable, no credentials) are not OSError
        raise UnreadableDataset(f"{location.show(MANIFEST)}: cannot be read: {one_line(exc)}") from None


def parse_manifest(location: Location, data: bytes) -> dict[str, Any]:
    """``data`` as a checked manifest of the dataset at ``location``, in the current format."""
    try:
        manifest = json.loads(data)
    except UnicodeDecodeError:
        raise UnreadableDataset(f"{location.show(MANIFEST)}: not valid JSON: not UTF-8 text") from None
    except json.JSONDecodeError as exc:
        raise UnreadableDataset(f"{location.show(MANIFEST)}: not valid JSON: {exc.msg} at line {exc.lineno}, "
                                f"column {exc.colno}") from None
    problems = _manifest_problems(manifest)
    if problems:
        raise UnreadableDataset(f"{location.show(MANIFEST)}: " + "; ".join(problems))
    return _as_current(manifest)


def dataset_config(directory: str | Path, manifest: dict[str, Any]) -> Config:
    """The dataset's resolved config, validated; a bad one is the manifest's fault.

    A plug-in model is loaded only where the user named it (``plugins.trusted_model``):
    reading a dataset never imports the code its manifest names."""
    data = manifest["config"]
    try:
        spec = data.get("model") if isinstance(data, dict) else None
        if isinstance(spec, str) and plugins.is_path(spec):
            data = data | {"model": plugins.trusted_model(spec, manifest["model"].get("sha256"))}
        return load_config(data=data)
    except ConfigError as exc:
        raise UnreadableDataset(f"{locate(directory).show(MANIFEST)}: {exc}") from None


def table_parts(location: Location, manifest: dict[str, Any]) -> dict[str, list[dict[str, Any]]]:
    """Each table's parts (manifest entries), after checking that each is there and its footer can be read.

    Raises ``UnreadableDataset`` naming the file: a table written to a
    database only, a missing part, or one that is not readable Parquet
    (truncated, overwritten).
    """
    out = {}
    for name, entry in manifest["tables"].items():
        if entry["parts"] is None:
            raise UnreadableDataset(f"{location.url}: table {name} has no files (the dataset went to a "
                                    f"database only)")
        for part in entry["parts"]:
            if not location.is_file(part["file"]):
                what = "not a file" if location.exists(part["file"]) else "missing"
                raise UnreadableDataset(f"{location.show(part['file'])}: {what} (the manifest lists it as part "
                                        f"of table {name})")
            read_schema(location, part["file"])
        out[name] = entry["parts"]
    return out


def read_schema(location: Location, relative: str) -> pa.Schema:
    """The Arrow schema in a Parquet file's footer; ``UnreadableDataset`` when it cannot be read."""
    try:
        return location.parquet(relative).schema_arrow
    except (OSError, pa.ArrowException) as exc:
        raise unreadable(location, relative, exc) from None
