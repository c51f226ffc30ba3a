"""Benchmark the series (`sample --series`): their cost over the plain job, against their floor.

Fresh processes, timed by wall clock with peak RSS (warm JAX compilation
cache, each command run once before it is timed):

- `causalsynth sample --n-prs N` and `causalsynth sample --n-prs N --series`,
  alternated --repeats times; the series' cost is the difference of the
  medians;
- the floor: the service_timeseries table alone (same schema, same rows,
  same Parquet writer and compression) filled by plain vectorized numpy
  (``references.py floor-series``);
- `sample --series` at N / 2 and N, to show memory stays flat as N grows.

Usage: python benchmarks/bench_series.py [--n-prs 50000] [--repeats 3]
Writes its section of benchmarks/RESULTS.md and prints it.
"""

from __future__ import annotations

import argparse
import datetime as dt
import json
import os
import shutil
import sys
import tempfile
from pathlib import Path

import numpy as np

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE))
from bench_sample import measure  # noqa: E402
from results import machine, write_section  # noqa: E402


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--n-prs", type=int, default=50_000)
    parser.add_argument("--repeats", type=int, default=3)
    args = parser.parse_args()
    work = Path(tempfile.mkdtemp(prefix="causalsynth-series-"))
    env = dict(os.environ, CAUSALSYNTH_CACHE_DIR=str(work / "jax-cache"))
    cli = [sys.executable, "-c", "from causalsynth.cli import run; run()", "sample"]

    def sample(n: int, series: bool) -> dict:
        return measure(cli + ["--n-prs", str(n), "--out", str(work / "ds"), "--force"] + ["--series"] * series, env)

    try:
        sample(args.n_prs // 10, True), sample(args.n_prs // 10, False)  # compile both samplers
        plain, series = [], []
        for _ in range(args.repeats):
            plain.append(sample(args.n_prs, False))
            series.append(sample(args.n_prs, True))
        tables = json.loads((work / "ds" / "manifest.json").read_text())["tables"]
        series_rows = tables["service_timeseries"]["rows"]
        half = sample(args.n_prs // 2, True)
        floor = measure([sys.executable, str(HERE / "references.py"), "floor-series", str(args.n_prs),
                         str(work / "floor")])
    finally:
        shutil.rmtree(work, ignore_errors=True)
    p, s = (float(np.median([m["wall_s"] for m in runs])) for runs in (plain, series))
    rss = max(m["peak_rss_gb"] for m in series)
    cost = s - p
    lines = [f"## `causalsynth sample --n-prs {args.n_prs:,} --series` ({series_rows:,} series rows)", "",
             f"Measured {dt.date.today().isoformat()} by `python benchmarks/bench_series.py` on {machine()}; "
             f"medians of {args.repeats} alternated fresh processes, warm compilation cache.", "",
             "| run | wall (s) | series rows/s | peak RSS (GB) | vs floor |", "| --- | ---: | ---: | ---: | ---: |",
             f"| `sample` (no series) | {p:.1f} | | {max(m['peak_rss_gb'] for m in plain):.2f} | |",
             f"| `sample --series` | {s:.1f} | | {rss:.2f} | |",
             f"| the series' cost (the difference) | {cost:.1f} | {series_rows / cost:,.0f} | | "
             f"{cost / floor['wall_s']:.2f}x |",
             f"| floor: the series table alone, vectorized numpy + pyarrow | {floor['wall_s']:.1f} | "
             f"{series_rows / floor['wall_s']:,.0f} | {floor['peak_rss_gb']:.2f} | 1.00x |",
             f"| `sample --series` at {args.n_prs // 2:,} PRs | {half['wall_s']:.1f} | | "
             f"{half['peak_rss_gb']:.2f} | |",
             "",
             "Memory is per block of PRs, so peak RSS stays flat as N grows. The series are opt-in: at "
             f"{args.n_prs:,} PRs they are {series_rows:,} rows, {series_rows / 8_225_658:.1f} times the other five "
             "tables together."]
    print(write_section("series", lines))


if __name__ == "__main__":
    main()
