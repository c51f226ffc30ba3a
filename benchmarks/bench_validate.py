"""Benchmark `causalsynth validate` on the default dataset against the cost of reading it.

Samples the default --n-prs dataset (seed 0) into a temporary directory, then,
in fresh processes, alternated --repeats times:

- `causalsynth validate DIR` end to end (start-up, imports and the model's
  trace included), wall clock, as the CLI runs it: re-sampling its default
  three blocks with the compiled sampler kept by the sampling run (the
  benchmark's own cache directory), and with ``--resample 0``;
- the floor: reading every column of every table once with
  ``pyarrow.parquet.read_table`` in the same kind of fresh process, which any
  check of every row has to pay.

Reports medians, their ratio, the number of checks, and the in-process time of
``validate_dataset`` alone (median of the same repeats, measured inside the
validate processes). The issue's budget: under 3 s at 50,000 PRs.

Usage: python benchmarks/bench_validate.py [--n-prs 50000] [--repeats 5]
Writes its section of benchmarks/RESULTS.md and prints it.
"""

from __future__ import annotations

import argparse
import datetime as dt
import json
import os
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE))
from results import machine, write_section  # noqa: E402

VALIDATE = """
import json, sys, time
t0 = time.perf_counter()
from causalsynth.engine import cache
from causalsynth.validate.quality import validate_dataset
cache.enable()
t1 = time.perf_counter()
checks = validate_dataset(sys.argv[1], resample=int(sys.argv[2]))
t2 = time.perf_counter()
print(json.dumps({"inner": t2 - t1, "checks": len(checks), "passed": all(c.passed for c in checks)}))
"""
READ_ALL = """
import sys, pathlib, pyarrow.parquet as pq
for path in sorted(pathlib.Path(sys.argv[1]).glob("*/part-*.parquet")):
    pq.read_table(path)
"""


def timed(cmd: list[str]) -> tuple[float, str]:
    started = time.perf_counter()
    out = subprocess.run(cmd, check=True, capture_output=True, text=True).stdout
    return time.perf_counter() - started, out


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--n-prs", type=int, default=50_000)
    parser.add_argument("--repeats", type=int, default=5)
    args = parser.parse_args()
    work = Path(tempfile.mkdtemp(prefix="causalsynth-validate-"))
    os.environ["CAUSALSYNTH_CACHE_DIR"] = str(work / "cache")
    ds = work / "ds"
    cli = str(Path(sys.executable).with_name("causalsynth"))
    try:
        subprocess.run([cli, "sample", "--n-prs", str(args.n_prs), "--out", str(ds)], check=True,
                       capture_output=True)
        rows = sum(t["rows"] for t in json.loads((ds / "manifest.json").read_text())["tables"].values())
        validate, inner, plain, floor, result = [], [], [], [], {}
        for _ in range(args.repeats):
            seconds, out = timed([sys.executable, "-c", VALIDATE, str(ds), "3"])
            result = json.loads(out)
            validate.append(seconds)
            inner.append(result["inner"])
            plain.append(timed([sys.executable, "-c", VALIDATE, str(ds), "0"])[0])
            floor.append(timed([sys.executable, "-c", READ_ALL, str(ds)])[0])
        cli_seconds = timed([cli, "validate", str(ds)])[0]
    finally:
        shutil.rmtree(work, ignore_errors=True)
    v, i, p, f = (float(np.median(x)) for x in (validate, inner, plain, floor))
    lines = [f"## `causalsynth validate` of the default {args.n_prs:,}-PR dataset ({rows:,} rows)", "",
             f"Measured {dt.date.today().isoformat()} by `python benchmarks/bench_validate.py` on {machine()}; "
             f"medians of {args.repeats} alternated fresh processes.", "",
             "| | seconds | vs reading every table |", "| --- | ---: | ---: |",
             f"| validate, a fresh process (imports and the model's trace included) | {v:.2f} | {v / f:.1f}x |",
             f"| `validate_dataset` alone, inside that process | {i:.2f} | {i / f:.1f}x |",
             f"| validate with `--resample 0`, a fresh process | {p:.2f} | {p / f:.1f}x |",
             f"| re-sampling three blocks (the difference) | {v - p:.2f} | |",
             f"| floor: `pyarrow.parquet.read_table` of every table, a fresh process | {f:.2f} | 1.0x |",
             f"| `causalsynth validate` (the CLI, printing its table), once | {cli_seconds:.2f} "
             f"| {cli_seconds / f:.1f}x |",
             "", f"With re-sampling, validate takes {v / p:.2f}x its time without (`--resample 0`), in the same "
             "run.", "",
             f"{result['checks']} checks, {'all pass' if result['passed'] else 'SOME FAIL'}. Every table is read "
             "once, in chunks of about 2^20 rows, children first; the provenance check samples the first, the last "
             "and one random block again with the kept compiled sampler and hashes their parts. A fresh process "
             "also pays for importing JAX, NumPyro, SciPy and pandas, as any command does."]
    print(write_section("validate", lines))


if __name__ == "__main__":
    main()
