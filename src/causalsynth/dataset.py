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

from causalsynth.config import Config, load_config
from causalsynth.errors import ConfigError
from causalsynth.graph import model_graph
from causalsynth.interventions import Intervention, encode_do, soft_overrides
from causalsynth.params import Params
from causalsynth.program import Program
from causalsynth.sampling import calibrate, sample_blocks, with_intercepts
from causalsynth.sinks import Sink, TableSpec
from causalsynth.sinks.parquet import ParquetSink
from causalsynth.sinks.sql import SqlSink
from causalsynth.staging import deferred_interrupts, staged_directory
from causalsynth.tabulate import schemas, start_epoch_ms, tabulate

MANIFEST = "manifest.json"
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
    if n_prs < 1:
        raise ConfigError(f"--n-prs: must be a positive number of pull requests, got {n_prs}")
    if out is None and db is None:
        raise ConfigError("give --out DIR (Parquet) and/or --db URL (a database)")
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
    directory = Path(directory)
    manifest = read_manifest(directory)
    data = (directory / MANIFEST).read_bytes()
    sink = SqlSink(db, schema=schema, if_exists=if_exists, manifest_sha256=hashlib.sha256(data).hexdigest())
    with deferred_interrupts() as checkpoint:
        try:
            specs = _checked_specs(directory, manifest, progress)
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
    """The dataset's table specs, after checking its files against the manifest."""
    for name, entry in manifest["tables"].items():
        if entry["file"] is None:
            raise ConfigError(f"{directory}: table {name} has no file (the dataset went to a database only)")
        progress.on_stage(f"checking {entry['file']}")
        if not (directory / entry["file"]).is_file() or sha256(directory / entry["file"]) != entry["sha256"]:
            raise ConfigError(f"{directory / entry['file']}: missing or changed since it was written "
                              f"(its SHA-256 differs from the manifest's)")
    specs = table_specs(Program(load_config(data=manifest["config"])))
    for spec in specs:
        found = pq.read_schema(directory / manifest["tables"][spec.name]["file"])
        if not found.equals(spec.schema):
            raise ConfigError(f"{directory}: {spec.name} does not have the schema this version writes")
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
                  progress: Progress | None = None) -> World:
    """Compile, validate the intervention, calibrate on the factual config, then shift priors.

    Soft interventions apply after calibration, so a variant moves rates
    through its mechanisms instead of being recalibrated back to the targets.
    """
    progress = progress or Progress()
    intervention = intervention or Intervention()
    progress.on_stage("compiling the model")
    program = Program(config)
    do = encode_do(program, intervention.do)
    shifted = config.with_overrides(soft_overrides(config, intervention))
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
    config = load_config(data=manifest["config"])
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


def read_manifest(directory: str | Path) -> dict[str, Any]:
    path = Path(directory) / MANIFEST
    try:
        return json.loads(path.read_text())
    except FileNotFoundError:
        raise ConfigError(f"{directory}: not a causalsynth dataset (no {MANIFEST})") from None
