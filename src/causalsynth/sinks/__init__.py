"""Output formats behind one interface: open with the schemas, write record batches, close.

A sink writes into a directory the dataset writer owns (a staging directory
that is moved into place only when everything succeeded), so a sink never
needs to clean up after itself on failure.
"""

from __future__ import annotations

from pathlib import Path
from typing import Protocol

import pyarrow as pa


class Sink(Protocol):
    def open(self, directory: Path, schemas: dict[str, pa.Schema]) -> None:
        """Prepare to receive batches of each table."""

    def write(self, table: str, batch: pa.RecordBatch) -> None:
        """Append one batch of rows (of the table's schema) to ``table``."""

    def close(self) -> dict[str, Path]:
        """Finish every table; return the data file of each."""
