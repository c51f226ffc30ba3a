"""The one reader of a dataset's Parquet parts: every command that reads rows reads them here.

``DatasetFiles`` is how ``validate`` reads: a column, or a few row groups,
at a time. Holding a few columns in memory, never whole tables, keeps
validation's memory bounded as datasets grow, and a table that cannot be read
raises ``UnreadableTable`` wherever it is used, so each check that needs it is
reported as not run instead of vanishing. ``Dataset`` is how everything else
reads (tasks, reports, effects, RCA): whole columns of a table, or a table
joined to its ancestors' columns, after checking up front that every part is
there; ``read_part`` is one part, for streaming a table to a database.
"""

from __future__ import annotations

from collections.abc import Iterator
from functools import cached_property
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
import pyarrow as pa
import pyarrow.compute as pc

from causalsynth.config.loading import Config
from causalsynth.dataset.location import Location, locate, unreadable
from causalsynth.dataset.manifest import MANIFEST, dataset_config, read_manifest, table_parts
from causalsynth.engine.interventions import Intervention, encode_do, shifted_config
from causalsynth.engine.program import Program
from causalsynth.errors import ConfigError, UnreadableDataset, one_line

# Rows per chunk when streaming a table: large enough that per-chunk overheads
# (parsing a rule) vanish, small enough that a chunk's columns stay a few MB each.
CHUNK_ROWS = 1 << 20


class UnreadableTable(Exception):
    """A table's file is missing, truncated or not Parquet."""

    def __init__(self, table: str, reason: str):
        super().__init__(f"{table} is unreadable: {reason}")
        self.table = table


def increasing(keys: np.ndarray) -> bool:
    return bool(np.all(keys[1:] > keys[:-1]))


def lookup(keys: np.ndarray, values: np.ndarray) -> np.ndarray:
    """Row of ``keys`` holding each of ``values``, -1 where absent.

    Keys are written 1, 2, … (or at least increasing), so this is an
    offset or a binary search; any other order falls back to a hash join.
    """
    if len(keys) == 0:
        return np.full(len(values), -1, np.int64)
    if keys[0] == 1 and keys[-1] == len(keys) and increasing(keys):
        rows = values.astype(np.int64) - 1
        return np.where((rows >= 0) & (rows < len(keys)), rows, -1)
    if increasing(keys):
        idx = np.minimum(np.searchsorted(keys, values), len(keys) - 1)
        return np.where(keys[idx] == values, idx, -1)
    first = np.flatnonzero(~pd.Index(keys).duplicated())  # a duplicated key: its first row
    found = pd.Index(keys[first]).get_indexer(values)
    return np.where(found >= 0, first[found], -1)


def as_numpy(values: pa.Array | pa.ChunkedArray) -> np.ndarray | pd.Categorical:
    """Arrow values as rules read them: timestamps as integer milliseconds since the epoch,
    categories as pandas categoricals, everything else as numpy."""
    if isinstance(values, pa.ChunkedArray):
        values = values.combine_chunks()
    if pa.types.is_timestamp(values.type):
        return values.cast(pa.int64()).to_numpy(zero_copy_only=False)
    if pa.types.is_dictionary(values.type):
        # Plain object categories: pandas' Arrow-backed strings would be converted on every comparison.
        codes = values.indices.fill_null(-1).to_numpy(zero_copy_only=False)
        return pd.Categorical.from_codes(codes, pd.Index(values.dictionary.to_pylist(), dtype=object))
    return values.to_numpy(zero_copy_only=False)


def read_part(location: Location, part: dict[str, Any], columns: list[str] | None = None) -> pa.Table:
    """``columns`` (all by default) of one part, given by its manifest entry; ``UnreadableDataset``
    naming the file when it cannot be read."""
    try:
        return location.parquet(part["file"]).read(columns=None if columns is None else list(dict.fromkeys(columns)))
    except (OSError, pa.ArrowException) as exc:
        raise unreadable(location, part["file"], exc) from None


class PartedTable:
    """One table's part files, read as one table in row order.

    Holds each part's footer, not an open file: a table of thousands of
    parts must not hold thousands of file handles.
    """

    def __init__(self, name: str, location: Location, files: list[str]):
        self.location, self.files = location, files
        self.metadata = []
        for f in files:
            try:
                self.metadata.append(location.parquet(f).metadata)
            except (OSError, pa.ArrowException) as exc:
                raise UnreadableTable(name, f"{f}: {one_line(exc)}") from None
        self.num_rows = sum(m.num_rows for m in self.metadata)
        self.schema_arrow = self.metadata[0].schema.to_arrow_schema()

    def row_groups(self) -> Iterator[tuple[int, int]]:
        """(part, row group) of every row group, in row order."""
        for part, m in enumerate(self.metadata):
            for i in range(m.num_row_groups):
                yield part, i

    def read_row_groups(self, groups: list[tuple[int, int]], columns: list[str]) -> pa.Table:
        pieces = []
        for part in dict.fromkeys(p for p, _ in groups):
            f = self.location.parquet(self.files[part], self.metadata[part])
            pieces.append(f.read_row_groups([i for p, i in groups if p == part], columns=columns))
        return pa.concat_tables(pieces)

    def read(self, columns: list[str]) -> pa.Table:
        return self.read_row_groups(list(self.row_groups()), columns)


class DatasetFiles:
    """The dataset's tables, their parts opened lazily, with whole columns cached on request."""

    def __init__(self, location: Location, manifest: dict[str, Any]):
        self.location, self.manifest = location, manifest
        self._files: dict[str, PartedTable | UnreadableTable] = {}
        self._columns: dict[tuple[str, str], Any] = {}

    def file(self, name: str) -> PartedTable:
        if name not in self._files:
            parts = [p["file"] for p in self.manifest["tables"][name]["parts"] or []]
            try:
                self._files[name] = PartedTable(name, self.location, parts) if parts else UnreadableTable(
                    name, "no parts")
            except UnreadableTable as exc:
                self._files[name] = exc
        found = self._files[name]
        if isinstance(found, UnreadableTable):
            raise found
        return found

    def readable(self, name: str) -> bool:
        try:
            self.file(name)
        except UnreadableTable:
            return False
        return True

    def rows(self, name: str) -> int:
        return self.file(name).num_rows

    def key(self, name: str) -> str:
        return self.manifest["tables"][name]["key"]

    def parent(self, name: str) -> tuple[str, str] | None:
        parent = self.manifest["tables"][name]["parent"]
        return None if parent is None else (parent["table"], parent["key"])

    def own(self, name: str, column: str, keep: bool = False) -> pa.ChunkedArray:
        """One whole column; ``keep`` caches it (keys, and parents' columns read per child row group)."""
        if (name, column) in self._columns:
            return self._columns[name, column]
        try:
            values = self.file(name).read(columns=[column]).column(0)
        except (OSError, pa.ArrowException) as exc:
            raise UnreadableTable(name, str(exc)) from None
        if keep:
            self._columns[name, column] = values
        return values

    def values(self, name: str, column: str) -> np.ndarray | pd.Categorical:
        """A whole column as rules read it (``as_numpy``), cached."""
        if (name, column, "numpy") not in self._columns:
            self._columns[name, column, "numpy"] = as_numpy(self.own(name, column))
        return self._columns[name, column, "numpy"]

    def keys(self, name: str) -> np.ndarray:
        return self.values(name, self.key(name))

    def chunks(self, name: str, columns: list[str]) -> Iterator[tuple[int, pa.Table]]:
        """(first row, rows) of consecutive chunks of whole row groups, about ``CHUNK_ROWS`` rows each,
        with ``columns``."""
        table = self.file(name)
        offset, groups, rows = 0, [], 0
        everything = list(table.row_groups())
        for n, (part, i) in enumerate(everything):
            groups.append((part, i))
            rows += table.metadata[part].row_group(i).num_rows
            if rows >= CHUNK_ROWS or n == len(everything) - 1:
                try:
                    chunk = table.read_row_groups(groups, columns)
                except (OSError, pa.ArrowException) as exc:
                    raise UnreadableTable(name, f"rows {offset:,}-{offset + rows:,}: {exc}") from None
                yield offset, chunk
                offset += chunk.num_rows
                groups, rows = [], 0

    def rows_of(self, table: str, ancestor: str, fk: np.ndarray) -> np.ndarray:
        """Row of ``ancestor`` above each row whose parent key is ``fk`` (-1 where none)."""
        up = self.parent(table)[0]
        rows = lookup(self.keys(up), fk)
        while up != ancestor:
            fk = np.where(rows >= 0, self.values(up, self.parent(up)[1])[np.maximum(rows, 0)], -1)
            up = self.parent(up)[0]
            rows = lookup(self.keys(up), fk)
        return rows

    def column(self, table: str, ref: str) -> pa.ChunkedArray | pa.Array:
        """``ref`` of ``table``'s rows: its own column, or "ancestor.column" looked up through the keys."""
        ancestor, _, column = ref.rpartition(".")
        if not ancestor:
            return self.own(table, column)
        rows = self.rows_of(table, ancestor, self.values(table, self.parent(table)[1]))
        return pc.take(self.own(ancestor, column, keep=True), pa.array(rows, mask=rows < 0))

    def mask(self, table: str, conditions: tuple[str, ...]) -> pa.ChunkedArray | None:
        mask = None
        for condition in conditions:
            negate = condition.startswith("~")
            values = self.column(table, condition.lstrip("~"))
            values = pc.invert(values) if negate else values
            mask = values if mask is None else pc.and_(mask, values)
        return mask


def recorded_intervention(location: Location, manifest: dict[str, Any], config: Config,
                          program: Program) -> Intervention:
    """The intervention ``manifest`` records, checked against the dataset's model: a bad one is the
    manifest's fault, and its error names the manifest, not an option the user never gave."""
    intervention = Intervention(**manifest["intervention"])
    try:
        encode_do(program, intervention.do, option="intervention.do:")
        shifted_config(config, intervention)
    except ConfigError as exc:
        raise UnreadableDataset(f"{location.show(MANIFEST)}: {exc}") from None
    return intervention


class Dataset(DatasetFiles):
    """A dataset directory with its manifest, config and model program, read by table.

    Opening one checks its manifest, its config and that every table's
    Parquet file is there and readable (``UnreadableDataset`` otherwise), so
    a command fails before any work; the program is traced when first used.
    """

    def __init__(self, directory: str | Path):
        location = locate(directory)
        super().__init__(location, read_manifest(directory))
        self.directory = directory
        self.parts = table_parts(location, self.manifest)
        self.config: Config = dataset_config(directory, self.manifest)

    def beside(self, name: str, option: str = "--out") -> Path:
        """``name`` in the dataset's directory: the default place for what is derived from it."""
        if not self.location.local:
            raise ConfigError(f"{option}: give a local directory; {self.location.url} is not on this machine")
        return self.location.path / name

    @cached_property
    def program(self) -> Program:
        """The dataset's model program, whose tables must be the manifest's."""
        program = Program(self.config)
        expected, listed = [t.table.name for t in program.tables], list(self.manifest["tables"])
        if sorted(expected) != sorted(listed):
            raise UnreadableDataset(f"{self.location.show(MANIFEST)}: tables: its config's model writes "
                                    f"{', '.join(expected)}; the manifest lists {', '.join(listed)}")
        return program

    @cached_property
    def intervention(self) -> Intervention:
        """The intervention the dataset was sampled under, checked against its model."""
        return recorded_intervention(self.location, self.manifest, self.config, self.program)

    def read(self, table: str, columns: list[str]) -> pd.DataFrame:
        return self.read_arrow(table, columns).to_pandas()

    def read_arrow(self, table: str, columns: list[str]) -> pa.Table:
        """``columns`` of every part of ``table``, in row order."""
        return pa.concat_tables([read_part(self.location, part, columns) for part in self.parts[table]])

    def root(self, table: str) -> str:
        while self.parent(table) is not None:
            table = self.parent(table)[0]
        return table

    def frame(self, table: str, refs: list[str]) -> pd.DataFrame:
        """Rows of ``table`` with its key, its root table's key, and ``refs``.

        A ref is a column of ``table``, or "ancestor.column" of an ancestor
        table (named "ancestor_column" in the frame), joined down the foreign keys.
        """
        own = [r for r in refs if "." not in r]
        parent = self.parent(table)
        frame = self.read(table, [self.key(table)] + ([parent[1]] if parent else []) + own)
        link = parent
        while link is not None:
            up_table, up_key = link
            wanted = [r.partition(".")[2] for r in refs if r.partition(".")[0] == up_table]
            up_parent = self.parent(up_table)
            up = self.read(up_table, [up_key] + ([up_parent[1]] if up_parent else []) + wanted)
            frame = frame.merge(up.rename(columns={c: f"{up_table}_{c}" for c in wanted}),
                                on=up_key, how="left", validate="many_to_one")
            link = up_parent
        return frame

    def site(self, table: str, column: str) -> str:
        return next(c.site for c in self.program.table(table).columns if c.name == column)
