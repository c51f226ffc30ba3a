"""The benchmark scripts measure what they say: the floors write the tables they stand for, and
`bench_device.py` samples, compares two runs and judges the marginals on whatever device is here."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pyarrow.parquet as pq
import pytest

BENCHMARKS = Path(__file__).parents[1] / "benchmarks"


def _reference(kind: str, n_prs: int, out: Path) -> int:
    done = subprocess.run([sys.executable, str(BENCHMARKS / "references.py"), kind, str(n_prs), str(out)],
                          capture_output=True, text=True, check=True)
    return int(done.stdout)


@pytest.mark.slow
def test_the_all_core_floor_writes_the_floors_rows_as_one_part_per_table_and_block(tmp_path):
    single = _reference("floor", 12_000, tmp_path / "floor")
    overlapped = _reference("overlapped", 12_000, tmp_path / "overlapped")
    assert single == overlapped > 12_000 * 100
    tables = sorted(p.stem for p in (tmp_path / "floor").glob("*.parquet"))
    assert tables == sorted(p.name for p in (tmp_path / "overlapped").iterdir())
    for table in tables:
        parts = sorted((tmp_path / "overlapped" / table).glob("part-*.parquet"))
        assert len(parts) == 3  # blocks of 5,000 PRs, the last one short
        whole = pq.read_table(tmp_path / "floor" / f"{table}.parquet")
        assert sum(pq.read_metadata(p).num_rows for p in parts) == whole.num_rows
        assert pq.read_schema(parts[0]).remove_metadata() == whole.schema.remove_metadata()


@pytest.mark.slow
def test_bench_device_samples_twice_and_finds_the_same_bytes_and_the_marginals_met(tmp_path):
    """Two blocks a call: also checked against one block a call (the same bytes, on the CPU)."""
    done = subprocess.run([sys.executable, str(BENCHMARKS / "bench_device.py"), "--sizes", "1000",
                           "--blocks-at-once", "2", "--print-only"], capture_output=True, text=True, timeout=600)
    assert done.returncode == 0, done.stderr[-2000:]
    row = next(line for line in done.stdout.splitlines() if line.startswith("| 1,000 |"))
    cells = [c.strip() for c in row.strip("|").split("|")]
    assert cells[5] == "yes"
    passed, of = cells[6].split(" of ")
    assert passed == of and int(of) > 10
    assert "JAX samples on: cpu x1, 2 block(s) a call" in done.stdout
    assert "1,000 PRs sampled one block a call: the same bytes." in done.stdout
