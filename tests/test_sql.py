"""SQL sinks against real databases: SQLite, and a real PostgreSQL server (never a mock)."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pyarrow as pa
import pyarrow.parquet as pq
import pytest
import sqlalchemy as sa
from conftest import SMALL_BLOCKS, TABLES, part_path, read_tables, record_part, sha256
from typer.testing import CliRunner

from causalsynth.cli import app
from causalsynth.dataset.manifest import read_manifest
from causalsynth.errors import CausalsynthError
from causalsynth.jobs.load import load_dataset
from causalsynth.jobs.sample import sample_dataset

runner = CliRunner()
FKS = {"system_runs": ("pr_id", "pull_requests"), "service_metrics": ("run_id", "system_runs"),
       "ecommerce_flows": ("run_id", "system_runs"), "flow_steps": ("flow_id", "ecommerce_flows")}


@pytest.fixture(scope="module")
def dataset(tmp_path_factory, small_config) -> Path:
    """What a load must keep (rows, keys, values, one transaction) shows at any size: 600 PRs, about
    100,000 rows."""
    out = tmp_path_factory.mktemp("sql") / "ds"
    sample_dataset(config=small_config, n_prs=600, seed=8, to=out)
    return out


@pytest.fixture(params=["sqlite", "postgresql"])
def db_url(request, tmp_path):
    if request.param == "sqlite":
        return f"sqlite:///{tmp_path / 'test.db'}"
    return request.getfixturevalue("postgres_url")


def counts(url: str, schema: str | None = None) -> dict[str, int]:
    engine = sa.create_engine(url)
    prefix = f'"{schema}".' if schema else ""
    with engine.connect() as conn:
        inspector = sa.inspect(conn)
        out = {t: conn.exec_driver_sql(f"SELECT count(*) FROM {prefix}{t}").scalar()
               for t in TABLES if inspector.has_table(t, schema=schema)}
        if inspector.has_table("causalsynth_datasets", schema=schema):
            out["causalsynth_datasets"] = conn.exec_driver_sql(
                f"SELECT count(*) FROM {prefix}causalsynth_datasets").scalar()
    engine.dispose()
    return out


def test_round_trip(dataset, db_url):
    rows = load_dataset(directory=dataset, db=db_url)
    manifest = read_manifest(dataset)
    expected = {name: t["rows"] for name, t in manifest["tables"].items()}
    assert rows == expected
    assert counts(db_url) == expected | {"causalsynth_datasets": 1}
    tables = read_tables(dataset)
    engine = sa.create_engine(db_url)
    with engine.connect() as conn:
        for child, (fk, parent) in FKS.items():
            orphans = conn.exec_driver_sql(
                f"SELECT count(*) FROM {child} c LEFT JOIN {parent} p ON c.{fk} = p.{fk} "
                f"WHERE p.{fk} IS NULL").scalar()
            assert orphans == 0, child
        regression = conn.exec_driver_sql(
            "SELECT avg(CASE WHEN has_performance_regression THEN 1.0 ELSE 0.0 END) FROM pull_requests").scalar()
        conversion = conn.exec_driver_sql(
            "SELECT avg(CASE WHEN converted THEN 1.0 ELSE 0.0 END) FROM ecommerce_flows").scalar()
        failed = conn.exec_driver_sql("SELECT count(*) FROM system_runs WHERE run_status = 'FAILED'").scalar()
        latency = conn.exec_driver_sql("SELECT sum(CAST(latency_ms AS DOUBLE PRECISION)) FROM flow_steps").scalar()
        registered = conn.exec_driver_sql("SELECT manifest_sha256, n_prs FROM causalsynth_datasets").one()
    engine.dispose()
    assert float(regression) == pytest.approx(tables["pull_requests"].has_performance_regression.mean(), abs=1e-12)
    assert float(conversion) == pytest.approx(tables["ecommerce_flows"].converted.mean(), abs=1e-12)
    assert failed == (tables["system_runs"].run_status == "FAILED").sum()
    assert float(latency) == pytest.approx(tables["flow_steps"].latency_ms.astype(float).sum(), rel=1e-9)
    assert registered == (sha256(dataset / "manifest.json"), 600)


def test_postgres_schema_keys_indexes_and_comments(dataset, postgres_url):
    load_dataset(directory=dataset, db=postgres_url, schema="synth")
    engine = sa.create_engine(postgres_url)
    with engine.connect() as conn:
        inspector = sa.inspect(conn)
        assert inspector.get_pk_constraint("flow_steps", schema="synth")["constrained_columns"] == ["step_id"]
        fks = inspector.get_foreign_keys("flow_steps", schema="synth")
        assert [(f["constrained_columns"], f["referred_table"]) for f in fks] == [(["flow_id"], "ecommerce_flows")]
        assert any(ix["column_names"] == ["flow_id"] for ix in inspector.get_indexes("flow_steps", schema="synth"))
        columns = {c["name"]: c for c in inspector.get_columns("pull_requests", schema="synth")}
        assert "regress" in columns["has_performance_regression"]["comment"]
        assert str(columns["pr_id"]["type"]) == "BIGINT"
        assert str(columns["merged_at"]["type"]).startswith("TIMESTAMP")
    engine.dispose()
    assert counts(postgres_url, "synth")["flow_steps"] == read_manifest(dataset)["tables"]["flow_steps"]["rows"]


def test_spans_load_with_null_roots_and_references_that_join(tmp_path, db_url):
    from causalsynth.config.loading import load_config

    traced = tmp_path / "traced"
    sample_dataset(config=load_config(overrides=[SMALL_BLOCKS, "telemetry.enabled=true", "telemetry.traces.enabled=true",
                                                 "telemetry.logs.enabled=true"]), n_prs=10, seed=2, to=traced)
    load_dataset(directory=traced, db=db_url)
    rows = {n: t["rows"] for n, t in read_manifest(traced)["tables"].items()}
    engine = sa.create_engine(db_url)
    with engine.connect() as conn:
        spans, with_parent = conn.exec_driver_sql("SELECT count(*), count(parent_span_id) FROM trace_spans").one()
        joined = conn.exec_driver_sql("SELECT count(*) FROM trace_logs l JOIN trace_spans s ON s.span_id = l.span_id "
                                      "AND s.trace_id = l.trace_id").scalar()
        parents = conn.exec_driver_sql("SELECT count(*) FROM trace_spans c JOIN trace_spans p "
                                       "ON p.span_id = c.parent_span_id AND p.trace_id = c.trace_id").scalar()
    engine.dispose()
    assert spans == rows["trace_spans"] and with_parent == parents == spans - rows["traces"]
    assert joined == rows["trace_logs"]


def test_sample_straight_into_postgres(tmp_path, postgres_url):
    result = runner.invoke(app, ["sample", "--n-prs", "200", "--db", postgres_url, "--set", SMALL_BLOCKS])
    assert result.exit_code == 0, result.output
    assert "***" in result.output and "causalsynth-test" not in result.output
    found = counts(postgres_url)
    assert found["pull_requests"] == 200 and found["system_runs"] == 1_000 and found["causalsynth_datasets"] == 1


def test_sample_to_parquet_and_sqlite_agree(tmp_path):
    url = f"sqlite:///{tmp_path / 'both.db'}"
    result = runner.invoke(app, ["sample", "--n-prs", "150", "--out", str(tmp_path / "ds"), "--db", url,
                                 "--set", SMALL_BLOCKS])
    assert result.exit_code == 0, result.output
    manifest = read_manifest(tmp_path / "ds")
    assert counts(url) == {n: t["rows"] for n, t in manifest["tables"].items()} | {"causalsynth_datasets": 1}
    engine = sa.create_engine(url)
    with engine.connect() as conn:
        sha = conn.exec_driver_sql("SELECT manifest_sha256 FROM causalsynth_datasets").scalar()
    engine.dispose()
    assert sha == sha256(tmp_path / "ds" / "manifest.json")


def test_append_twice_refused_replace_twice_idempotent(dataset, db_url):
    load_dataset(directory=dataset, db=db_url)
    before = counts(db_url)
    with pytest.raises(CausalsynthError, match="already exist"):
        load_dataset(directory=dataset, db=db_url)
    with pytest.raises(CausalsynthError, match="already loaded"):
        load_dataset(directory=dataset, db=db_url, if_exists="append")
    assert counts(db_url) == before
    load_dataset(directory=dataset, db=db_url, if_exists="replace")
    load_dataset(directory=dataset, db=db_url, if_exists="replace")
    assert counts(db_url) == before


def _corrupt_last_table(dataset: Path, target: Path) -> Path:
    """A copy of ``dataset`` whose flow_steps repeat a key (a primary-key violation)."""
    import shutil

    shutil.copytree(dataset, target)
    path = part_path(target, "flow_steps")
    table = pq.read_table(path)
    pq.write_table(pa.concat_tables([table, table.slice(0, 1)]), path)
    record_part(target, "flow_steps")
    manifest = json.loads((target / "manifest.json").read_text())
    manifest["seed"] = -1  # another dataset, as far as the registry knows
    (target / "manifest.json").write_text(json.dumps(manifest))
    return target


def test_constraint_violation_in_last_table_leaves_database_as_it_was(dataset, db_url, tmp_path):
    load_dataset(directory=dataset, db=db_url)
    before = counts(db_url)
    broken = _corrupt_last_table(dataset, tmp_path / "broken")
    for mode in ("replace", "append"):
        with pytest.raises(CausalsynthError) as info:
            load_dataset(directory=broken, db=db_url, if_exists=mode)
        assert "flow_steps" in str(info.value) or "constraint" in str(info.value).lower() \
            or "unique" in str(info.value).lower()
        assert counts(db_url) == before
    fresh = db_url.replace("test.db", "fresh.db") if db_url.startswith("sqlite") else None
    if fresh:
        with pytest.raises(CausalsynthError):
            load_dataset(directory=broken, db=fresh)
        assert counts(fresh) == {}


def test_killed_during_copy_leaves_nothing(dataset_20k, postgres_url):
    env = dict(os.environ)
    proc = subprocess.Popen([sys.executable, "-c", "from causalsynth.cli import run; run()", "load",
                             str(dataset_20k), "--db", postgres_url],
                            stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, env=env)
    engine = sa.create_engine(postgres_url)
    deadline = time.monotonic() + 120
    copying = False
    while time.monotonic() < deadline and proc.poll() is None and not copying:
        with engine.connect() as conn:
            copying = bool(conn.execute(sa.text("SELECT count(*) FROM pg_stat_activity WHERE query LIKE :q"),
                                        {"q": 'COPY%flow_steps%'}).scalar())
        time.sleep(0.05)
    assert copying, proc.communicate()
    proc.send_signal(signal.SIGKILL)
    proc.wait(timeout=30)
    time.sleep(0.5)
    engine.dispose()
    assert counts(postgres_url) == {}


@pytest.mark.parametrize("make_url, expected", [
    (lambda u: u.set(port=1), "Connection refused"),
    (lambda u: u.set(password="wrong"), "password authentication failed"),
    (lambda u: u.set(database="no_such_database"), 'database "no_such_database" does not exist'),
    (lambda u: u.set(drivername="postgresql+pg8000"), "unsupported PostgreSQL driver"),
    (lambda u: u.set(drivername="mysql"), "unsupported database"),
])
def test_connection_failures_are_one_clear_line(dataset, postgres_admin_url, make_url, expected):
    url = make_url(sa.make_url(postgres_admin_url)).render_as_string(hide_password=False)
    result = runner.invoke(app, ["load", str(dataset), "--db", url])
    assert result.exit_code == 2, result.output
    assert expected in result.output
    assert "causalsynth-test" not in result.output and "wrong" not in result.output.replace("password", "")
    assert "Traceback" not in result.output


def test_sqlite_bad_input(dataset, tmp_path):
    url = f"sqlite:///{tmp_path / 'x.db'}"
    result = runner.invoke(app, ["load", str(dataset), "--db", url, "--schema", "s"])
    assert result.exit_code == 2 and "SQLite has no schemas" in result.output
    result = runner.invoke(app, ["load", str(dataset), "--db", url, "--if-exists", "merge"])
    assert result.exit_code == 2 and "fail, replace, append" in result.output
    result = runner.invoke(app, ["load", str(tmp_path / "nothing"), "--db", url])
    assert result.exit_code == 2 and "not a causalsynth dataset" in result.output
    result = runner.invoke(app, ["sample", "--n-prs", "5"])
    assert result.exit_code == 2 and "--out DIR" in result.output


def test_changed_file_is_refused(dataset, tmp_path):
    import shutil

    copy = tmp_path / "ds"
    shutil.copytree(dataset, copy)
    with open(part_path(copy, "pull_requests"), "r+b") as f:
        f.seek(100)
        byte = f.read(1)
        f.seek(100)
        f.write(bytes([byte[0] ^ 0xFF]))
    url = f"sqlite:///{tmp_path / 'x.db'}"
    with pytest.raises(CausalsynthError, match="changed since it was written"):
        load_dataset(directory=copy, db=url)
    assert counts(url) == {}


def test_missing_postgres_driver_is_one_clear_line(dataset, postgres_admin_url, monkeypatch):
    monkeypatch.setitem(sys.modules, "adbc_driver_postgresql.dbapi", None)  # import now fails
    result = runner.invoke(app, ["load", str(dataset), "--db", postgres_admin_url])
    assert result.exit_code == 2 and "driver not installed" in result.output
    assert "pip install adbc-driver-postgresql" in result.output
