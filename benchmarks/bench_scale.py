"""Scaling `causalsynth sample`: 10x the headline job on one machine, and Dask workers 1, 2 and 4.

Every run is a fresh process, timed by wall clock, with its peak RSS from
``wait4`` (for one-process runs; a cluster's workers are other processes):

- the floor (vectorized numpy + pyarrow, same tables; ``references.py``) at
  --n-prs (500,000) and at --small (50,000);
- causalsynth in one process at both sizes, warm (the caches filled by a
  first run, not timed), each alternated ``--repeats`` times with its floor:
  the 500,000-PR run against
  its floor, and its peak RSS against the 50,000-PR run's;
- causalsynth with ``--workers 1, 2, 4`` (a local Dask cluster started by the
  command) at --cluster-prs (1,000,000), against one process at that size
  (``--pair`` workers, 2, alternated with one process ``--repeats`` times):
  each worker process pays its own start (imports, compile from the cache),
  a fixed cost that larger jobs amortize;
- the parts of a block's cost, in one process: sampling (XLA), tabulating,
  and encoding + writing the parts (the writer's share); and the scheduler's
  overhead per task (2,000 empty tasks on a one-worker local cluster). From
  these, what a cluster of many machines should take.

Usage: python benchmarks/bench_scale.py [--n-prs 500000] [--small 50000] [--cluster-prs 1000000] [--workers 1,2,4]
       [--pair 2] [--repeats 3]
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

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE))
from results import CLI, machine, measure, median_run, write_section  # noqa: E402

BLOCK_COSTS = """
import json, sys, tempfile, time
import jax
from causalsynth.engine import cache
cache.enable()
from causalsynth.config.loading import load_config
from causalsynth.engine.world import prepare_world
from causalsynth.sinks import table_specs
from causalsynth.engine.tabulate import Tables
from causalsynth.jobs.blocks import _write, count
from causalsynth.engine.sampling import Block, block_key
from causalsynth.dataset.location import locate
world = prepare_world(load_config())
program, tables = world.program, Tables(world.program)
out = locate(tempfile.mkdtemp())
for spec in table_specs(program):
    out.makedirs(spec.name)
switches = program.interventions(world.do)
spent = {"sample": 0.0, "tabulate": 0.0, "write": 0.0}
n = int(sys.argv[1])
for index in range(-1, n):  # block -1 warms up
    t0 = time.perf_counter()
    values = jax.device_get(program.sample_block(block_key(0, max(index, 0)), world.params, switches))
    t1 = time.perf_counter()
    batches = tables.batches(Block(max(index, 0), program.block_prs, values))
    count(program, batches)
    t2 = time.perf_counter()
    _write(out, max(index, 0), batches)
    t3 = time.perf_counter()
    if index >= 0:
        spent["sample"] += t1 - t0; spent["tabulate"] += t2 - t1; spent["write"] += t3 - t2
print(json.dumps({k: v / n for k, v in spent.items()} | {"block_prs": program.block_prs}))
"""
TASK_OVERHEAD = """
import json, time
from distributed import Client, LocalCluster
with LocalCluster(n_workers=1, threads_per_worker=1, processes=True, dashboard_address=None) as cluster, \\
        Client(cluster) as client:
    client.gather([client.submit(int, i, pure=False) for i in range(100)])
    t0 = time.perf_counter()
    client.gather([client.submit(int, i, pure=False) for i in range(2000)])
    print(json.dumps({"per_task": (time.perf_counter() - t0) / 2000}))
"""


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--n-prs", type=int, default=500_000)
    parser.add_argument("--small", type=int, default=50_000)
    parser.add_argument("--cluster-prs", type=int, default=1_000_000)
    parser.add_argument("--workers", default="1,2,4")
    parser.add_argument("--pair", type=int, default=2, help="the worker count alternated with one process")
    parser.add_argument("--repeats", type=int, default=3)
    args = parser.parse_args()
    workers = [int(w) for w in args.workers.split(",")]

    work = Path(tempfile.mkdtemp(prefix="causalsynth-scale-"))
    env = dict(os.environ, CAUSALSYNTH_CACHE_DIR=str(work / "cache"))
    cli = [*CLI, "sample"]
    refs = [sys.executable, str(HERE / "references.py"), "floor"]

    def ours(n: int, *extra: str) -> dict:
        out = work / "out"
        run = measure(cli + ["--n-prs", str(n), "--out", str(out), "--force", *extra], env)
        run["rows"] = sum(t["rows"] for t in json.loads((out / "manifest.json").read_text())["tables"].values())
        run["size_gb"] = sum(f.stat().st_size for f in out.rglob("*") if f.is_file()) / 1e9
        shutil.rmtree(out)
        return run

    def floor(n: int) -> dict:
        run = measure(refs + [str(n), str(work / "floor")])
        shutil.rmtree(work / "floor")
        return run

    try:
        ours(args.small)  # fills the caches: every later run is warm
        sizes = {}
        for n in (args.small, args.n_prs):
            runs = [(ours(n), floor(n)) for _ in range(args.repeats)]  # alternated, like the pairs below
            sizes[n] = (median_run([r for r, _ in runs]), median_run([f for _, f in runs]),
                        sorted(r["wall_s"] / f["wall_s"] for r, f in runs))
        (small, small_floor, _), (big, big_floor, big_ratios) = sizes[args.small], sizes[args.n_prs]
        alones, paired = [], []
        for _ in range(args.repeats):  # alternated, so each ratio compares runs under the same load
            alones.append(ours(args.cluster_prs))
            paired.append(ours(args.cluster_prs, "--workers", str(args.pair)))
        alone = median_run(alones)
        clusters = {w: median_run(paired) if w == args.pair else ours(args.cluster_prs, "--workers", str(w))
                    for w in workers}
        costs = json.loads(measure([sys.executable, "-c", BLOCK_COSTS, "10"], env)["stdout"])
        overhead = json.loads(measure([sys.executable, "-c", TASK_OVERHEAD])["stdout"])["per_task"]
    finally:
        shutil.rmtree(work, ignore_errors=True)

    block = costs["sample"] + costs["tabulate"] + costs["write"]
    blocks_of = lambda n: -(-n // costs["block_prs"])  # noqa: E731
    # Wall per extra block here (both cores busy), and what the job costs besides its blocks.
    marginal = (big["wall_s"] - small["wall_s"]) / (blocks_of(args.n_prs) - blocks_of(args.small))
    fixed = small["wall_s"] - blocks_of(args.small) * marginal
    tasks = -(-5_000_000 // costs["block_prs"]) / 4  # runs of four blocks
    lines = [
        f"## Scaling: {args.n_prs:,} PRs on one machine, and on Dask workers",
        "",
        f"Measured {dt.date.today().isoformat()} by `python benchmarks/bench_scale.py` on {machine()}.",
        "Each row is a fresh process (warm caches); peak RSS is the command's own process.",
        "",
        "| run | PRs | rows | wall (s) | rows/s | peak RSS (GB) | vs floor (wall) |",
        "| --- | ---: | ---: | ---: | ---: | ---: | ---: |",
        f"| causalsynth, one process | {args.small:,} | {small['rows']:,} | {small['wall_s']:.1f} | "
        f"{small['rows'] / small['wall_s']:,.0f} | {small['peak_rss_gb']:.2f} | "
        f"{small['wall_s'] / small_floor['wall_s']:.2f}x |",
        f"| floor: vectorized numpy + pyarrow | {args.small:,} | | {small_floor['wall_s']:.1f} | | "
        f"{small_floor['peak_rss_gb']:.2f} | 1.00x |",
        f"| causalsynth, one process | {args.n_prs:,} | {big['rows']:,} | {big['wall_s']:.1f} | "
        f"{big['rows'] / big['wall_s']:,.0f} | {big['peak_rss_gb']:.2f} | {big['wall_s'] / big_floor['wall_s']:.2f}x |",
        f"| floor: vectorized numpy + pyarrow | {args.n_prs:,} | | {big_floor['wall_s']:.1f} | | "
        f"{big_floor['peak_rss_gb']:.2f} | 1.00x |",
    ]
    lines.append(f"| causalsynth, one process | {args.cluster_prs:,} | {alone['rows']:,} | {alone['wall_s']:.1f} | "
                 f"{alone['rows'] / alone['wall_s']:,.0f} | {alone['peak_rss_gb']:.2f} | |")
    for w, run in clusters.items():
        lines.append(f"| causalsynth `--workers {w}` (local Dask cluster) | {args.cluster_prs:,} | {run['rows']:,} | "
                     f"{run['wall_s']:.1f} | {run['rows'] / run['wall_s']:,.0f} | "
                     f"(client) {run['peak_rss_gb']:.2f} | |")
    lines += [
        "",
        f"- Each size alternated with its floor {args.repeats} times (the rows above are the median runs); "
        f"{args.n_prs:,} PRs against the floor, each pair: {', '.join(f'{r:.2f}x' for r in big_ratios)}.",
        f"- Memory is flat in N: peak RSS at {args.n_prs:,} PRs is {big['peak_rss_gb']:.2f} GB, "
        f"{big['peak_rss_gb'] / small['peak_rss_gb']:.2f}x that at {args.small:,}.",
        f"- Output: {big['size_gb']:.2f} GB of Parquet at {args.n_prs:,} PRs "
        f"({big['size_gb'] * 1e9 / args.n_prs / 1e3:.1f} KB and {big['rows'] / args.n_prs:.0f} rows per PR; "
        f"both linear in N).",
        f"- Workers against one process at {args.cluster_prs:,} PRs (same machine, same 2 cores, so no speed-up "
        "is possible; this is the cost of the cluster): "
        + ", ".join(f"{w}: {run['wall_s'] / alone['wall_s']:.2f}x" for w, run in clusters.items())
        + f" (one process and `--workers {args.pair}` alternated {args.repeats} times, medians; each pair: "
        + ", ".join(f"{p['wall_s'] / a['wall_s']:.2f}x" for a, p in zip(alones, paired)) + ").",
        f"- One block of {costs['block_prs']:,} PRs, one thread: sampling {costs['sample']:.3f} s, tabulating and "
        f"counting {costs['tabulate']:.3f} s, encoding and writing its parts {costs['write']:.3f} s "
        f"(the writer's share: {costs['write'] / block:.0%}); {block:.3f} s in all, "
        f"{costs['block_prs'] / block:,.0f} PRs/s per core.",
        f"- Scheduler overhead per task: {overhead * 1e3:.2f} ms (2,000 empty tasks, one local worker), "
        f"{overhead / block:.2%} of a block.",
        f"- One process here: {fixed:.1f} s fixed (start-up, imports, compile from the cache, calibration check, "
        f"manifest) plus {marginal:.3f} s per block of {costs['block_prs']:,} PRs (from the {args.small:,} and "
        f"{args.n_prs:,}-PR runs); a cluster's job pays the fixed part once, and each worker its start once.",
        f"- Predicted for a cluster of single-threaded workers: T = {fixed:.0f} s + blocks x {block:.2f} s / cores "
        f"+ tasks x {overhead * 1e3:.1f} ms (the scheduler, serially). For 5,000,000 PRs "
        f"({blocks_of(5_000_000):,} blocks in {tasks:,.0f} tasks, about "
        f"{big['rows'] / args.n_prs * 5e6 / 1e6:,.0f}M rows, {big['size_gb'] * 1e9 / args.n_prs * 5e6 / 1e9:.0f} GB): "
        + ", ".join(f"{cores} cores: {fixed + blocks_of(5_000_000) * block / cores + tasks * overhead:,.0f} s"
                    for cores in (16, 64, 256))
        + " (1,000 blocks keep 256 cores busy; the store must take the writes: "
        f"{big['size_gb'] * 1e9 / args.n_prs * 5e6 / 1e9:.0f} GB in that time).",
    ]
    print(write_section("bench_scale", lines))


if __name__ == "__main__":
    main()
