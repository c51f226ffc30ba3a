"""The sinks behind the one interface: Parquet parts and SQL databases take a dataset's rows the same way."""

from __future__ import annotations

import hashlib
import inspect
import json
import pickle
import sqlite3
from concurrent.futures import ThreadPoolExecutor

import pyarrow as pa
import pyarrow.parquet as pq
import pytest

from causalsynth.dataset.location import locate
from causalsynth.sinks import Sink, table_specs
from causalsynth.sinks.parquet import ParquetSink, encode_part
from causalsynth.sinks.sql import SqlSink


@pytest.mark.parametrize("cls", [ParquetSink, SqlSink])
def test_each_sink_has_the_interface(cls):
    """Every method of ``Sink`` with its parameters, and how it may be written (``in_order``)."""
    for name in ("open", "write", "close", "commit", "abort"):
        ours = list(inspect.signature(getattr(cls, name)).parameters)
        assert ours == list(inspect.signature(getattr(Sink, name)).parameters), (cls.__name__, name, ours)
    assert isinstance(cls.in_order, bool)


def _block(small_config):
    """A real block's batches: 30 PRs and their rows."""
    from causalsynth.engine.sampling import sample_blocks
    from causalsynth.engine.tabulate import Tables
    from causalsynth.engine.world import prepare_world

    world = prepare_world(small_config)
    program = world.program
    tables = Tables(program)
    return program, tables.batches(next(sample_blocks(program, world.params, 5, 30, [0], world.do)))


def test_parquet_parts_come_in_any_order_from_any_thread(tmp_path, small_config):
    """Each part is a file named by its table and block: three blocks written backwards from two threads
    give the files written in order, each entry naming its file's rows and SHA-256; commit writes the
    manifest last, and the sink travels to a worker as plain data."""
    program, batches = _block(small_config)
    specs = table_specs(program)
    sink = pickle.loads(pickle.dumps(ParquetSink(locate(tmp_path))))
    sink.open(specs)
    assert sorted(p.name for p in tmp_path.iterdir()) == sorted(s.name for s in specs)
    jobs = [(t, b, i) for i in (2, 1, 0) for t, b in batches.items()]
    with ThreadPoolExecutor(2) as pool:
        entries = list(pool.map(lambda job: sink.write(*job), jobs))
    sink.close()
    assert not (tmp_path / "manifest.json").exists()
    sink.commit(b'{"format": "causalsynth-dataset"}')
    assert json.loads((tmp_path / "manifest.json").read_bytes()) == {"format": "causalsynth-dataset"}
    for (table, batch, index), entry in zip(jobs, entries):
        path = tmp_path / entry["file"]
        assert entry["file"] == f"{table}/part-{index:06d}.parquet" and entry["rows"] == batch.num_rows
        assert entry["sha256"] == hashlib.sha256(path.read_bytes()).hexdigest()
        assert path.read_bytes() == encode_part(batch)
        assert pq.read_table(path).equals(pa.Table.from_batches([batch]))


def test_a_database_takes_the_same_calls_in_order(tmp_path, small_config):
    """The SQL sink, driven exactly as a job drives the Parquet sink, holds every row once committed and
    nothing after an abort."""
    program, batches = _block(small_config)
    specs = table_specs(program)
    url = f"sqlite:///{tmp_path / 'kept.db'}"
    sink = SqlSink(url)
    sink.open(specs)
    for table, batch in batches.items():
        assert sink.write(table, batch, 0) is None
    sink.close()
    sink.commit(json.dumps({"model": {"name": "m", "version": "1"}, "seed": 5, "n_prs": 30,
                            "intervention": {"name": "factual"}}).encode())
    with sqlite3.connect(tmp_path / "kept.db") as db:
        for spec in specs:
            rows = db.execute(f'SELECT count(*) FROM "{spec.name}"').fetchone()[0]
            assert rows == batches[spec.name].num_rows > 0

    aborted = SqlSink(f"sqlite:///{tmp_path / 'aborted.db'}")
    aborted.open(specs)
    aborted.write(specs[0].name, batches[specs[0].name], 0)
    aborted.abort()
    assert not (tmp_path / "aborted.db").exists()
