"""The two references `bench_sample.py` measures causalsynth against, over the same tables.

- ``floor``: the same five tables (same schemas, same row counts, same Parquet
  writer, encodings and compression) filled by plain vectorized numpy, with no causal
  structure at all: the cost of producing and writing the bytes.
- ``overlapped``: the floor at the machine's limit: the same columns, written as causalsynth writes
  them (one Parquet part per table and block, encoded whole), by one writer thread per core (pyarrow
  releases the GIL while it encodes), while the next block is generated; at most as many blocks ahead
  of the writers as causalsynth allows. No causal structure, every core busy: what the bytes cost here.
- ``naive``: the same schemas filled one record at a time in Python, the way
  the seed's Java design loops (``for pr in prs: for run in runs: ...``).

Run as ``python references.py floor|overlapped|naive|floor-series|floor-traces N_PRS OUT_DIR``; prints rows
written (``floor-series``: the floor of the service_timeseries table of `sample --series` alone;
``floor-traces``: of the traces, trace_spans and trace_logs tables of `--traces --logs` alone).
"""

from __future__ import annotations

import random
import sys
from collections import deque
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq

from causalsynth.config.loading import load_config
from causalsynth.engine.program import Program
from causalsynth.engine.tabulate import schemas
from causalsynth.jobs.blocks import WRITE_AHEAD, WRITERS
from causalsynth.sinks.parquet import encode_part, part_name, writer_options

STEPS_PER_FLOW = 8  # the default model's mean
LOG_LINES_PER_TRACE = 1.6  # the default model's mean (of 14 slots)
# The tables each optional part adds, and the config that samples them.
EXTRAS = {"": ((), ()),
          "series": (("service_timeseries",), ("telemetry.enabled=true",)),
          "traces": (("traces", "trace_spans", "trace_logs"),
                     ("telemetry.enabled=true", "telemetry.traces.enabled=true", "telemetry.logs.enabled=true"))}


def table_plan(n_prs: int, extra: str = ""):
    """(table, schema, rows per PR) for the default model's five tables, or for the tables an optional
    part (``extra``, a key of ``EXTRAS``) adds alone."""
    tables, overrides = EXTRAS[extra]
    program = Program(load_config(overrides=list(overrides)))
    per_pr = {t.table.name: t.cells_per_pr for t in program.tables}
    per_pr["flow_steps"] = per_pr["ecommerce_flows"] * STEPS_PER_FLOW
    if "trace_logs" in per_pr:
        per_pr["trace_logs"] = round(per_pr["traces"] * LOG_LINES_PER_TRACE)
    wanted = tables or tuple(t.table.name for t in program.tables)
    return [(name, schema, per_pr[name]) for name, schema in schemas(program).items() if name in wanted]


def _numpy_column(rng: np.random.Generator, field: pa.Field, n: int) -> pa.Array:
    t = field.type
    if pa.types.is_dictionary(t):
        return pa.DictionaryArray.from_arrays(rng.integers(0, 4, n, dtype=np.int8), pa.array(list("ABCD")))
    if pa.types.is_timestamp(t):
        return pa.array(1_735_689_600_000 + rng.integers(0, 31_536_000_000, n), t)
    if pa.types.is_boolean(t):
        return pa.array(rng.random(n, dtype=np.float32) < 0.2)
    if pa.types.is_string(t):
        return pa.array(np.char.mod("PR-%06d", np.arange(1, n + 1)))
    if pa.types.is_integer(t):
        return pa.array(rng.integers(0, 1000, n).astype(t.to_pandas_dtype()))
    return pa.array(rng.random(n, dtype=np.float32))


def _python_value(rnd: random.Random, field: pa.Field, i: int):
    t = field.type
    if pa.types.is_dictionary(t):
        return rnd.choice("ABCD")
    if pa.types.is_timestamp(t):
        return 1_735_689_600_000 + rnd.randrange(31_536_000_000)
    if pa.types.is_boolean(t):
        return rnd.random() < 0.2
    if pa.types.is_string(t):
        return f"PR-{i:06d}"
    if pa.types.is_integer(t):
        return rnd.randrange(1000)
    return rnd.random()


def floor(n_prs: int, out: Path, block: int = 5000, extra: str = "") -> int:
    rng = np.random.default_rng(0)
    rows = 0
    for name, schema, per_pr in table_plan(n_prs, extra):
        with pq.ParquetWriter(out / f"{name}.parquet", schema, **writer_options(schema)) as writer:
            for start in range(0, n_prs, block):
                n = min(block, n_prs - start) * per_pr
                writer.write_batch(pa.RecordBatch.from_arrays(
                    [_numpy_column(rng, f, n) for f in schema], schema=schema))
                rows += n
    return rows


def overlapped(n_prs: int, out: Path, block: int = 5000) -> int:
    rng = np.random.default_rng(0)
    plan = table_plan(n_prs)
    for name, _, _ in plan:
        (out / name).mkdir(exist_ok=True)

    def write(name: str, index: int, batch: pa.RecordBatch) -> int:
        (out / part_name(name, index)).write_bytes(encode_part(batch))
        return batch.num_rows

    rows = 0
    with ThreadPoolExecutor(WRITERS) as writers:
        pending: deque = deque()
        for index, start in enumerate(range(0, n_prs, block)):
            m = min(block, n_prs - start)
            pending.append([writers.submit(write, name, index, pa.RecordBatch.from_arrays(
                [_numpy_column(rng, f, m * per_pr) for f in schema], schema=schema)) for name, schema, per_pr in plan])
            while len(pending) > WRITE_AHEAD:
                rows += sum(f.result() for f in pending.popleft())
        rows += sum(f.result() for written in pending for f in written)
    return rows


def naive(n_prs: int, out: Path, block: int = 500) -> int:
    rnd = random.Random(0)
    plan = table_plan(n_prs)
    writers = {name: pq.ParquetWriter(out / f"{name}.parquet", schema, **writer_options(schema))
               for name, schema, _ in plan}
    rows = 0
    for start in range(0, n_prs, block):
        records: dict[str, list[dict]] = {name: [] for name, _, _ in plan}
        for pr in range(start, min(start + block, n_prs)):          # one PR at a time ...
            for name, schema, per_pr in plan:                       # ... and each child row
                for i in range(per_pr):
                    records[name].append({f.name: _python_value(rnd, f, pr * per_pr + i) for f in schema})
        for name, schema, _ in plan:
            writers[name].write_table(pa.Table.from_pylist(records[name], schema=schema))
            rows += len(records[name])
    for writer in writers.values():
        writer.close()
    return rows


if __name__ == "__main__":
    kind, n, directory = sys.argv[1], int(sys.argv[2]), Path(sys.argv[3])
    directory.mkdir(parents=True, exist_ok=True)
    if kind.startswith("floor-"):
        print(floor(n, directory, extra=kind.removeprefix("floor-")))
    else:
        print({"floor": floor, "overlapped": overlapped, "naive": naive}[kind](n, directory))
