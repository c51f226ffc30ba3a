"""Dask clusters for a sampling job: the options' checks, and a client connected in the background.

Light to import (Dask itself is imported when a cluster is asked for): the
CLI starts a job's cluster before it imports JAX and loads the config, so the
workers start, and import the engine, while this process does its own.
"""

from __future__ import annotations

import os
import threading
from collections.abc import Iterator
from contextlib import ExitStack, contextmanager
from typing import Any

from causalsynth.errors import ClusterError, ConfigError, one_line

CONNECT_TIMEOUT = "30s"  # to reach a running scheduler
PRELOAD = "causalsynth.jobs.blocks"  # what a local worker imports as it starts, before its first task


# JAX's switch for taking most of a GPU's memory at the first use (its default is to).
PREALLOCATE = "XLA_PYTHON_CLIENT_PREALLOCATE"

# What one local worker process takes once it has imported the engine and compiled a block sampler.
WORKER_MEMORY = 512 << 20


def max_local_workers() -> int:
    """The most local workers this machine can start: four per core, within its available memory."""
    cores = os.cpu_count() or 1
    try:
        available = os.sysconf("SC_AVPHYS_PAGES") * os.sysconf("SC_PAGE_SIZE")
    except (ValueError, OSError, AttributeError):  # not POSIX: cores alone
        return 4 * cores
    return max(1, min(4 * cores, available // WORKER_MEMORY))


def check_cluster(workers: int | None, scheduler: str | None, out, db) -> None:
    """Refuse a cluster request that cannot work, before any work."""
    if workers is not None and scheduler is not None:
        raise ConfigError("--workers starts a local cluster and --scheduler uses a running one: give one of them")
    if workers is not None and not 1 <= workers <= max_local_workers():
        raise ConfigError(f"--workers: must be from 1 to {max_local_workers()} on this machine (each worker is a "
                          f"process of its own, with about {WORKER_MEMORY >> 20} MB; four per core at most), "
                          f"got {workers}")
    if (workers is not None or scheduler is not None) and db is not None and out is None:
        raise ConfigError("--db with --workers/--scheduler needs --out too: the workers write the parts, then "
                          "this process loads them in one transaction")


@contextmanager
def dask_client(workers: int | None = None, scheduler: str | None = None) -> Iterator[Any]:
    """A client of a Dask cluster: a local one of ``workers`` single-threaded processes started for
    the job (and closed after it), or the running one at ``scheduler``.

    Connecting comes first, before any sampling, so an unreachable scheduler
    fails at once; a local cluster's workers import the engine as they start.
    """
    try:
        from distributed import Client, LocalCluster
    except ImportError:
        raise ConfigError("--workers/--scheduler need Dask's distributed scheduler: "
                          "pip install 'causalsynth[cluster]'") from None
    with ExitStack() as stack:
        if scheduler is None:
            import dask

            # Dask sets MALLOC_TRIM_THRESHOLD_ on the workers it spawns, which turns off glibc's adaptive
            # mmap threshold: each block's large arrays are then mapped and unmapped afresh, tripling
            # system time (measured: 20 % slower). The workers started here keep the default allocator.
            environ = dict(dask.config.get("distributed.nanny.pre-spawn-environ"))
            environ.pop("MALLOC_TRIM_THRESHOLD_", None)
            # On a GPU, JAX takes 75 % of its memory in the first process that uses it: the workers of one
            # machine share the device instead, each allocating what its blocks need (JAX's GPU memory
            # guide). A setting of the user's own is kept; on a CPU it does nothing.
            environ[PREALLOCATE] = os.environ.get(PREALLOCATE, "false")
            stack.enter_context(dask.config.set({"distributed.nanny.pre-spawn-environ": environ}))
            try:
                target = stack.enter_context(LocalCluster(n_workers=workers, threads_per_worker=1,
                                                          processes=True, dashboard_address=None,
                                                          preload=[PRELOAD]))
            except Exception as exc:  # noqa: BLE001 - whatever kept the workers from starting
                raise ClusterError(f"--workers {workers}: the local cluster did not start: {one_line(exc)}") from None
        else:
            target = scheduler
        try:
            # Not the default client, and closed by a callback, not as a context: a ClusterStart opens it in
            # one thread and closes it in another, and Client's context is bound to its thread's context.
            client = Client(target, timeout=CONNECT_TIMEOUT, set_as_default=False)
        except (OSError, TimeoutError, ValueError) as exc:
            where = f"--scheduler {scheduler}" if scheduler else f"--workers {workers}"
            raise ConfigError(f"{where}: cannot connect: {one_line(exc)}") from None
        stack.callback(client.close)
        yield client


class ClusterStart:
    """``dask_client(workers, scheduler)`` entered in a background thread; ``client()`` waits for it.

    Errors (an unreachable scheduler, workers that did not start) are raised
    by ``client()``; ``close()`` waits for the start, then closes what it opened.
    """

    def __init__(self, workers: int | None, scheduler: str | None):
        self.workers, self.scheduler = workers, scheduler
        self._stack = ExitStack()
        self._client: Any = None
        self._error: BaseException | None = None
        self._thread = threading.Thread(target=self._start, name="causalsynth-cluster", daemon=True)
        self._thread.start()

    def _start(self) -> None:
        try:
            self._client = self._stack.enter_context(dask_client(self.workers, self.scheduler))
        except BaseException as exc:  # noqa: BLE001 - handed to the caller by client()
            self._error = exc

    def client(self) -> Any:
        self._thread.join()
        if self._error is not None:
            raise self._error
        return self._client

    def close(self) -> None:
        self._thread.join()
        self._stack.close()


def start_cluster(workers: int | None, scheduler: str | None, out: Any, db: str | None) -> ClusterStart | None:
    """Check the cluster options, then start connecting (None: no cluster asked for)."""
    check_cluster(workers, scheduler, out, db)
    return None if workers is None and scheduler is None else ClusterStart(workers, scheduler)
