"""`causalsynth load`: a dataset's parts into a database, checked first, all or nothing."""

from __future__ import annotations

import hashlib
from collections.abc import Callable
from pathlib import Path
from typing import Any

from causalsynth.dataset.location import Location, locate
from causalsynth.dataset.manifest import (
    MANIFEST,
    dataset_config,
    manifest_bytes_at,
    parse_manifest,
    read_schema,
    table_parts,
)
from causalsynth.dataset.reading import read_part
from causalsynth.dataset.staging import deferred_interrupts
from causalsynth.engine.program import Program
from causalsynth.engine.world import Progress
from causalsynth.errors import UnreadableDataset
from causalsynth.sinks import Sink, TableSpec, table_specs

LOAD_BATCH_ROWS = 500_000


def stream_parts(location: Location, parts: dict[str, list[dict[str, Any]]], sink: Sink, progress: Progress,
                 checkpoint: Callable[[], None] = lambda: None) -> None:
    """Every part of every table, in row order, to ``sink`` in batches of at most ``LOAD_BATCH_ROWS``."""
    for table, listed in parts.items():
        for index, part in enumerate(listed):
            rows = read_part(location, part)
            for batch in rows.to_batches(max_chunksize=LOAD_BATCH_ROWS):
                sink.write(table, batch, index)
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

