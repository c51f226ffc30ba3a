"""Block arrays → Arrow record batches, one per table; no per-row Python.

Keys are positional: a row's key is 1 + its cell's index in the full
(all-PRs) grid of its plate nest, so keys are stable across dataset sizes and
across counterfactual twins, and a parent key is the child's cell index
divided by the size of the innermost plate. Masked cells (padding of
variable-length plates) are dropped after keys are assigned.
"""

from __future__ import annotations

import functools
from datetime import datetime

import numpy as np
import pyarrow as pa

from causalsynth.engine.program import Column, Program, TableLayout
from causalsynth.engine.sampling import Block

KEY_TYPE = pa.int64()


def start_epoch_ms(start: str) -> int:
    """``sampling.start`` (ISO 8601, UTC) as milliseconds since the Unix epoch."""
    moment = datetime.fromisoformat(start.replace("Z", "+00:00"))
    return int(moment.timestamp() * 1000)


def _index_type(levels: tuple[str, ...]) -> pa.DataType:
    return pa.int8() if len(levels) < 128 else pa.int32()


def arrow_type(column: Column) -> pa.DataType:
    return {
        "bool": pa.bool_(),
        "int": pa.int32(),
        "float": pa.float32(),
        "timestamp": pa.timestamp("ms", tz="UTC"),
    }.get(column.kind) or pa.dictionary(_index_type(column.levels), pa.string())


def table_schema(layout: TableLayout) -> pa.Schema:
    fields = [pa.field(layout.table.key, KEY_TYPE, nullable=False)]
    if layout.parent is not None:
        fields.append(pa.field(layout.parent.key, KEY_TYPE, nullable=False))
    if layout.table.number is not None:
        fields.append(pa.field(layout.table.number[0], pa.string(), nullable=False))
    fields += [pa.field(ref.column, KEY_TYPE, nullable=True) for ref, _ in layout.refs]
    fields += [pa.field(c.name, arrow_type(c), nullable=False) for c in layout.columns]
    return pa.schema(fields)


def schemas(program: Program) -> dict[str, pa.Schema]:
    return {t.table.name: table_schema(t) for t in program.tables}


def _timestamp_ms(program: Program, site: str, cells, start_ms: int, known: dict[str, np.ndarray]) -> np.ndarray:
    """Milliseconds since the epoch of a timestamp site at a table's kept ``cells`` (``cells(site)``:
    the site's values there): its offsets added, in integers, to the timestamps of the site it counts
    from. ``known`` holds those already computed for the table, since several count from one."""
    if site not in known:
        column = next(c for c in program.layout_of(site).columns if c.site == site)
        base = start_ms if column.since is None else _timestamp_ms(program, column.since, cells, start_ms, known)
        offset = np.round(cells(site).astype(np.float64) * 1000.0).astype(np.int64)
        if column.days is not None:
            offset += cells(column.days).astype(np.int64) * 86_400_000
        known[site] = base + offset
    return known[site]


# Arrays are built over numpy's buffers with ``from_buffers``: no copy, and no
# pandas import, which ``pa.array`` costs on its first call (0.3 s a process).

def _fixed_width(values: np.ndarray, type_: pa.DataType, dtype: type) -> pa.Array:
    """A non-null array of a fixed-width ``type_`` whose values are ``values`` as ``dtype``."""
    data = np.ascontiguousarray(values, dtype=dtype)
    return pa.Array.from_buffers(type_, len(data), [None, pa.py_buffer(data)])


def _booleans(values: np.ndarray) -> pa.Array:
    bits = np.packbits(np.asarray(values, dtype=bool), bitorder="little")
    return pa.Array.from_buffers(pa.bool_(), len(values), [None, pa.py_buffer(bits)])


def _strings(values) -> pa.Array:
    """A non-null string array of ``values`` (str)."""
    encoded = np.char.encode(np.asarray(values, dtype=str), "utf-8")
    lengths = np.char.str_len(encoded)
    offsets = np.zeros(len(encoded) + 1, dtype=np.int32)
    np.cumsum(lengths, out=offsets[1:])
    width = encoded.dtype.itemsize
    data = encoded.view(np.uint8).reshape(len(encoded), width)[np.arange(width) < lengths[:, None]]
    return pa.Array.from_buffers(pa.string(), len(encoded), [None, pa.py_buffer(offsets), pa.py_buffer(data)])


def _column_array(column: Column, values: np.ndarray) -> pa.Array:
    if column.kind == "category":
        index_type = _index_type(column.levels)
        return pa.DictionaryArray.from_arrays(_fixed_width(values, index_type, index_type.to_pandas_dtype()),
                                              _strings(column.levels))
    if column.kind == "timestamp":
        return _fixed_width(values, pa.timestamp("ms", tz="UTC"), np.int64)
    if column.kind == "bool":
        return _booleans(values)
    if column.kind == "int":
        return _fixed_width(values, pa.int32(), np.int32)
    return _fixed_width(values, pa.float32(), np.float32)


def tabulate(program: Program, block: Block, start_ms: int,
             schema_by_table: dict[str, pa.Schema]) -> dict[str, pa.RecordBatch]:
    """The block's rows of every table in ``schema_by_table``, keys included, surplus PRs dropped."""
    first_pr = block.index * program.block_prs
    out = {}
    for layout in program.tables:
        if layout.table.name not in schema_by_table:
            continue
        per_pr = layout.cells_per_pr
        n_cells = block.n_prs * per_pr
        cells = np.arange(n_cells, dtype=np.int64) + first_pr * per_pr
        keep = None
        if layout.mask_site is not None:
            keep = np.flatnonzero(_at(block.values, layout.grid, n_cells, None, layout.mask_site))
            cells = cells[keep]
        at_cells = functools.partial(_at, block.values, layout.grid, n_cells, keep)
        arrays = [_fixed_width(cells + 1, KEY_TYPE, np.int64)]
        if layout.parent is not None:
            arrays.append(_fixed_width(cells // layout.inner_size + 1, KEY_TYPE, np.int64))
        if layout.table.number is not None:
            arrays.append(_numbers(layout.table.number[1], cells + 1))
        for ref, target_size in layout.refs:
            position = at_cells(ref.site)
            arrays.append(_refs((cells // layout.inner_size) * target_size + position + 1, position >= 0))
        timestamps: dict[str, np.ndarray] = {}
        for column in layout.columns:
            values = (_timestamp_ms(program, column.site, at_cells, start_ms, timestamps)
                      if column.kind == "timestamp" else at_cells(column.site))
            arrays.append(_column_array(column, values))
        out[layout.table.name] = pa.RecordBatch.from_arrays(
            arrays, schema=schema_by_table[layout.table.name])
    return out


def _at(values: dict[str, np.ndarray], grid: tuple[int, ...], n_cells: int, keep: np.ndarray | None,
        site: str) -> np.ndarray:
    """A site's values over a table's ``grid``, in row order: its first ``n_cells`` (the block's PRs
    kept), of those the cells ``keep`` (all where None)."""
    flat = np.broadcast_to(values[site], grid).reshape(-1)[:n_cells]
    return flat if keep is None else flat[keep]


def _refs(keys: np.ndarray, valid: np.ndarray) -> pa.Array:
    """Keys, null where not ``valid``."""
    bits = None if valid.all() else pa.py_buffer(np.packbits(valid, bitorder="little"))
    data = np.ascontiguousarray(np.where(valid, keys, 0), dtype=np.int64)
    return pa.Array.from_buffers(KEY_TYPE, len(data), [bits, pa.py_buffer(data)],
                                 null_count=int(len(valid) - np.count_nonzero(valid)))


def _numbers(template: str, keys: np.ndarray) -> pa.Array:
    return _strings(np.char.mod(template, keys))


class Tables:
    """What tabulating needs beside a block, derived once per program."""

    def __init__(self, program: Program):
        self.program = program
        self.start_ms = start_epoch_ms(program.config.sampling["start"])
        self.schemas = schemas(program)

    def batches(self, block: Block) -> dict[str, pa.RecordBatch]:
        return tabulate(self.program, block, self.start_ms, self.schemas)

    def batch(self, block: Block, table: str) -> pa.RecordBatch:
        """The block's rows of one table (tables are tabulated independently of each other)."""
        return tabulate(self.program, block, self.start_ms, {table: self.schemas[table]})[table]
