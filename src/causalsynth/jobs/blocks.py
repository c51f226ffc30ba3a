"""Blocks as units of work: sample, tabulate, write one part file per table, count.

A block's part files are a function of (config, parameters, seed, block
index) alone, so a dataset's bytes are the same whether its blocks run in
one process or are spread over a cluster, in any order. ``run_local``
pipelines the blocks in this process: while a block is sampled (XLA's
threads, or the accelerator), each table of the blocks before it is
tabulated, counted and written as a task of its own by a pool of threads,
one per core, so that every core encodes whatever samples. ``run_on_dask`` submits
each block as a task to a Dask cluster whose workers write their parts
themselves and return only their manifest entries and counts.
"""

from __future__ import annotations

import functools
import json
import os
import threading
import time
import uuid
from collections import deque
from collections.abc import Callable, Iterator, Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from typing import Any

import jax
import pyarrow as pa

from causalsynth.engine.program import Program
from causalsynth.engine.sampling import sample_blocks
from causalsynth.engine.tabulate import Tables
from causalsynth.errors import CausalsynthError, ClusterError, one_line
from causalsynth.sinks import Sink
from causalsynth.sinks.parquet import ParquetSink
from causalsynth.spec.params import Params
from causalsynth.validate.marginals import Tally, parse_column, tally, tally_key

# Blocks sampled but not yet written, at most: bounds memory to a few blocks whatever N.
WRITE_AHEAD = 2
# Threads tabulating, counting and writing parts (numpy and pyarrow release the GIL): one per core.
WRITERS = len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else (os.cpu_count() or 1)


# A cluster's task is a run of consecutive blocks, pipelined like one process: at most this many, and
# at least this many tasks per worker, so that the last tasks leave workers idle only briefly.
BLOCKS_PER_TASK = 4
TASKS_PER_WORKER = 4
SETTLE_TIMEOUT = 600     # seconds to wait, after a failure, for blocks still running on workers
POLL_S = 0.5             # how often the client looks up from waiting on a cluster (to hear Ctrl-C)


@dataclass(frozen=True)
class BlockJob:
    """Everything a process needs to produce any block of one dataset: plain data, cheap to ship."""

    config: dict[str, Any]  # the resolved config (its structure; the parameters are below)
    params: Params          # calibrated and shifted: calibration is solved once, by the client
    do: dict[str, float]    # encoded hard interventions
    seed: int
    n_prs: int
    parts: ParquetSink | None  # where the parts go, written by whichever process runs a block (None: no files)
    cache_dir: str | None   # the client's compilation cache, reused by workers on its machine
    versions: dict[str, str] = field(default_factory=dict)  # what made the client's bytes (``versions``)
    at_once: int = 1        # blocks sampled by one call of the device (``sample_blocks``)


def versions(model) -> dict[str, str]:
    """What a block's bytes depend on besides the job: the package, the model's source, JAX and pyarrow."""
    from causalsynth.engine import identity

    return {"causalsynth": identity.package_version(), "model source": identity.model_digest(model),
            "jax": jax.__version__, "pyarrow": pa.__version__}


@dataclass
class Counts:
    """Rows per table and a tally of each of the model's marginals, summed over blocks."""

    rows: dict[str, int] = field(default_factory=dict)
    tallies: dict[str, Tally] = field(default_factory=dict)  # keyed by ``tally_key``

    def add(self, other: Counts) -> None:
        for table, n in other.rows.items():
            self.rows[table] = self.rows.get(table, 0) + n
        for key, (hits, n) in other.tallies.items():
            mine, total = self.tallies.get(key, ({}, 0))
            self.tallies[key] = ({k: mine.get(k, 0) + hits.get(k, 0) for k in mine | hits}, total + n)

    def tally(self, m) -> Tally:
        return self.tallies[tally_key(m)]


@dataclass(frozen=True)
class BlockResult:
    index: int
    parts: dict[str, dict[str, Any]]  # table -> {file, rows, sha256}
    counts: Counts

    @property
    def n_rows(self) -> int:
        return sum(self.counts.rows.values())


def count(program: Program, batches: dict[str, pa.RecordBatch]) -> Counts:
    """The rows of each table in ``batches`` and a tally of each of the model's marginals on them."""
    counts = Counts(rows={t: b.num_rows for t, b in batches.items()})
    for m in program.model.MARGINALS:
        table, column, _ = parse_column(m.column)
        if table in batches:
            rows = batches[table]
            counts.tallies[tally_key(m)] = tally(rows.column(column), rows.column(m.among) if m.among else None)
    return counts


@dataclass(frozen=True)
class _Part:
    """One table of one block: its rows, their counts, and its part file's manifest entry (or None)."""

    batch: pa.RecordBatch
    counts: Counts
    entry: dict[str, Any] | None


def _table_part(job: BlockJob, tables: Tables, block, table: str) -> _Part:
    batch = tables.batch(block, table)
    entry = None if job.parts is None else job.parts.write(table, batch, block.index)
    return _Part(batch, count(tables.program, {table: batch}), entry)


def run_local(job: BlockJob, program: Program, indices: list[int], in_order: Sequence[Sink] = (),
              checkpoint: Callable[[], None] = lambda: None) -> Iterator[BlockResult]:
    """The blocks ``indices`` in this process, in that order. Each table of a block is tabulated, counted
    and written by one of ``WRITERS`` threads; the sinks ``in_order`` (a database) take each block's
    batches in this thread, in block order."""
    tables = Tables(program)
    with ThreadPoolExecutor(WRITERS, thread_name_prefix="causalsynth-writer") as pool:
        pending: deque = deque()
        try:
            for block in sample_blocks(program, job.params, job.seed, job.n_prs, indices, job.do, job.at_once):
                made = {table: pool.submit(_table_part, job, tables, block, table) for table in tables.schemas}
                for sink in in_order:
                    for table, part in made.items():
                        sink.write(table, part.result().batch, block.index)
                pending.append((block.index, made))
                checkpoint()
                while len(pending) > WRITE_AHEAD:
                    yield _finished(job, pending.popleft())
            while pending:
                yield _finished(job, pending.popleft())
        finally:
            for _, made in pending:
                for future in made.values():
                    future.cancel()


def _finished(job: BlockJob, entry) -> BlockResult:
    index, made = entry
    parts = {table: future.result() for table, future in made.items()}
    counts = Counts()
    for part in parts.values():
        counts.add(part.counts)
    return BlockResult(index, {} if job.parts is None else {t: p.entry for t, p in parts.items()}, counts)


_WORKER_PROGRAMS = threading.Lock()


def _worker_program(config_json: str, cache_dir: str | None) -> Program:
    """This worker's compiled program for a config: traced and compiled once per process, whichever
    of its threads asks first."""
    with _WORKER_PROGRAMS:
        return _program(config_json, cache_dir)


@functools.lru_cache(maxsize=4)
def _program(config_json: str, cache_dir: str | None) -> Program:
    from causalsynth.config.loading import load_config
    from causalsynth.engine import cache

    cache.enable(cache_dir)
    return Program(load_config(data=json.loads(config_json)))


def run_blocks(job: BlockJob, indices: list[int]) -> list[BlockResult]:
    """Consecutive blocks, pipelined as in one process, on whichever process runs them (a cluster's task)."""
    program = _worker_program(json.dumps(job.config, sort_keys=True), job.cache_dir)
    here = versions(program.model)
    differ = [f"{k} {here.get(k)} here, {v} on the client" for k, v in job.versions.items() if here.get(k) != v]
    if differ:  # the same seed would give other bytes, or other rows: refuse instead
        raise ClusterError(f"a worker runs other code than the client ({'; '.join(differ)}); install the same "
                           f"causalsynth, model and libraries on every worker")
    return list(run_local(job, program, indices))


def warm_up(client, config: dict[str, Any], cache_dir: str | None) -> list:
    """Have every worker compile (or load from its cache) the block sampler while this process
    calibrates; return the futures, to hold until the job ends. A failed warm-up costs nothing: the
    worker's first task compiles instead."""
    return [client.submit(_warm, config, cache_dir, workers=[worker], pure=False)
            for worker in client.scheduler_info()["workers"]]


def _warm(config: dict[str, Any], cache_dir: str | None) -> None:
    from causalsynth.engine.sampling import sampler_args

    program = _worker_program(json.dumps(config, sort_keys=True), cache_dir)
    jax.block_until_ready(program.sample_block(*sampler_args(program)))


def run_on_dask(client, job: BlockJob, indices: list[int],
                checkpoint: Callable[[], None] = lambda: None) -> Iterator[BlockResult]:
    """The blocks ``indices`` as tasks on the cluster of ``client``, yielded as they finish (in any order).

    Dask reruns a block whose worker died (its bytes are the same the second
    time), up to its ``distributed.scheduler.allowed-failures``; a block that
    fails for good fails the job. Its other blocks are then cancelled, and
    those already running are waited for, so no part lands after the job has
    cleaned up.
    """
    from distributed import wait

    token = uuid.uuid4().hex
    futures = []
    try:
        shipped = client.scatter(job, broadcast=True, hash=False)
        n_workers = max(len(client.scheduler_info()["workers"]), 1)
        size = max(1, min(BLOCKS_PER_TASK, len(indices) // (TASKS_PER_WORKER * n_workers)))
        for first in range(0, len(indices), size):
            run = indices[first:first + size]
            futures.append(client.submit(run_blocks, shipped, run, key=f"causalsynth-blocks-{run[0]}-{token}",
                                         pure=False))
        pending = set(futures)
        while pending:
            try:  # a bounded wait, so that Ctrl-C is heard while no task finishes
                done, pending = wait(pending, timeout=POLL_S, return_when="FIRST_COMPLETED")
            except TimeoutError:
                done = set()
            for future in done:
                try:
                    results = future.result()
                except CausalsynthError:
                    raise
                except Exception as exc:
                    raise ClusterError(f"the task of blocks from {future.key.split('-')[2]} failed on the "
                                       f"cluster: {type(exc).__name__}: {one_line(exc)}") from None
                yield from results
            checkpoint()
    except (OSError, TimeoutError) as exc:  # the scheduler went away
        _abandon(client, futures, token)
        raise ClusterError(f"the cluster was lost: {type(exc).__name__}: {one_line(exc)}") from None
    except BaseException:
        _abandon(client, futures, token)
        raise


def _abandon(client, futures: list, token: str) -> None:
    """Cancel the job's tasks and wait for those already running, whatever state the cluster is in."""
    try:
        client.cancel(futures)
    except Exception:  # noqa: BLE001 - a cluster going away has nothing left to cancel
        return
    _settle(client, token)


def _executing(token: str, dask_worker=None) -> int:
    """How many of the job's blocks this worker is running now (``client.run`` passes the worker)."""
    return sum(token in str(ts.key) for ts in dask_worker.state.executing)


def _settle(client, token: str) -> None:
    """Wait until no worker is still running one of the job's blocks (a cancelled task cannot be stopped
    midway): nothing may write a part after the job cleaned up."""
    deadline = time.monotonic() + SETTLE_TIMEOUT
    while time.monotonic() < deadline:
        try:
            running = client.run(_executing, token, on_error="return")
        except Exception:  # noqa: BLE001 - a cluster going away has nothing left running
            return
        if not any(isinstance(n, int) and n for n in running.values()):
            return
        time.sleep(0.1)

