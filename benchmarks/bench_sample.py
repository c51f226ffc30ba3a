"""Benchmark `causalsynth sample` end to end against the floor and naive references.

Every measurement is a fresh process (import, compile, sample, write,
manifest), timed by wall clock, with its peak RSS from ``wait4``:

- causalsynth cold (empty caches) and warm, at --n-prs (50,000), both
  alternated --repeats times with the two floors;
- `causalsynth variant` writing the no_regressions twin of that dataset (warm);
- causalsynth warm at 10x --n-prs (500,000), beside the all-core floor at that size, to show that
  memory stays flat as N grows and how close to the machine's limit a long job runs;
- the XLA compile time of the block sampler alone (first call minus second);
- `causalsynth --help` in a fresh process (five runs);
- the floors (`references.py`: vectorized numpy + pyarrow, same tables, written by one thread; and
  the same written as causalsynth writes, a part per table and block, on every core while the next
  block is generated) and the naive per-record Python generator (same tables; run on --naive-prs PRs
  and reported as rows/s);
- with --baseline PYTHON (the interpreter of another installation of
  causalsynth, e.g. a virtual environment of the previous release): the warm
  50,000-PR job of both, alternated --repeats times, medians and their ratio,
  so a change's cost is measured against its baseline on the same machine at
  the same time.

Usage: python benchmarks/bench_sample.py [--n-prs 50000] [--naive-prs 5000] [--baseline PYTHON [--repeats 5]]
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
from pathlib import Path

import numpy as np

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE))
from results import CLI, machine, measure, median_run, write_section  # noqa: E402

COMPILE_PROBE = """
import time, jax
from causalsynth.config.loading import load_config
from causalsynth.engine.program import Program
from causalsynth.engine.sampling import block_key
program = Program(load_config())
params = program.initial_params()
t0 = time.perf_counter(); jax.block_until_ready(program.sample_block(block_key(0, 0), params, program.interventions()))
t1 = time.perf_counter(); jax.block_until_ready(program.sample_block(block_key(0, 1), params, program.interventions()))
t2 = time.perf_counter()
print((t1 - t0) - (t2 - t1))
"""


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--n-prs", type=int, default=50_000)
    parser.add_argument("--naive-prs", type=int, default=5_000)
    parser.add_argument("--baseline", help="python of another causalsynth installation to compare with, warm")
    parser.add_argument("--repeats", type=int, default=5)
    args = parser.parse_args()

    import jax
    import numpyro

    work = Path(tempfile.mkdtemp(prefix="causalsynth-bench-"))
    env = dict(os.environ, CAUSALSYNTH_CACHE_DIR=str(work / "jax-cache"))
    cli = [*CLI, "sample"]
    try:
        refs = [sys.executable, str(HERE / "references.py")]
        measure(cli + ["--n-prs", str(args.n_prs), "--out", str(work / "cs")], env)  # fills the warm runs' cache
        colds, warms, floors, alls = [], [], [], []
        for i in range(args.repeats):  # alternated, so each ratio compares runs under the same load
            empty = dict(env, CAUSALSYNTH_CACHE_DIR=str(work / f"empty-cache-{i}"))
            colds.append(measure(cli + ["--n-prs", str(args.n_prs), "--out", str(work / "cs"), "--force"], empty))
            warms.append(measure(cli + ["--n-prs", str(args.n_prs), "--out", str(work / "cs"), "--force"], env))
            shutil.rmtree(work / "floor", ignore_errors=True)
            floors.append(measure(refs + ["floor", str(args.n_prs), str(work / "floor")]))
            shutil.rmtree(work / "all", ignore_errors=True)
            alls.append(measure(refs + ["overlapped", str(args.n_prs), str(work / "all")]))
        rows = sum(t["rows"] for t in json.loads((work / "cs" / "manifest.json").read_text())["tables"].values())
        cold, warm, floor, every = median_run(colds), median_run(warms), median_run(floors), median_run(alls)
        ratios = sorted(w["wall_s"] / f["wall_s"] for w, f in zip(warms, floors))
        all_ratios = sorted(w["wall_s"] / f["wall_s"] for w, f in zip(warms, alls))
        cold_ratios = sorted(c["wall_s"] / f["wall_s"] for c, f in zip(colds, floors))
        twin = measure(cli[:-1] + ["variant", str(work / "cs"), "--variant", "no_regressions",
                                   "--out", str(work / "twin")], env)
        big = measure(cli + ["--n-prs", str(10 * args.n_prs), "--out", str(work / "big")], env)
        shutil.rmtree(work / "big")
        shutil.rmtree(work / "all", ignore_errors=True)
        big_all = measure(refs + ["overlapped", str(10 * args.n_prs), str(work / "all")])
        shutil.rmtree(work / "all")
        compile_s = float(measure([sys.executable, "-c", COMPILE_PROBE]).get("stdout"))
        helps = sorted(measure(cli[:-1] + ["--help"], env)["wall_s"] for _ in range(5))
        naive = measure(refs + ["naive", str(args.naive_prs), str(work / "naive")])
        naive_rows = int(naive["stdout"])
        versus = compare(args, work) if args.baseline else None
    finally:
        shutil.rmtree(work, ignore_errors=True)

    naive_rate = naive_rows / naive["wall_s"]
    lines = [
        f"## `causalsynth sample --n-prs {args.n_prs:,}` ({rows:,} rows)",
        "",
        f"Measured {dt.date.today().isoformat()} by `python benchmarks/bench_sample.py` on {machine()};",
        f"jax {jax.__version__}, numpyro {numpyro.__version__}, backend {jax.default_backend()}.",
        "Each row is a fresh process: import, compile, calibrate, sample, write Parquet, manifest.",
        f"The cold run, the warm run and the two floors alternate {args.repeats} times (each cold run with a cache "
        "of its own); their rows are the median runs.",
        "",
        "| run | wall (s) | rows/s | peak RSS (GB) | vs floor (wall) | vs all-core floor (wall) |",
        "| --- | ---: | ---: | ---: | ---: | ---: |",
        *(f"| {name} | {run['wall_s']:.1f} | {rows / run['wall_s']:,.0f} | {run['peak_rss_gb']:.2f} "
          f"| {run['wall_s'] / floor['wall_s']:.2f}x | {run['wall_s'] / every['wall_s']:.2f}x |"
          for name, run in (("causalsynth, cold (empty caches)", cold), ("causalsynth, warm caches", warm),
                            ("causalsynth variant (no_regressions twin), warm", twin),
                            ("floor: vectorized numpy + pyarrow, same tables, one writer", floor),
                            ("all-core floor: the same, a part per table and block, written on every core "
                             "while the next block is generated", every))),
        f"| naive per-record Python, same tables ({args.naive_prs:,} PRs, {naive_rows:,} rows) "
        f"| {naive['wall_s']:.1f} | {naive_rate:,.0f} | {naive['peak_rss_gb']:.2f} "
        f"| {rows / naive_rate / floor['wall_s']:.1f}x (extrapolated) | |",
        "",
        f"- Warm against the floor, each alternated pair: {', '.join(f'{r:.2f}x' for r in ratios)} "
        f"(median {np.median(ratios):.2f}x).",
        f"- Warm against the all-core floor, each alternated pair: {', '.join(f'{r:.2f}x' for r in all_ratios)} "
        f"(median {np.median(all_ratios):.2f}x).",
        f"- Cold against the floor, each alternated pair: {', '.join(f'{r:.2f}x' for r in cold_ratios)} "
        f"(median {np.median(cold_ratios):.2f}x).",
        f"- A counterfactual twin costs {twin['wall_s'] / warm['wall_s']:.2f}x its factual run (both warm; "
        "the twin reuses the factual calibration).",
        f"- XLA compile of the block sampler: {compile_s:.1f} s (in the cold run; when warm, its executable is "
        "loaded from the cache, untraced). "
        f"Cold is {cold['wall_s'] / floor['wall_s']:.1f}x the floor: the compile alone is "
        f"{compile_s / floor['wall_s']:.1f}x.",
        f"- `causalsynth --help` in a fresh process: median {helps[2]:.2f} s of 5 (min {helps[0]:.2f} s).",
        f"- causalsynth is {(rows / naive_rate) / warm['wall_s']:.0f}x faster than the naive generator "
        f"(warm; naive extrapolated to {rows:,} rows at its measured rate: {rows / naive_rate / 60:.1f} min).",
        f"- Memory is flat in N: peak RSS at {10 * args.n_prs:,} PRs is {big['peak_rss_gb']:.2f} GB, "
        f"{big['peak_rss_gb'] / warm['peak_rss_gb']:.2f}x that at {args.n_prs:,}.",
        f"- At {10 * args.n_prs:,} PRs (warm, one run each): causalsynth {big['wall_s']:.1f} s, the all-core floor "
        f"{big_all['wall_s']:.1f} s, {big['wall_s'] / big_all['wall_s']:.2f}x.",
    ]
    if versus is not None:
        ours, theirs, version = versus
        lines.append(f"- Against the baseline installation (causalsynth {version}, `--baseline`), warm, "
                     f"{args.repeats} alternated runs each: median {np.median(ours):.1f} s vs "
                     f"{np.median(theirs):.1f} s, {np.median(ours) / np.median(theirs):.2f}x "
                     f"(runs: {', '.join(f'{x:.1f}' for x in ours)} vs {', '.join(f'{x:.1f}' for x in theirs)}).")
    print(write_section("bench_sample", lines))


def compare(args, work: Path) -> tuple[list[float], list[float], str]:
    """Warm wall times of this installation and the baseline's, alternated (each with its own cache)."""
    def command(python: str, name: str) -> tuple[list[str], dict]:
        env = dict(os.environ, CAUSALSYNTH_CACHE_DIR=str(work / f"cache-{name}"))
        return [python, "-c", "from causalsynth.cli import run; run()", "sample", "--n-prs", str(args.n_prs),
                "--out", str(work / f"vs-{name}"), "--force"], env

    runs = {"ours": command(sys.executable, "ours"), "baseline": command(args.baseline, "baseline")}
    for cmd, env in runs.values():  # fill each compilation cache
        measure(cmd, env)
    times: dict[str, list[float]] = {name: [] for name in runs}
    for _ in range(args.repeats):
        for name, (cmd, env) in runs.items():
            times[name].append(measure(cmd, env)["wall_s"])
    version = subprocess.run([args.baseline, "-c", "from importlib.metadata import version as v; "
                              "import causalsynth.models.delivery_commerce as m; print(v('causalsynth'), m.VERSION)"],
                             capture_output=True, text=True, check=True).stdout.split()
    return times["ours"], times["baseline"], f"{version[0]}, model {version[1]}"


if __name__ == "__main__":
    main()
