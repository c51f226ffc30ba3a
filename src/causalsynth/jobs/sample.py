"""Sample a dataset end to end: calibrate, run blocks (here or on a cluster), write parts, manifest.

The twin of a dataset under an intervention is sampled here too. What a dataset is on disk
(the manifest, one Parquet part per table and block) is ``causalsynth.dataset.manifest``'s.
"""

from __future__ import annotations

import hashlib
from contextlib import ExitStack, closing
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import jax

from causalsynth.causal.graph import model_graph
from causalsynth.config.limits import check_size
from causalsynth.config.loading import Config
from causalsynth.dataset.location import Location, locate
from causalsynth.dataset.manifest import (
    FORMAT,
    FORMAT_VERSION,
    _schema_json,
    dataset_config,
    manifest_bytes,
    manifest_bytes_at,
    parse_manifest,
)
from causalsynth.dataset.staging import deferred_interrupts, staged_location
from causalsynth.engine.identity import model_digest, package_version
from causalsynth.engine.interventions import Intervention
from causalsynth.engine.program import Program
from causalsynth.engine.world import Progress, prepare_world
from causalsynth.errors import ConfigError, OutputError
from causalsynth.jobs.blocks import BlockJob, BlockResult, Counts, run_local, run_on_dask, versions, warm_up
from causalsynth.jobs.cluster import ClusterStart, start_cluster
from causalsynth.sinks import Sink, TableSpec, table_specs
from causalsynth.sinks.parquet import ParquetSink
from causalsynth.validate.marginals import levels, tallies_to_json


def headlines(program: Program, counts: Counts) -> list[dict[str, Any]]:
    """The model's headline rates as sampled, beside their targets."""
    config = program.config
    out = []
    for m in program.model.MARGINALS:
        if m.headline:
            hits, n = counts.tally(m)
            level, target = levels(m, config)[0]
            out.append({"title": m.headline, "column": m.column, "observed": hits.get(level, 0) / max(n, 1),
                        "target": target})
    return out


@dataclass(frozen=True)
class Destination:
    """Where a dataset goes: Parquet parts at ``out`` (a directory or an fsspec URL) and/or the
    database ``db`` (a SQLAlchemy URL, into ``schema``; ``if_exists``: fail, replace or append).
    ``force`` lets ``out`` replace an existing dataset (never anything else)."""

    out: str | Path | None = None
    force: bool = False
    db: str | None = None
    schema: str | None = None
    if_exists: str = "fail"

    @classmethod
    def of(cls, to: Destination | str | Path) -> Destination:
        """``to`` itself, or Parquet alone at the path or URL ``to``."""
        return to if isinstance(to, Destination) else cls(out=to)

    def check(self) -> None:
        """Refuse a destination that cannot be written, before any work."""
        if self.out is None and self.db is None:
            raise ConfigError("give --out DIR (Parquet) and/or --db URL (a database)")
        if self.db is not None:
            from causalsynth.sinks.sql import check_options  # SQLAlchemy only when a database is asked for

            check_options(self.db, self.schema, self.if_exists)


@dataclass(frozen=True)
class Run:
    """How a job runs: in this process, or on a Dask cluster (``workers`` starts a local one,
    ``scheduler`` is a running one's address; ``cluster``: that start, begun by the caller with
    ``jobs.cluster.start_cluster``); ``progress`` hears its stages and blocks; ``at_once``: blocks
    sampled by one call of the device (on the CPU, the same bytes whatever it is)."""

    progress: Progress | None = None
    workers: int | None = None
    scheduler: str | None = None
    cluster: ClusterStart | None = None
    at_once: int = 1


def sample_dataset(config: Config, n_prs: int, seed: int, *, to: Destination | str | Path,
                   run: Run | None = None, intervention: Intervention | None = None) -> dict[str, Any]:
    """Sample ``n_prs`` PRs and all their child rows into ``to``; return the manifest.

    ``to`` is a :class:`Destination`, or a path or URL for Parquet alone. Nothing
    becomes visible until everything succeeded: the Parquet output gets its
    manifest last (a local directory is published from a staging directory),
    the database load is one transaction. The dataset is a function of
    (config, seed, n_prs, intervention): byte-identical on every run, whatever
    the engine, the number of workers or the order blocks run in.
    """
    return _sample(config, n_prs, seed, Destination.of(to), run or Run(), intervention)


def _sample(config: Config, n_prs: int, seed: int, to: Destination, run: Run, intervention: Intervention | None,
            intercepts: dict[str, float] | None = None, factual: dict[str, Any] | None = None) -> dict[str, Any]:
    """``sample_dataset``; a twin also reuses its factual dataset's calibration ``intercepts`` and names
    that dataset (``factual``) in its manifest."""
    check_size(n_prs, seed)
    to.check()
    progress = run.progress or Progress()
    with ExitStack() as stack:
        output = None if to.out is None else stack.enter_context(staged_location(to.out, force=to.force))
        target = None if output is None else output.location
        client = None
        from causalsynth.engine import cache

        cache_dir = None if cache.DIRECTORY is None else str(cache.DIRECTORY)
        cluster = run.cluster
        if cluster is None:
            cluster = start_cluster(run.workers, run.scheduler, to.out, to.db)
            if cluster is not None:
                stack.callback(cluster.close)
        if cluster is not None:
            progress.on_stage(f"connecting to {run.scheduler}" if run.scheduler else f"starting {run.workers} workers")
            client = cluster.client()
            stack.enter_context(client.as_current())  # the client Dask's helpers (``wait``) find, in this thread
            warming = warm_up(client, config.data, cache_dir)  # noqa: F841 - held until the job ends
        parquet = None if target is None else ParquetSink(target)
        if to.db is not None:
            from causalsynth.sinks.sql import SqlSink

            sql = SqlSink(to.db, schema=to.schema, if_exists=to.if_exists)
        else:
            sql = None
        sinks: list[Sink] = [s for s in (parquet, sql) if s is not None]
        checkpoint = stack.enter_context(deferred_interrupts())
        try:
            world = prepare_world(config, intervention, intercepts, progress)
            checkpoint()
            program = world.program
            specs = table_specs(program)
            if output is not None:
                output.begin()  # from here on the job writes: a forced replacement removes the old dataset now
            for sink in sinks:
                sink.open(specs)
            job = BlockJob(config=config.data, params=world.params, do=world.do, seed=seed, n_prs=n_prs,
                           parts=parquet, cache_dir=cache_dir, versions=versions(program.model),
                           at_once=run.at_once)
            n_blocks = -(-n_prs // program.block_prs)
            indices = list(range(n_blocks))
            progress.on_start(n_blocks)
            if client is not None:
                stream = run_on_dask(client, job, indices, checkpoint=checkpoint)
            else:
                stream = run_local(job, program, indices, in_order=[s for s in sinks if s.in_order],
                                   checkpoint=checkpoint)
            results: dict[int, BlockResult] = {}
            counts = Counts()
            with closing(stream):  # on a failure, blocks still being written finish before the clean-up
                for result in stream:
                    results[result.index] = result
                    counts.add(result.counts)
                    progress.on_block(result.n_rows)
            parts = _parts(specs, [results[i] for i in range(n_blocks)]) if target is not None else None
            if client is not None and target.local:
                _check_parts_arrived(target, to.out, parts)
            if sql is not None and client is not None:  # the workers wrote only parts: the database reads them
                from causalsynth.jobs.load import stream_parts  # pandas: only for this

                stream_parts(target, {s.name: parts[s.name] for s in specs}, sql, progress, checkpoint)
            for sink in sinks:
                sink.close()
            progress.on_stage("writing manifest")
            manifest = _manifest(world, config, seed, n_prs, specs, counts, parts, factual)
            data = manifest_bytes(manifest)
            for sink in sinks:
                sink.commit(data)
        except BaseException:
            for sink in sinks:
                sink.abort()
            raise
    return manifest


def _check_parts_arrived(target: Location, out, parts: dict[str, list[dict[str, Any]]]) -> None:
    """Workers on other machines write to their own disks: a local ``--out`` must be a filesystem
    they all share, and every part they reported must be here."""
    missing = [p["file"] for table in parts.values() for p in table if not target.is_file(p["file"])]
    if missing:
        raise OutputError(f"--out {out}: {len(missing)} of the parts the workers wrote are not here (e.g. "
                          f"{missing[0]}); with --scheduler, --out must be a filesystem every worker shares, or an "
                          f"object store URL")


def _parts(specs: list[TableSpec], results: list[BlockResult]) -> dict[str, list[dict[str, Any]]]:
    """Each table's parts in block order, with the row range each holds."""
    out = {}
    for spec in specs:
        first, parts = 0, []
        for result in results:
            part = result.parts[spec.name]
            parts.append({"file": part["file"], "first_row": first, "rows": part["rows"], "sha256": part["sha256"]})
            first += part["rows"]
        out[spec.name] = parts
    return out


def _manifest(world, config, seed, n_prs, specs, counts: Counts, parts, factual) -> dict[str, Any]:
    program = world.program
    return {
        "format": FORMAT,
        "format_version": FORMAT_VERSION,
        "package_version": package_version(),
        "model": {"name": config.model.NAME, "version": config.model.VERSION,
                  "sha256": model_digest(config.model)},
        "seed": seed,
        "n_prs": n_prs,
        "block_prs": program.block_prs,
        "intervention": world.intervention.to_json(),
        "factual": factual,
        "config": config.data,
        "calibration": {"intercepts": world.intercepts},
        "runtime": {"jax": jax.__version__, "backend": jax.default_backend()},
        "tables": {
            spec.name: {
                "rows": counts.rows.get(spec.name, 0),
                "key": spec.key,
                "parent": None if spec.parent is None else {"table": spec.parent[0], "key": spec.parent[1]},
                "schema": _schema_json(spec.schema, program.table(spec.name)),
                "parts": None if parts is None else parts[spec.name],
            }
            for spec in specs
        },
        "headlines": headlines(program, counts),
        "marginals": tallies_to_json(counts.tallies),
        "graph": {"edges": [list(e) for e in model_graph(program).edges]},
    }


def sample_twin(factual_dir: str | Path, intervention: Intervention, *, to: Destination | str | Path,
                run: Run | None = None) -> dict[str, Any]:
    """The twin of a factual dataset under ``intervention``: same seed, config, size, keys and noise."""
    factual = locate(factual_dir)
    data = manifest_bytes_at(factual)
    manifest = parse_manifest(factual, data)
    model = manifest["model"]
    config = dataset_config(factual_dir, manifest)
    if (config.model.NAME, config.model.VERSION) != (model["name"], model["version"]):
        raise ConfigError(f"{factual_dir}: sampled with model {model['name']} {model['version']}, but this "
                          f"installation has {config.model.NAME} {config.model.VERSION}; its twin would "
                          f"not share its mechanisms")
    from causalsynth.dataset.reading import recorded_intervention  # it imports pandas, which sample never needs

    base = recorded_intervention(factual, manifest, config, Program(config))
    return _sample(config, manifest["n_prs"], manifest["seed"], Destination.of(to), run or Run(),
                   base.merged(intervention), intercepts=manifest["calibration"]["intercepts"],
                   factual={"path": factual.absolute, "manifest_sha256": hashlib.sha256(data).hexdigest()})
