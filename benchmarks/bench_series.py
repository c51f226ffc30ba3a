"""Benchmark the series and the traces (`sample --series`, `--traces --logs`): their cost over the
plain job, against their floors.

Fresh processes, timed by wall clock with peak RSS (warm JAX compilation
cache, each command run once before it is timed):

- `causalsynth sample --n-prs N`, `... --series` and `... --series --traces
  --logs`, alternated --repeats times; the series' cost is the difference
  of the first two medians, the traces' (traces, spans and log lines) of the
  last two;
- the floors: the service_timeseries table alone, and the three trace
  tables alone (same schemas, same rows, same Parquet writer and
  compression) filled by plain vectorized numpy (``references.py
  floor-series``, ``floor-traces``);
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
from results import CLI, machine, write_section  # noqa: E402


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--n-prs", type=int, default=50_000)
    parser.add_argument("--repeats", type=int, default=3)
    args = parser.parse_args()
    work = Path(tempfile.mkdtemp(prefix="causalsynth-series-"))
    env = dict(os.environ, CAUSALSYNTH_CACHE_DIR=str(work / "jax-cache"))
    cli = [*CLI, "sample"]

    options = {"plain": [], "series": ["--series"], "traces": ["--series", "--traces", "--logs"]}

    def sample(n: int, which: str) -> dict:
        return measure(cli + ["--n-prs", str(n), "--out", str(work / "ds"), "--force"] + options[which], env)

    def floor(extra: str) -> dict:
        return measure([sys.executable, str(HERE / "references.py"), f"floor-{extra}", str(args.n_prs),
                        str(work / "floor")])

    try:
        for which in options:  # compile each sampler
            sample(args.n_prs // 10, which)
        runs: dict[str, list[dict]] = {which: [] for which in options}
        for _ in range(args.repeats):
            for which in options:
                runs[which].append(sample(args.n_prs, which))
        tables = json.loads((work / "ds" / "manifest.json").read_text())["tables"]
        series_rows = tables["service_timeseries"]["rows"]
        trace_rows = {t: tables[t]["rows"] for t in ("traces", "trace_spans", "trace_logs")}
        half = sample(args.n_prs // 2, "series")
        floor_series, floor_traces = floor("series"), floor("traces")
    finally:
        shutil.rmtree(work, ignore_errors=True)
    p, s, t = (float(np.median([m["wall_s"] for m in runs[which]])) for which in options)
    plain, series = runs["plain"], runs["series"]
    rss = max(m["peak_rss_gb"] for m in series)
    cost, trace_cost, n_trace = s - p, t - s, sum(trace_rows.values())
    floor = floor_series
    lines = [f"## `causalsynth sample --n-prs {args.n_prs:,} --series` ({series_rows:,} series rows), and "
             f"`--traces --logs` ({n_trace:,} trace rows)", "",
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
             f"| `sample --series --traces --logs` | {t:.1f} | | "
             f"{max(m['peak_rss_gb'] for m in runs['traces']):.2f} | |",
             f"| the traces' cost (the difference from `--series`) | {trace_cost:.1f} | {n_trace / trace_cost:,.0f} "
             f"(trace rows) | | {trace_cost / floor_traces['wall_s']:.2f}x |",
             f"| floor: the three trace tables alone, vectorized numpy + pyarrow | {floor_traces['wall_s']:.1f} | "
             f"{n_trace / floor_traces['wall_s']:,.0f} (trace rows) | {floor_traces['peak_rss_gb']:.2f} | 1.00x |",
             "",
             f"The trace tables at {args.n_prs:,} PRs: {trace_rows['traces']:,} traces, {trace_rows['trace_spans']:,} "
             f"spans and {trace_rows['trace_logs']:,} log lines.",
             "",
             f"Memory is per block of PRs: peak RSS at {args.n_prs:,} PRs is "
             f"{rss / half['peak_rss_gb']:.2f} times that at half as many. The series are opt-in: at "
             f"{args.n_prs:,} PRs they are {series_rows:,} rows, {series_rows / 8_225_658:.1f} times the other five "
             "tables together."]
    print(write_section("series", lines))


if __name__ == "__main__":
    main()
