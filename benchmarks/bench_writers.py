"""Benchmark the writer threads: a warm sample of N PRs with 1 writer and with one per core, alternated.

In one process, after a warm-up that compiles and calibrates: `sample_dataset`
of N PRs with `jobs.blocks.WRITERS` set to 1 and to the machine's cores, in
turn, --repeats times each. Each table of a block is tabulated, counted and
written by the writer threads while the next blocks are sampled. Beside the
wall time, the CPU time of the calling thread per block: the serial part of
the pipeline (dispatching blocks and taking them off the device), which
bounds the blocks per second of a host whose cores are many.

Usage: python benchmarks/bench_writers.py [--n-prs 50000] [--repeats 3]
Writes its section of benchmarks/RESULTS.md and prints it.
"""

from __future__ import annotations

import argparse
import datetime as dt
import shutil
import sys
import tempfile
import time
from pathlib import Path

import jax

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE))
from results import machine, write_section  # noqa: E402


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--n-prs", type=int, default=50_000)
    parser.add_argument("--repeats", type=int, default=3)
    args = parser.parse_args()
    from causalsynth.config.loading import load_config
    from causalsynth.engine import cache
    from causalsynth.jobs import blocks
    from causalsynth.jobs.sample import sample_dataset

    work = Path(tempfile.mkdtemp(prefix="causalsynth-writers-"))
    cache.enable(work / "cache")
    config = load_config()
    cores = blocks.WRITERS
    counts = sorted({1, cores})
    walls: dict[int, list[float]] = {n: [] for n in counts}
    serial: dict[int, list[float]] = {n: [] for n in counts}
    n_blocks = -(-args.n_prs // int(config.sampling["block_prs"]))
    try:
        sample_dataset(config=config, n_prs=args.n_prs // 10, seed=1, to=work / "warm-up")
        for _ in range(args.repeats):
            for n in counts:
                blocks.WRITERS = n
                started, cpu = time.perf_counter(), time.thread_time()
                sample_dataset(config=config, n_prs=args.n_prs, seed=0, to=work / "ds")
                walls[n].append(time.perf_counter() - started)
                serial[n].append((time.thread_time() - cpu) / n_blocks)
                shutil.rmtree(work / "ds")
    finally:
        shutil.rmtree(work, ignore_errors=True)
    median = {n: sorted(w)[len(w) // 2] for n, w in walls.items()}
    lines = [
        f"## Writer threads: a warm `sample_dataset` of {args.n_prs:,} PRs in one process",
        "",
        f"Measured {dt.date.today()} by `python benchmarks/bench_writers.py` on {machine()}; "
        f"jax {jax.__version__}, backend {jax.default_backend()}. Alternated {args.repeats} times; medians.",
        "",
        "| writer threads | wall (s) | runs (s) | vs 1 writer | calling thread's CPU per block (ms) |",
        "| ---: | ---: | --- | ---: | ---: |",
        *[f"| {n} | {median[n]:.2f} | {', '.join(f'{w:.2f}' for w in walls[n])} | {median[n] / median[1]:.2f}x "
          f"| {1000 * sorted(serial[n])[len(serial[n]) // 2]:.0f} |" for n in counts],
        "",
        f"- The default is one writer per core ({cores} here): each table of a block is tabulated, counted and "
        "encoded by its own task, so a block's tables are made side by side while the next block is sampled.",
        "- Where sampling (XLA's threads) and tabulating already fill every core, more writers gain nothing; "
        "they are for machines with cores to spare beside the sampler (an accelerator's host).",
    ]
    print(write_section("bench_writers", lines))


if __name__ == "__main__":
    main()
