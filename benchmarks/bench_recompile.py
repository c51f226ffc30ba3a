"""Benchmark what compiles: a sequence of commands, each a fresh process, on one cache that starts empty.

Each row is one `causalsynth` command as a user runs it after the one above:
its wall time, and the block samplers it compiled (new entries in the cache's
`sampler/`; a command that compiles none loads the one kept). A new seed, a
prior set with `--set`, and a variant's twin (a hard intervention, a shifted
prior) run the kept sampler; a change of a shape (`--runs-per-pr`) is another
sampler, compiled once.

Usage: python benchmarks/bench_recompile.py [--n-prs 5000]
Writes its section of benchmarks/RESULTS.md and prints it.
"""

from __future__ import annotations

import argparse
import datetime as dt
import os
import shutil
import sys
import tempfile
from pathlib import Path

import jax

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE))
from results import CLI, machine, measure, write_section  # noqa: E402


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--n-prs", type=int, default=5_000)
    args = parser.parse_args()
    work = Path(tempfile.mkdtemp(prefix="causalsynth-recompile-"))
    cache = work / "cache"
    env = dict(os.environ, CAUSALSYNTH_CACHE_DIR=str(cache))
    cli = CLI
    n = ["--n-prs", str(args.n_prs)]
    steps = [
        ("`sample` (empty cache)", ["sample", *n, "--out", str(work / "first")]),
        ("`sample --seed 7`", ["sample", *n, "--seed", "7", "--out", str(work / "seed")]),
        ("`sample --set regression.rate=0.3`", ["sample", *n, "--set", "regression.rate=0.3", "--out",
                                                 str(work / "prior")]),
        ("`variant --variant no_regressions` (a do)", ["variant", str(work / "first"), "--variant", "no_regressions",
                                                       "--out", str(work / "do")]),
        ("`variant --variant peak_load` (shifted priors)", ["variant", str(work / "first"), "--variant", "peak_load",
                                                            "--out", str(work / "shifted")]),
        ("`sample --runs-per-pr 3` (a shape)", ["sample", *n, "--runs-per-pr", "3", "--out", str(work / "shape")]),
        ("`sample --runs-per-pr 3 --seed 8`", ["sample", *n, "--runs-per-pr", "3", "--seed", "8", "--out",
                                               str(work / "shape-seed")]),
    ]

    def samplers() -> int:
        return len(list((cache / "sampler").glob("*.pickle"))) if (cache / "sampler").is_dir() else 0

    rows = []
    try:
        for label, command in steps:
            before = samplers()
            run = measure(cli + command, env)
            rows.append((label, run["wall_s"], samplers() - before))
    finally:
        shutil.rmtree(work, ignore_errors=True)
    lines = [
        f"## What compiles: `causalsynth` commands one after another ({args.n_prs:,} PRs)",
        "",
        f"Measured {dt.date.today()} by `python benchmarks/bench_recompile.py` on {machine()}; "
        f"jax {jax.__version__}, backend {jax.default_backend()}.",
        "Each row is a fresh process, run after the rows above it, on one cache that starts empty.",
        "",
        "| command | wall (s) | samplers compiled |",
        "| --- | ---: | ---: |",
        *[f"| {label} | {wall:.1f} | {compiled} |" for label, wall, compiled in rows],
        "",
        "- Only a change of the model's source or of its shapes compiles a sampler; a seed, a prior and a "
        "variant (a hard intervention or shifted priors) run the kept one (`tests/test_cache.py` holds it).",
        f"- A prior set anew costs {rows[2][1] - rows[1][1]:.1f} s more than a new seed: its calibration is solved "
        f"anew (a twin reuses its factual dataset's).",
    ]
    print(write_section("bench_recompile", lines))


if __name__ == "__main__":
    main()
