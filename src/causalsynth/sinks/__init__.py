"""Output formats behind one interface.

A dataset job opens every sink with the tables' specs, streams each block's
record batches to all of them, closes them (data complete), builds the
manifest, and then commits them, or aborts them all if anything failed. A
sink makes nothing visible before ``commit``: the Parquet sink writes into a
staging directory that the job publishes; the SQL sink loads inside one
transaction.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import Protocol

import pyarrow as pa


@dataclass(frozen=True)
class TableSpec:
    """One table as a sink sees it: Arrow schema, keys and the data dictionary."""

    name: str
    schema: pa.Schema
    key: str
    parent: tuple[str, str] | None = None  # (parent table, its key: also this table's column)
    descriptions: dict[str, str] = field(default_factory=dict)


class Sink(Protocol):
    def open(self, tables: list[TableSpec]) -> None:
        """Prepare to receive batches of each table."""

    def write(self, table: str, batch: pa.RecordBatch) -> None:
        """Append one batch of rows (of the table's schema) to ``table``."""

    def close(self) -> dict[str, Path]:
        """Finish the data; return the file written for each table, if any."""

    def commit(self, manifest: bytes) -> None:
        """Make the data visible, recorded under this manifest."""

    def abort(self) -> None:
        """Undo everything since ``open``."""
