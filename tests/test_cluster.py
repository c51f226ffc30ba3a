"""Blocks on a Dask cluster, parts on a local disk or in an S3 bucket, and the layout every command reads.

The clusters are real (dask.distributed's LocalCluster: worker processes
talking to a scheduler over TCP), and so is the bucket (moto's S3 server over
HTTP, reached through s3fs as any S3 client would).
"""

from __future__ import annotations

import hashlib
import json
import os
import signal
import threading
import time
import uuid
from dataclasses import replace
from pathlib import Path

import pyarrow as pa
import pyarrow.parquet as pq
import pytest
import sqlalchemy as sa
from conftest import SMALL_BLOCKS, TABLES, read_tables
from typer.testing import CliRunner

import causalsynth.jobs.cluster
from causalsynth.cli import app
from causalsynth.dataset.manifest import read_manifest
from causalsynth.errors import ClusterError
from causalsynth.jobs.load import load_dataset
from causalsynth.jobs.sample import Run, sample_dataset
from causalsynth.tasks.ml import Dataset
from causalsynth.validate.quality import validate_dataset

runner = CliRunner()
N_PRS, SEED = 3_000, 4  # three blocks of 1,000


def contents(directory: Path) -> dict[str, bytes]:
    """Every part's bytes by file name, and the manifest without the runtime that wrote it."""
    manifest = json.loads((directory / "manifest.json").read_text())
    manifest.pop("runtime")
    files = {p["file"]: (directory / p["file"]).read_bytes() for t in manifest["tables"].values() for p in t["parts"]}
    return files | {"manifest.json": json.dumps(manifest, sort_keys=True).encode()}


@pytest.fixture(scope="module")
def reference(tmp_path_factory, small_config) -> Path:
    """The dataset sampled in this process, blocks in ascending order."""
    out = tmp_path_factory.mktemp("reference") / "ds"
    sample_dataset(config=small_config, n_prs=N_PRS, seed=SEED, to=out)
    return out


def test_every_table_is_a_directory_of_parts_any_parquet_reader_reads(reference):
    import dask.dataframe as dd
    import duckdb
    import polars as pl

    manifest = read_manifest(reference)
    for table in TABLES:
        parts = manifest["tables"][table]["parts"]
        assert [p["file"] for p in parts] == [f"{table}/part-{i:06d}.parquet" for i in range(3)]
        assert [p["first_row"] for p in parts] == [0, parts[0]["rows"], parts[0]["rows"] + parts[1]["rows"]]
        assert all(hashlib.sha256((reference / p["file"]).read_bytes()).hexdigest() == p["sha256"] for p in parts)
        whole = pq.read_table(reference / table)  # pyarrow's dataset reader: the directory is one table
        assert whole.num_rows == manifest["tables"][table]["rows"]
        key = manifest["tables"][table]["key"]
        keys = whole.column(key).to_pylist()
        assert keys == sorted(keys)  # part names sort in row order
        pattern = str(reference / table / "*.parquet")
        assert duckdb.sql(f"SELECT count(*), min({key}), max({key}) FROM '{pattern}'").fetchall() == [
            (len(keys), keys[0], keys[-1])]
        assert pl.read_parquet(pattern)[key].to_list() == keys
        assert dd.read_parquet(str(reference / table))[key].compute().tolist() == keys


def test_a_local_cluster_writes_to_s3_and_every_reader_reads_it_back(s3_endpoint, tmp_path, reference, monkeypatch):
    import s3fs

    fs = s3fs.S3FileSystem()
    bucket = f"causalsynth-{uuid.uuid4().hex[:8]}"
    fs.mkdir(bucket)
    url = f"s3://{bucket}/runs/ds"
    database = f"sqlite:///{tmp_path / 'cluster.db'}"
    result = runner.invoke(app, ["sample", "--n-prs", str(N_PRS), "--seed", str(SEED), "--out", url,
                                 "--set", SMALL_BLOCKS, "--workers", "2", "--db", database])
    assert result.exit_code == 0, result.output
    local = tmp_path / "copy"
    fs.get(f"{bucket}/runs/ds", str(local), recursive=True)
    assert contents(local) == contents(reference), "two workers on S3 wrote what one process wrote locally"
    expected = {t: e["rows"] for t, e in read_manifest(reference)["tables"].items()}
    engine_ = sa.create_engine(database)
    with engine_.connect() as conn:  # the cluster's parts, loaded by the command in one transaction
        assert {t: conn.exec_driver_sql(f"SELECT count(*) FROM {t}").scalar() for t in expected} == expected
        registered = conn.exec_driver_sql("SELECT manifest_sha256 FROM causalsynth_datasets").scalar()
    engine_.dispose()
    assert registered == hashlib.sha256(fs.cat(f"{bucket}/runs/ds/manifest.json")).hexdigest()

    result = runner.invoke(app, ["validate", url])
    assert result.exit_code == 0, result.output
    assert "valid: all" in result.output
    frames = Dataset(url)
    assert frames.read("flow_steps", ["step_id"]).step_id.is_monotonic_increasing
    assert load_dataset(directory=url, db=f"sqlite:///{tmp_path / 'x.db'}") == expected
    twin = runner.invoke(app, ["variant", url, "--variant", "no_regressions", "--out", str(tmp_path / "twin")])
    assert twin.exit_code == 0, twin.output
    assert read_manifest(tmp_path / "twin")["factual"]["path"] == url
    exported = runner.invoke(app, ["export", url, "--tasks", "pr_impact", "--out", str(tmp_path / "ml")])
    assert exported.exit_code == 0, exported.output
    assert pq.read_table(tmp_path / "ml" / "pr_impact.parquet").num_rows == N_PRS
    scored = runner.invoke(app, ["evaluate", url, "--tasks", "pr_impact"])
    assert scored.exit_code == 0, scored.output
    assert "pr_impact" in json.loads(fs.cat(f"{bucket}/runs/ds/evaluation.json"))  # written beside the dataset
    no_default = runner.invoke(app, ["export", url, "--tasks", "pr_impact"])
    assert no_default.exit_code == 2 and "--out: give a local directory" in no_default.output

    again = runner.invoke(app, ["sample", "--n-prs", "10", "--out", url, "--set", SMALL_BLOCKS])
    assert again.exit_code == 2 and "is not empty; pass --force" in again.output
    whole = runner.invoke(app, ["sample", "--n-prs", "10", "--out", f"s3://{bucket}"])
    assert whole.exit_code == 2 and "give a prefix inside the bucket" in whole.output
    monkeypatch.setattr(causalsynth.jobs.cluster, "CONNECT_TIMEOUT", "2s")
    unreachable = runner.invoke(app, ["sample", "--n-prs", "10", "--out", url, "--force",
                                      "--scheduler", "tcp://127.0.0.1:9"])
    assert unreachable.exit_code == 2 and "cannot connect" in unreachable.output
    assert read_manifest(url)["n_prs"] == N_PRS, "a --force job that failed before writing kept the old dataset"
    missing = runner.invoke(app, ["sample", "--n-prs", "10", "--out", "s3://no-such-bucket-here/ds"])
    assert missing.exit_code == 2 and "bucket no-such-bucket-here does not exist" in missing.output
    replaced = runner.invoke(app, ["sample", "--n-prs", "10", "--out", url, "--set", SMALL_BLOCKS, "--force"])
    assert replaced.exit_code == 0, replaced.output
    assert read_manifest(url)["n_prs"] == 10
    assert sorted(fs.ls(f"{bucket}/runs/ds/flow_steps")) == [f"{bucket}/runs/ds/flow_steps/part-000000.parquet"]


def test_a_killed_worker_leaves_no_dataset_and_a_rerun_completes(tmp_path, small_config, reference):
    import dask
    from distributed import Client, LocalCluster

    out, n_prs = tmp_path / "ds", 20_000
    failures = []

    def job():
        try:
            sample_dataset(config=small_config, n_prs=n_prs, seed=SEED, to=out, run=Run(scheduler=address))
        except Exception as exc:  # noqa: BLE001 - the test inspects it
            failures.append(exc)

    # Dask would rerun the dead worker's block elsewhere; with no failures allowed, the job must fail.
    with dask.config.set({"distributed.scheduler.allowed-failures": 0}), \
            LocalCluster(n_workers=2, threads_per_worker=1, processes=True, dashboard_address=None) as cluster, \
            Client(cluster) as client:
        address = cluster.scheduler_address
        pids = list(client.run(os.getpid).values())
        thread = threading.Thread(target=job)
        thread.start()
        deadline = time.monotonic() + 120
        while not list(tmp_path.glob(".ds.*.partial/flow_steps/part-*.parquet")) and time.monotonic() < deadline:
            time.sleep(0.05)
        os.kill(pids[0], signal.SIGKILL)
        thread.join(timeout=180)
        assert failures and isinstance(failures[0], ClusterError), failures
        assert "KilledWorker" in str(failures[0])
        assert list(tmp_path.iterdir()) == [], "nothing is left that looks like a dataset, or half of one"

        client.wait_for_workers(2, timeout=60)
        sample_dataset(config=small_config, n_prs=n_prs, seed=SEED, to=out, run=Run(scheduler=address))
    assert validate_dataset(out) and all(c.passed for c in validate_dataset(out))
    # The first blocks of a larger dataset are the smaller one's, byte for byte.
    first = {f: data for f, data in contents(out).items() if f.endswith(("000000.parquet", "000001.parquet"))}
    assert first == {f: data for f, data in contents(reference).items() if f in first}


def test_an_unreachable_scheduler_is_refused_before_any_work(tmp_path, monkeypatch):
    monkeypatch.setattr(causalsynth.jobs.cluster, "CONNECT_TIMEOUT", "2s")
    started = time.monotonic()
    result = runner.invoke(app, ["sample", "--n-prs", "10", "--out", str(tmp_path / "ds"),
                                 "--scheduler", "tcp://127.0.0.1:9"])
    assert result.exit_code == 2 and "--scheduler tcp://127.0.0.1:9: cannot connect" in result.output
    assert time.monotonic() - started < 30, "refused before compiling or calibrating"
    assert list(tmp_path.iterdir()) == []


def test_local_workers_import_the_engine_as_they_start_and_share_a_gpu():
    """So that, started in the background by the command, they import JAX while it loads its config; and
    so that on a GPU the workers of one machine share its memory (JAX would give the first 75 %)."""
    import sys

    from causalsynth.jobs.cluster import ClusterStart

    start = ClusterStart(workers=1, scheduler=None)
    try:
        loaded = start.client().run(lambda: ("causalsynth.jobs.blocks" in sys.modules,
                                             os.environ.get("XLA_PYTHON_CLIENT_PREALLOCATE")))
    finally:
        start.close()
    assert list(loaded.values()) == [(True, "false")]


def test_format_version_1_datasets_are_still_read(tmp_path, reference):
    """A dataset of one file per table (format version 1) reads, validates and loads as before."""
    old = tmp_path / "old"
    old.mkdir()
    manifest = json.loads((reference / "manifest.json").read_text())
    manifest["format_version"] = 1
    for table, entry in manifest["tables"].items():
        whole = pa.concat_tables([pq.read_table(reference / p["file"]) for p in entry.pop("parts")])
        pq.write_table(whole, old / f"{table}.parquet")
        entry["file"] = f"{table}.parquet"
        entry["sha256"] = hashlib.sha256((old / entry["file"]).read_bytes()).hexdigest()
    (old / "manifest.json").write_text(json.dumps(manifest))
    checks = validate_dataset(old)
    assert all(c.passed for c in checks), [c for c in checks if not c.passed]
    for name, frame in read_tables(reference).items():
        got = Dataset(old).read(name, list(frame.columns))
        assert len(got) == len(frame) and (got[frame.columns[0]].to_numpy() == frame.iloc[:, 0].to_numpy()).all()


def test_parts_a_remote_worker_kept_on_its_own_disk_are_reported(tmp_path):
    """With --scheduler and a local --out, every part a worker reported must have arrived here."""
    from causalsynth.dataset.location import locate
    from causalsynth.errors import OutputError
    from causalsynth.jobs.sample import _check_parts_arrived

    (tmp_path / "flow_steps").mkdir()
    (tmp_path / "flow_steps" / "part-000000.parquet").write_bytes(b"x")
    parts = {"flow_steps": [{"file": f"flow_steps/part-00000{i}.parquet"} for i in range(2)]}
    with pytest.raises(OutputError, match="1 of the parts the workers wrote are not here .*every worker shares"):
        _check_parts_arrived(locate(tmp_path), "DIR", parts)
    _check_parts_arrived(locate(tmp_path), "DIR", {"flow_steps": parts["flow_steps"][:1]})


def test_a_worker_running_other_code_is_refused(tmp_path, small_config):
    """Another causalsynth, model or library on a worker would give other bytes for the same seed."""
    from causalsynth.engine.world import prepare_world
    from causalsynth.jobs.blocks import BlockJob, run_blocks, versions

    world = prepare_world(small_config)
    job = BlockJob(config=small_config.data, params=world.params, do=world.do, seed=0, n_prs=10, parts=None,
                   cache_dir=None, versions=versions(small_config.model) | {"causalsynth": "0.0.1"})
    with pytest.raises(ClusterError, match="causalsynth .* here, 0.0.1 on the client"):
        run_blocks(job, [0])
    assert run_blocks(replace(job, versions=versions(small_config.model)), [0])[0].counts.rows["pull_requests"] == 10
