"""Where a dataset's rows go, behind one interface: Parquet parts (``parquet``) and SQL databases (``sql``).

A job opens each sink with the tables' specs, writes record batches to it
(each block's as it is sampled, or every part once a cluster wrote them),
closes it (data complete), builds the manifest, and then commits it, or
aborts it if anything failed. A sink makes nothing visible before
``commit``: the Parquet sink writes the manifest that makes its parts a
dataset last, the SQL sink loads inside one transaction. May import
``engine`` (a table's schema), ``dataset`` (where parts go) and ``errors``.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any, Protocol

import pyarrow as pa

from causalsynth.engine.program import Program
from causalsynth.engine.tabulate import schemas


@dataclass(frozen=True)
class TableSpec:
    """One table as a sink sees it: Arrow schema, keys and the data dictionary."""

    name: str
    schema: pa.Schema
    key: str
    parent: tuple[str, str] | None = None  # (parent table, its key: also this table's column)
    descriptions: dict[str, str] = field(default_factory=dict)


class Sink(Protocol):
    """What a job writes a dataset's rows to.

    ``in_order`` says how ``write`` may be called: False, from any thread or
    process in any order (each part is a file of its own: Parquet); True, from
    one thread, parts in row order (appending to tables: SQL).
    """

    in_order: bool

    def open(self, tables: list[TableSpec]) -> None:
        """Prepare to receive batches of each table."""

    def write(self, table: str, batch: pa.RecordBatch, part: int) -> dict[str, Any] | None:
        """Write one batch of rows (of the table's schema) of ``table``'s part ``part``; return the
        part's manifest entry (``file``, ``rows``, ``sha256``) where the sink keeps parts as files."""

    def close(self) -> None:
        """Finish the data (keys, indexes)."""

    def commit(self, manifest: bytes) -> None:
        """Make the data visible, recorded under this manifest."""

    def abort(self) -> None:
        """Undo everything since ``open``."""


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
        for ref, _ in layout.refs:
            descriptions[ref.column] = docs.get(f"{t.name}.{ref.column}", f"A {ref.table} row of the same parent")
        specs.append(TableSpec(t.name, schema_by_table[t.name], t.key, parent, descriptions))
    return specs

