"""Benchmark the writer threads: a warm sample of N PRs with 1 writer and with one per core, alternated.

In one process, after a warm-up that compiles and calibrates: `sample_dataset`
of N PRs with `jobs.blocks.WRITERS` set to 1 and to the machine's cores, in
turn, --repeats times each. Parts are encoded and written by the writer
threads while the next blocks are sampled and tabulated.

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
    try:
        sample_dataset(config=config, n_prs=args.n_prs // 10, seed=1, to=work / "warm-up")
        for _ in range(args.repeats):
            for n in counts:
                blocks.WRITERS = n
                started = time.perf_counter()
                sample_dataset(config=config, n_prs=args.n_prs, seed=0, to=work / "ds")
                walls[n].append(time.perf_counter() - started)
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
        "| writer threads | wall (s) | runs (s) | vs 1 writer |",
        "| ---: | ---: | --- | ---: |",
        *[f"| {n} | {median[n]:.2f} | {', '.join(f'{w:.2f}' for w in walls[n])} | {median[n] / median[1]:.2f}x |"
          for n in counts],
        "",
        f"- The default is one writer per core ({cores} here): each part is encoded by its own task, so a "
        "block's tables are written side by side while the next block is sampled.",
        "- Where sampling (XLA's threads) and tabulating already fill every core, more writers gain nothing; "
        "they are for machines with cores to spare beside the sampler (an accelerator's host).",
    ]
    print(write_section("bench_writers", lines))


if __name__ == "__main__":
    main()
