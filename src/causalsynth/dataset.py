"""Sample a dataset end to end: calibrate, sample blocks, tabulate, write, manifest."""

from __future__ import annotations

import hashlib
import json
from collections.abc import Callable
from contextlib import ExitStack
from dataclasses import dataclass, field
from importlib import metadata
from pathlib import Path
from typing import Any

import jax
import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.parquet as pq

from causalsynth.config import MAX_SEED, Config, load_config
from causalsynth.errors import ConfigError, UnreadableDataset, one_line
from causalsynth.graph import model_graph
from causalsynth.interventions import Intervention, encode_do, soft_overrides
from causalsynth.params import Params
from causalsynth.program import Program
from causalsynth.sampling import calibrate, sample_blocks, with_intercepts
from causalsynth.sinks import Sink, TableSpec
from causalsynth.sinks.parquet import ParquetSink
from causalsynth.sinks.sql import SqlSink, check_options
from causalsynth.staging import deferred_interrupts, staged_directory
from causalsynth.tabulate import schemas, start_epoch_ms, tabulate

MANIFEST = "manifest.json"
FORMAT = "causalsynth-dataset"
FORMAT_VERSION = 1
LOAD_BATCH_ROWS = 500_000


@dataclass
class Progress:
    """Callbacks for long work; the CLI draws them, tests ignore them."""

    on_stage: Callable[[str], None] = lambda stage: None
    on_start: Callable[[int], None] = lambda n_blocks: None
    on_block: Callable[[int], None] = lambda rows: None


def parse_column(ref: str) -> tuple[str, str, str | None]:
    """"table.column" or "table.column=LEVEL" → (table, column, level)."""
    where, _, level = ref.partition("=")
    table, _, column = where.partition(".")
    return table, column, level or None


def true_count(column: pa.Array, level: str | None = None) -> int:
    """Rows that are true (a boolean column) or equal ``level`` (a dictionary column)."""
    if level is None:
        return int(pc.sum(column).as_py() or 0)
    return int(pc.sum(pc.equal(column.dictionary_decode(), level)).as_py() or 0)


@dataclass
class Headcount:
    """Rows per table and headline counts, accumulated batch by batch."""

    rows: dict[str, int] = field(default_factory=dict)
    hits: dict[str, int] = field(default_factory=dict)

    def add(self, program: Program, batches: dict[str, pa.RecordBatch]) -> int:
        for table, batch in batches.items():
            self.rows[table] = self.rows.get(table, 0) + batch.num_rows
        for m in program.model.MARGINALS:
            if m.headline:
                table, column, level = parse_column(m.column)
                self.hits[m.headline] = self.hits.get(m.headline, 0) + true_count(
                    batches[table].column(column), level)
        return sum(b.num_rows for b in batches.values())

    def headlines(self, program: Program) -> list[dict[str, Any]]:
        return [
            {"title": m.headline, "column": m.column,
             "observed": self.hits[m.headline] / max(self.rows[parse_column(m.column)[0]], 1),
             "target": float(program.config.get(m.target))}
            for m in program.model.MARGINALS if m.headline
        ]


def package_version() -> str:
    try:
        return metadata.version("causalsynth")
    except metadata.PackageNotFoundError:
        return "0+unknown"


def sha256(path: Path) -> str:
    digest = hashlib.sha256()
    with open(path, "rb") as f:
        for chunk in iter(lambda: f.read(1 << 20), b""):
            digest.update(chunk)
    return digest.hexdigest()


def _schema_json(schema: pa.Schema, layout) -> list[dict[str, Any]]:
    """Each column's name and Arrow type, with the levels of categorical ones."""
    levels = {c.name: list(c.levels) for c in layout.columns if c.levels}
    return [{"name": f.name, "type": str(f.type)} | ({"levels": levels[f.name]} if f.name in levels else {})
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
) -> dict[str, Any]:
    """Sample ``n_prs`` PRs and all their child rows; return the manifest.

    Writes Parquet into ``out`` and/or loads straight into the database
    ``db`` (a SQLAlchemy URL), streaming blocks to both. Nothing becomes
    visible until everything succeeded: ``out`` is published from a staging
    directory, the database load is one transaction. The dataset is a
    function of (config, seed, n_prs, intervention): byte-identical on every
    run. ``intercepts`` reuses solved calibration intercepts (a twin takes its
    factual dataset's); ``factual`` names that dataset in the manifest.
    """
    check_size(n_prs, seed)
    if out is None and db is None:
        raise ConfigError("give --out DIR (Parquet) and/or --db URL (a database)")
    if db is not None:
        check_options(db, db_schema, if_exists)
    progress = progress or Progress()
    with ExitStack() as stack:
        sinks: list[Sink] = []
        staging = None
        if out is not None:
            staging = stack.enter_context(staged_directory(Path(out), force=force))
            sinks.append(ParquetSink(staging))
        if db is not None:
            sinks.append(SqlSink(db, schema=db_schema, if_exists=if_exists))
        checkpoint = stack.enter_context(deferred_interrupts())
        try:
            world = prepare_world(config, intervention, intercepts, progress)
            checkpoint()
            program = world.program
            specs = table_specs(program)
            schema_by_table = {t.name: t.schema for t in specs}
            start_ms = start_epoch_ms(config.sampling["start"])
            for sink in sinks:
                sink.open(specs)
            count = Headcount()
            progress.on_start(-(-n_prs // program.block_prs))
            for block in sample_blocks(program, world.params, seed, n_prs, do=world.do):
                batches = tabulate(program, block, start_ms, schema_by_table)
                for table, batch in batches.items():
                    for sink in sinks:
                        sink.write(table, batch)
                progress.on_block(count.add(program, batches))
                checkpoint()
            files: dict[str, Path] = {}
            for sink in sinks:
                files |= sink.close()
            progress.on_stage("writing manifest")
            manifest = _manifest(world, config, seed, n_prs, specs, count, files, factual)
            data = manifest_bytes(manifest)
            if staging is not None:
                (staging / MANIFEST).write_bytes(data)
            for sink in sinks:
                sink.commit(data)
        except BaseException:
            for sink in sinks:
                sink.abort()
            raise
    return manifest


def check_size(n_prs: int, seed: int) -> None:
    """Refuse a non-positive ``--n-prs`` or a seed outside [0, 2**32 - 1] before any work."""
    if n_prs < 1:
        raise ConfigError(f"--n-prs: must be a positive number of pull requests, got {n_prs}")
    check_seed(seed, "--seed")


def check_seed(seed: int, option: str) -> None:
    if not 0 <= seed <= MAX_SEED:
        raise ConfigError(f"{option}: must be a whole number in [0, {MAX_SEED}], got {seed}")


def _manifest(world, config, seed, n_prs, specs, count, files, factual) -> dict[str, Any]:
    program = world.program
    return {
        "format": "causalsynth-dataset",
        "format_version": FORMAT_VERSION,
        "package_version": package_version(),
        "model": {"name": config.model.NAME, "version": config.model.VERSION},
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
                "file": files[spec.name].name if spec.name in files else None,
                "rows": count.rows.get(spec.name, 0),
                "key": spec.key,
                "parent": None if spec.parent is None else {"table": spec.parent[0], "key": spec.parent[1]},
                "sha256": sha256(files[spec.name]) if spec.name in files else None,
                "schema": _schema_json(spec.schema, program.table(spec.name)),
            }
            for spec in specs
        },
        "headlines": count.headlines(program),
        "graph": {"edges": [list(e) for e in model_graph(program).edges]},
    }


def load_dataset(*, directory: str | Path, db: str, schema: str | None = None, if_exists: str = "fail",
                 progress: Progress | None = None) -> dict[str, int]:
    """Load a Parquet dataset into the database ``db``, all or nothing; return rows per table.

    The files are checked against the manifest's checksums first, and the
    load is recorded under the manifest's SHA-256.
    """
    progress = progress or Progress()
    check_options(db, schema, if_exists)
    directory = Path(directory)
    manifest = read_manifest(directory)
    data = (directory / MANIFEST).read_bytes()
    # The files are checked before the database is touched: a dataset that cannot be loaded
    # leaves no trace there (not even a new SQLite file).
    specs = _checked_specs(directory, manifest, progress)
    sink = SqlSink(db, schema=schema, if_exists=if_exists, manifest_sha256=hashlib.sha256(data).hexdigest())
    with deferred_interrupts() as checkpoint:
        try:
            sink.open(specs)
            files = [pq.ParquetFile(directory / manifest["tables"][s.name]["file"]) for s in specs]
            progress.on_start(sum(f.metadata.num_row_groups for f in files))
            for spec, file in zip(specs, files):
                for group in range(file.metadata.num_row_groups):
                    table = file.read_row_group(group)
                    for batch in table.to_batches(max_chunksize=LOAD_BATCH_ROWS):
                        sink.write(spec.name, batch)
                    progress.on_block(table.num_rows)
                    checkpoint()
            sink.close()
            sink.commit(data)
        except BaseException:
            sink.abort()
            raise
    return dict(sink.rows)


def _checked_specs(directory: Path, manifest: dict[str, Any], progress: Progress) -> list[TableSpec]:
    """The dataset's table specs, after checking its config, and its files against the manifest."""
    config = dataset_config(directory, manifest)
    paths = table_paths(directory, manifest)
    for name, path in paths.items():
        progress.on_stage(f"checking {path.name}")
        if sha256(path) != manifest["tables"][name]["sha256"]:
            raise UnreadableDataset(f"{path}: changed since it was written (its SHA-256 differs from the "
                                    f"manifest's)")
    specs = table_specs(Program(config))
    for spec in specs:
        if spec.name not in paths:
            raise UnreadableDataset(f"{directory / MANIFEST}: tables: no table {spec.name}, which this "
                                    f"version writes")
        if not read_schema(paths[spec.name]).equals(spec.schema):
            raise UnreadableDataset(f"{paths[spec.name]}: {spec.name} does not have the schema this version "
                                    f"writes")
    return specs


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
                force: bool = False, progress: Progress | None = None) -> dict[str, Any]:
    """The twin of a factual dataset under ``intervention``: same seed, config, size and keys."""
    factual_dir = Path(factual_dir)
    manifest = read_manifest(factual_dir)
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
        factual={"path": str(factual_dir.absolute()), "manifest_sha256": sha256(factual_dir / MANIFEST)},
        progress=progress)


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
TABLE_KEYS: dict[str, tuple[type | tuple[type, ...], str]] = {
    "file": ((str, type(None)), "a file name or null"),
    "rows": (int, "an integer"),
    "key": (str, "a column name"),
    "parent": ((dict, type(None)), "an object with table and key, or null"),
    "sha256": ((str, type(None)), "a hex digest or null"),
    "schema": (list, "a list of columns"),
}
INNER_KEYS = {"model": ("name", "version"), "intervention": ("name", "do", "set"), "calibration": ("intercepts",)}
INTERVENTION_KEYS = ("name", "description", "do", "set")


def _json_kind(value: Any) -> str:
    return {dict: "an object", list: "a list", str: "a string", bool: "a boolean", int: "an integer",
            float: "a number", type(None): "null"}.get(type(value), type(value).__name__)


def _typed(value: Any, kind: type | tuple[type, ...]) -> bool:
    kinds = kind if isinstance(kind, tuple) else (kind,)
    return isinstance(value, kinds) and not (isinstance(value, bool) and bool not in kinds)


def _manifest_problems(manifest: Any) -> list[str]:
    """What keeps ``manifest`` from being read as a dataset's manifest (empty: nothing)."""
    if not isinstance(manifest, dict):
        return [f"expected a JSON object (a causalsynth manifest), got {_json_kind(manifest)}"]
    if manifest.get("format", FORMAT) != FORMAT:
        return [f"format: {manifest['format']!r} is not a causalsynth dataset ({FORMAT!r})"]
    version = manifest.get("format_version", FORMAT_VERSION)
    if _typed(version, int) and version > FORMAT_VERSION:
        return [f"format_version {version}: written by a newer causalsynth; this one reads version "
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
        if not isinstance(entry, dict):
            problems.append(f"{where}: expected an object, got {_json_kind(entry)}")
            continue
        lacking = [k for k in TABLE_KEYS if k not in entry]
        if lacking:
            problems.append(f"{where}: missing key{'s' * (len(lacking) > 1)} {', '.join(lacking)}")
            continue
        problems += [f"{where}.{key}: expected {what}, got {_json_kind(entry[key])}"
                     for key, (kind, what) in TABLE_KEYS.items() if not _typed(entry[key], kind)]
        parent = entry["parent"]
        if isinstance(parent, dict) and not {"table", "key"} <= set(parent):
            problems.append(f"{where}.parent: expected an object with table and key")
        elif isinstance(parent, dict) and parent["table"] not in manifest["tables"]:
            problems.append(f"{where}.parent: no table {parent['table']!r} in the manifest")
    return problems


def read_manifest(directory: str | Path) -> dict[str, Any]:
    """The manifest of the dataset in ``directory``, checked for what the code reads.

    Raises ``UnreadableDataset`` (one line naming the file and what is wrong)
    when the directory is missing or not a directory, the manifest is missing,
    unreadable, not JSON, not an object, or lacks a key the code reads.
    """
    directory = Path(directory)
    path = directory / MANIFEST
    if not directory.exists():
        raise UnreadableDataset(f"{directory}: not a causalsynth dataset (no such directory)")
    if not directory.is_dir():
        raise UnreadableDataset(f"{directory}: not a causalsynth dataset (not a directory)")
    try:
        data = path.read_bytes()
    except FileNotFoundError:
        raise UnreadableDataset(f"{directory}: not a causalsynth dataset (no {MANIFEST})") from None
    except OSError as exc:
        raise UnreadableDataset(f"{path}: cannot be read: {exc.strerror}") from None
    try:
        manifest = json.loads(data)
    except UnicodeDecodeError:
        raise UnreadableDataset(f"{path}: not valid JSON: not UTF-8 text") from None
    except json.JSONDecodeError as exc:
        raise UnreadableDataset(f"{path}: not valid JSON: {exc.msg} at line {exc.lineno}, "
                                f"column {exc.colno}") from None
    problems = _manifest_problems(manifest)
    if problems:
        raise UnreadableDataset(f"{path}: " + "; ".join(problems))
    return manifest


def dataset_config(directory: str | Path, manifest: dict[str, Any]) -> Config:
    """The dataset's resolved config, validated; a bad one is the manifest's fault."""
    try:
        return load_config(data=manifest["config"])
    except ConfigError as exc:
        raise UnreadableDataset(f"{Path(directory) / MANIFEST}: {exc}") from None


def table_paths(directory: str | Path, manifest: dict[str, Any]) -> dict[str, Path]:
    """Each table's Parquet file, after checking that it is there and its footer can be read.

    Raises ``UnreadableDataset`` naming the file: a table written to a
    database only, a missing file, or one that is not readable Parquet
    (truncated, overwritten).
    """
    directory = Path(directory)
    paths = {}
    for name, entry in manifest["tables"].items():
        if entry["file"] is None:
            raise UnreadableDataset(f"{directory}: table {name} has no file (the dataset went to a database only)")
        path = directory / entry["file"]
        if not path.is_file():
            what = "not a file" if path.exists() else "missing"
            raise UnreadableDataset(f"{path}: {what} (the manifest lists it as table {name})")
        read_schema(path)
        paths[name] = path
    return paths


def read_schema(path: Path) -> pa.Schema:
    """The Arrow schema in a Parquet file's footer; ``UnreadableDataset`` when it cannot be read."""
    try:
        return pq.read_schema(path)
    except (OSError, pa.ArrowException) as exc:
        raise UnreadableDataset(f"{path}: not readable Parquet ({one_line(exc)})") from None
