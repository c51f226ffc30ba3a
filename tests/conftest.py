"""Shared fixtures: configs, and real sampled datasets reused across tests."""

from __future__ import annotations

import hashlib
import json
import os
from pathlib import Path

import jax
import pandas as pd
import pyarrow as pa
import pyarrow.parquet as pq
import pytest

from causalsynth.config.loading import load_config
from causalsynth.dataset.manifest import read_manifest
from causalsynth.jobs.sample import sample_dataset

TABLES = ("pull_requests", "system_runs", "service_metrics", "ecommerce_flows", "flow_steps")
# Small blocks keep the many tiny datasets of these tests cheap; the block size is
# part of a dataset's identity, so tests that compare datasets use the same one.
SMALL_BLOCKS = "sampling.block_prs=1000"
# The second scenario, a plug-in model: small, so it compiles in a fifth of the shipped model's time.
CI_BUILDS = Path(__file__).parents[1] / "examples" / "ci_builds"


# The fast lane, `pytest -m "not services and not slow"`, runs without these: a server (PostgreSQL,
# an S3 endpoint, a Dask cluster), a browser, the docs build, a notebook kernel or the package index
# (and without the tests marked `slow` where they are defined).
SERVICE_FIXTURES = {"postgres_admin_url", "postgres_url", "s3_endpoint"}
SERVICE_MODULES = {"test_cluster.py", "test_report_browser.py", "test_docs.py", "test_environment.py"}


@pytest.hookimpl(tryfirst=True)  # before -m deselects by marker
def pytest_collection_modifyitems(items):
    for item in items:
        params = getattr(item, "callspec", None)
        on_postgres = params is not None and any(v == "postgresql" for v in params.params.values() if isinstance(v, str))
        if (SERVICE_FIXTURES & set(getattr(item, "fixturenames", ())) or item.path.name in SERVICE_MODULES
                or item.path.suffix == ".ipynb" or on_postgres):
            item.add_marker(pytest.mark.services)


# JAX as strict as NumPyro allows, in this process and in every command a test starts (they inherit the
# environment): a PRNG key consumed twice, or a NaN or an infinity out of a compiled function, is an
# error (validate's run of the model on stored columns, where one is a finding, lifts the last two);
# 32-bit floats, which the pinned bytes are. Not on: rank promotion "raise" and dtype promotion
# "strict" (NumPyro broadcasts plates by rank promotion, and its discrete distributions add bools to
# Python ints).
STRICT_JAX = {"jax_debug_key_reuse": True, "jax_debug_nans": True, "jax_debug_infs": True, "jax_enable_x64": False}


@pytest.fixture(scope="session", autouse=True)
def strict_jax():
    for name, value in STRICT_JAX.items():
        jax.config.update(name, value)
        os.environ[name.upper()] = str(value).lower()


@pytest.fixture(scope="session", autouse=True)
def compilation_cache(request, tmp_path_factory, strict_jax):
    """The CLI's caches (compiled samplers, traced structures, solved intercepts, graphs), on for every
    test as every command has them, in this process and in every command a test starts.

    They are kept between runs in pytest's own cache (``.pytest_cache``, emptied by
    ``--cache-clear``), never the user's: a later run compiles only what an edit changed, since every
    entry is keyed by the package's and the model's source, the shapes and the machine (which the
    caches' own tests hold). With pytest's cache off (``-p no:cacheprovider``), the session's
    temporary directory serves."""
    from causalsynth.engine import cache

    kept = getattr(request.config, "cache", None)
    directory = kept.mkdir("causalsynth") if kept is not None else tmp_path_factory.mktemp("causalsynth-cache")
    os.environ["CAUSALSYNTH_CACHE_DIR"] = str(directory)
    cache.enable(directory)


@pytest.fixture
def key():
    """The PRNG key of a test that runs a model or a sampler directly: block 0 of seed 0."""
    from causalsynth.engine.sampling import block_key

    return block_key(0, 0)


def sha256(path: Path) -> str:
    return hashlib.sha256(Path(path).read_bytes()).hexdigest()


def part_path(directory: Path, table: str, index: int = 0) -> Path:
    """The file of ``table``'s part ``index`` (a small test dataset has one block: part 0)."""
    return Path(directory) / table / f"part-{index:06d}.parquet"


def record_part(directory: Path, table: str, index: int = 0) -> None:
    """Record part ``index`` of ``table`` as it now is (its checksum and rows) in the manifest, as a
    pipeline that post-processes a dataset would."""
    path = part_path(directory, table, index)
    manifest = json.loads((Path(directory) / "manifest.json").read_text())
    entry = manifest["tables"][table]
    rows = pq.ParquetFile(path).metadata.num_rows
    entry["rows"] += rows - entry["parts"][index]["rows"]
    for later in entry["parts"][index + 1:]:  # the row ranges stay end to end
        later["first_row"] += rows - entry["parts"][index]["rows"]
    entry["parts"][index].update(sha256=sha256(path), rows=rows)
    (Path(directory) / "manifest.json").write_text(json.dumps(manifest))


def rewrite(directory: Path, table: str, change, index: int = 0) -> None:
    """Rewrite part ``index`` of ``table`` as ``change(frame)`` (a DataFrame, categories as pandas
    categoricals) with its schema, and update the manifest's checksum and row count to match."""
    path = part_path(directory, table, index)
    original = pq.read_table(path)
    if getattr(change, "on_arrow", False):  # pandas would write a NaN as a null
        changed = change(original)
    else:
        changed = pa.Table.from_pandas(change(original.to_pandas()), schema=original.schema, preserve_index=False)
    pq.write_table(changed, path)
    record_part(directory, table, index)


def with_value(frame: pd.DataFrame, column: str, rows, value) -> pd.DataFrame:
    """``frame`` with ``column`` set to ``value`` at positions ``rows``."""
    frame = frame.copy()
    if isinstance(frame[column].dtype, pd.CategoricalDtype) and value not in frame[column].cat.categories:
        frame[column] = frame[column].cat.add_categories([value])
    frame.loc[frame.index[rows], column] = value
    return frame


def read_table(directory: Path, table: str, columns: list[str] | None = None) -> pa.Table:
    """One table, every part in row order."""
    parts = read_manifest(directory)["tables"][table]["parts"]
    return pa.concat_tables([pq.read_table(Path(directory) / p["file"], columns=columns) for p in parts])


def read_tables(directory: Path) -> dict[str, pd.DataFrame]:
    """Every table of a dataset as a DataFrame (categories as plain strings)."""
    manifest = read_manifest(directory)
    frames = {}
    for name in manifest["tables"]:
        frame = read_table(directory, name).to_pandas()
        for column in frame.columns:
            if isinstance(frame[column].dtype, pd.CategoricalDtype):
                frame[column] = frame[column].astype(str)
        frames[name] = frame
    return frames


@pytest.fixture(scope="session")
def default_config():
    return load_config()


@pytest.fixture(scope="session")
def dataset_20k(tmp_path_factory, default_config) -> Path:
    """A default dataset of 20,000 PRs (about 3.3M rows)."""
    out = tmp_path_factory.mktemp("datasets") / "default-20k"
    sample_dataset(config=default_config, n_prs=20_000, seed=11, to=out)
    return out


@pytest.fixture(scope="session")
def tables_20k(dataset_20k) -> dict[str, pd.DataFrame]:
    return read_tables(dataset_20k)


@pytest.fixture(scope="session")
def program(default_config):
    """The default config's program (tables, sites), traced once."""
    from causalsynth.engine.program import Program

    return Program(default_config)


@pytest.fixture(scope="session")
def graph(program):
    """The default model's causal graph."""
    from causalsynth.causal.graph import model_graph

    return model_graph(program)


@pytest.fixture(scope="session")
def small_config():
    return load_config(overrides=[SMALL_BLOCKS])


@pytest.fixture(scope="session")
def postgres_admin_url():
    """A PostgreSQL server: $CAUSALSYNTH_TEST_DATABASE_URL, or one this session starts. Never skipped."""
    import os

    from postgres_server import PostgresServer

    given = os.environ.get("CAUSALSYNTH_TEST_DATABASE_URL")
    if given:
        yield given
        return
    server = PostgresServer()
    try:
        yield server.start()
    finally:
        server.stop()


@pytest.fixture(scope="session")
def s3_endpoint():
    """An S3 endpoint (moto's server, started for this session); S3 clients in this process and in
    processes it starts (Dask workers) find it through the standard AWS environment variables."""
    from s3_server import S3Server

    server = S3Server()
    with pytest.MonkeyPatch.context() as env:
        for key, value in server.start().items():
            env.setenv(key, value)
        try:
            yield server.url
        finally:
            server.stop()


@pytest.fixture
def postgres_url(postgres_admin_url):
    """A fresh, empty database on the test server, dropped afterwards."""
    import uuid

    import sqlalchemy as sa

    name = f"causalsynth_test_{uuid.uuid4().hex[:12]}"
    admin = sa.create_engine(postgres_admin_url, isolation_level="AUTOCOMMIT")
    with admin.connect() as conn:
        conn.exec_driver_sql(f'CREATE DATABASE "{name}"')
    url = sa.make_url(postgres_admin_url).set(database=name)
    yield url.render_as_string(hide_password=False)
    with admin.connect() as conn:
        conn.exec_driver_sql(f'DROP DATABASE "{name}" WITH (FORCE)')
    admin.dispose()
