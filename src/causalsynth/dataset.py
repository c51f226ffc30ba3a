"""Sample a dataset end to end: calibrate, sample blocks, tabulate, write, manifest."""

from __future__ import annotations

import hashlib
import json
from collections.abc import Callable
from dataclasses import dataclass, field
from importlib import metadata
from pathlib import Path
from typing import Any

import jax
import numpy as np
import pyarrow as pa

from causalsynth.config import Config, load_config
from causalsynth.errors import ConfigError
from causalsynth.graph import model_graph
from causalsynth.interventions import Intervention, encode_do, soft_overrides
from causalsynth.params import Params
from causalsynth.program import Program
from causalsynth.sampling import calibrate, sample_blocks, with_intercepts
from causalsynth.sinks import Sink
from causalsynth.sinks.parquet import ParquetSink
from causalsynth.staging import deferred_interrupts, staged_directory
from causalsynth.tabulate import schemas, start_epoch_ms, tabulate

MANIFEST = "manifest.json"
FORMAT_VERSION = 1


@dataclass
class Progress:
    """Callbacks for long work; the CLI draws them, tests ignore them."""

    on_stage: Callable[[str], None] = lambda stage: None
    on_start: Callable[[int], None] = lambda n_blocks: None
    on_block: Callable[[int], None] = lambda rows: None


@dataclass
class Headcount:
    """Rows per table and headline counts, accumulated batch by batch."""

    rows: dict[str, int] = field(default_factory=dict)
    hits: dict[str, int] = field(default_factory=dict)

    def add(self, program: Program, batches: dict[str, pa.RecordBatch]) -> int:
        for table, batch in batches.items():
            self.rows[table] = self.rows.get(table, 0) + batch.num_rows
        for h in program.model.HEADLINES:
            column = batches[h.table].column(h.column)
            if h.level is None:
                hits = int(np.count_nonzero(column.to_numpy(zero_copy_only=False)))
            else:
                code = column.dictionary.to_pylist().index(h.level)
                hits = int(np.count_nonzero(column.indices.to_numpy() == code))
            self.hits[h.title] = self.hits.get(h.title, 0) + hits
        return sum(b.num_rows for b in batches.values())

    def headlines(self, program: Program) -> list[dict[str, Any]]:
        return [
            {"title": h.title, "table": h.table, "column": h.column, "level": h.level,
             "observed": self.hits[h.title] / max(self.rows[h.table], 1),
             "target": float(program.config.get(h.target))}
            for h in program.model.HEADLINES
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


def sample_dataset(
    *,
    config: Config,
    n_prs: int,
    seed: int,
    out: str | Path,
    force: bool = False,
    intervention: Intervention | None = None,
    intercepts: dict[str, float] | None = None,
    factual: dict[str, Any] | None = None,
    sink: Sink | None = None,
    progress: Progress | None = None,
) -> dict[str, Any]:
    """Sample ``n_prs`` PRs and all their child rows into ``out``; return the manifest.

    ``out`` appears only when complete (see ``staging``). The dataset is a
    function of (config, seed, n_prs, intervention): byte-identical on every
    run. ``intercepts`` reuses solved calibration intercepts (a twin takes its
    factual dataset's); ``factual`` names that dataset in the manifest.
    """
    if n_prs < 1:
        raise ConfigError(f"--n-prs: must be a positive number of pull requests, got {n_prs}")
    progress = progress or Progress()
    sink = sink or ParquetSink()
    out = Path(out)
    with staged_directory(out, force=force) as staging, deferred_interrupts() as checkpoint:
        world = prepare_world(config, intervention, intercepts, progress)
        checkpoint()
        program = world.program
        table_schemas = schemas(program)
        start_ms = start_epoch_ms(config.sampling["start"])
        sink.open(staging, table_schemas)
        count = Headcount()
        progress.on_start(-(-n_prs // program.block_prs))
        for block in sample_blocks(program, world.params, seed, n_prs, do=world.do):
            batches = tabulate(program, block, start_ms, table_schemas)
            for table, batch in batches.items():
                sink.write(table, batch)
            progress.on_block(count.add(program, batches))
            checkpoint()
        files = sink.close()
        progress.on_stage("writing manifest")
        manifest = {
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
                layout.table.name: {
                    "file": files[layout.table.name].name,
                    "rows": count.rows.get(layout.table.name, 0),
                    "key": layout.table.key,
                    "parent": None if layout.parent is None else
                    {"table": layout.parent.name, "key": layout.parent.key},
                    "sha256": sha256(files[layout.table.name]),
                    "schema": _schema_json(table_schemas[layout.table.name], layout),
                }
                for layout in program.tables
            },
            "headlines": count.headlines(program),
            "graph": {"edges": [list(e) for e in model_graph(program).edges]},
        }
        (staging / MANIFEST).write_text(json.dumps(manifest, indent=2, sort_keys=False) + "\n")
    return manifest


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
