"""Throughput of `causalsynth sample` at 50,000, 500,000 and 5,000,000 PRs on whatever device is present.

For each size, in fresh processes (import, load the compiled sampler from the
cache, calibrate, sample, write Parquet, manifest): the dataset twice with the
same seed (the second run must give the same bytes: every part's SHA-256 and
the manifest's tallies), its marginals judged from its manifest as `sample`
judges them, and the two floors of `references.py` at the same size (one
writer thread; and every core writing, overlapped with generation). The
caches are ``$CAUSALSYNTH_CACHE_DIR``'s if it is set, else new ones; one run at
the smallest size fills them first (its wall time is the cold start when they
were empty, which the section says). Datasets are deleted as soon as they are compared: the largest is
about 9 GB.

With --blocks-at-once N the device samples N blocks a call (`sample --blocks-at-once`), and the
smallest size is also sampled one block a call, to show whether the bytes are the same on this device.

Usage: python benchmarks/bench_device.py [--sizes 50000,500000,5000000] [--blocks-at-once N] [--print-only]
Writes its section of benchmarks/RESULTS.md (with the device, the core count and the date) and prints it;
exits non-zero if any dataset differs between its two runs or fails a marginal check.
"""

from __future__ import annotations

import argparse
import datetime as dt
import os
import shutil
import sys
import tempfile
from pathlib import Path

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE))
from results import CLI, machine, measure, write_section  # noqa: E402

from causalsynth.dataset.manifest import read_manifest  # noqa: E402

DEVICE_PROBE = ("import jax; d = jax.devices()[0]; "
                "print(d.platform, *[d.device_kind] * (d.device_kind != d.platform), f'x{jax.device_count()}')")


def device() -> str:
    """The accelerator JAX samples on (or ``cpu``), as a child process sees it."""
    return measure([sys.executable, "-c", DEVICE_PROBE])["stdout"].strip()


def fingerprint(manifest: dict) -> dict:
    """What must be equal between two runs of the same job: each part's SHA-256 and the tallies."""
    return {"parts": {t: [p["sha256"] for p in spec["parts"]] for t, spec in manifest["tables"].items()},
            "marginals": manifest["marginals"]}


def marginals(manifest: dict) -> tuple[int, int]:
    """(passed, run) of the marginal checks, judged on the tallies the manifest holds."""
    from causalsynth.config.loading import load_config
    from causalsynth.validate.marginals import counted_checks

    checks = counted_checks(manifest, load_config(data=manifest["config"]))
    return sum(c.passed for c in checks), len(checks)


def sample_command(n_prs: int, at_once: int) -> list[str]:
    return [*CLI, "sample", "--n-prs", str(n_prs), "--blocks-at-once", str(at_once)]


def run_size(n_prs: int, work: Path, env: dict, at_once: int) -> dict:
    cli = sample_command(n_prs, at_once)
    first = measure(cli + ["--out", str(work / "a")], env)
    manifest = read_manifest(work / "a")
    rows = sum(t["rows"] for t in manifest["tables"].values())
    passed, checked = marginals(manifest)
    kept = fingerprint(manifest)
    shutil.rmtree(work / "a")
    second = measure(cli + ["--out", str(work / "b")], env)
    same = fingerprint(read_manifest(work / "b")) == kept
    shutil.rmtree(work / "b")
    refs = [sys.executable, str(HERE / "references.py")]
    floors = {}
    for kind in ("floor", "overlapped"):
        floors[kind] = measure(refs + [kind, str(n_prs), str(work / kind)])
        shutil.rmtree(work / kind)
    return {"n_prs": n_prs, "rows": rows, "runs": (first, second), "same_bytes": same,
            "marginals": (passed, checked), "floors": floors}


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--sizes", default="50000,500000,5000000", help="PR counts, comma-separated")
    parser.add_argument("--blocks-at-once", type=int, default=1, help="blocks the device samples in one call")
    parser.add_argument("--print-only", action="store_true", help="print the section; leave RESULTS.md as it is")
    args = parser.parse_args(argv)
    sizes = [int(s) for s in args.sizes.split(",")]

    work = Path(tempfile.mkdtemp(prefix="causalsynth-device-"))
    cache = Path(os.environ.get("CAUSALSYNTH_CACHE_DIR") or work / "jax-cache")
    empty = not cache.is_dir() or not any(cache.iterdir())
    env = dict(os.environ, CAUSALSYNTH_CACHE_DIR=str(cache))
    try:
        on = device()
        cold = measure(sample_command(min(sizes), args.blocks_at_once) + ["--out", str(work / "cold")], env)
        results = [run_size(n, work, env, args.blocks_at_once) for n in sizes]
        alone = None
        if args.blocks_at_once > 1:  # the same dataset, one block a call
            measure(sample_command(min(sizes), 1) + ["--out", str(work / "alone")], env)
            alone = fingerprint(read_manifest(work / "alone")) == fingerprint(read_manifest(work / "cold"))
        shutil.rmtree(work / "cold")
    finally:
        shutil.rmtree(work, ignore_errors=True)

    lines = [
        "## `causalsynth sample` at scale on the device present",
        "",
        f"Measured {dt.date.today().isoformat()} by `python benchmarks/bench_device.py` on {machine()}; "
        f"JAX samples on: {on}, {args.blocks_at_once} block(s) a call.",
        "Each run is a fresh process with the compiled sampler in the cache (warm); each size is sampled twice "
        "with seed 0, and the floors of `references.py` are run at the same size in the same run.",
        "",
        "| PRs | rows | wall (s), 1st / 2nd | rows/s | peak RSS (GB) | same bytes | marginals passed "
        "| floor, 1 writer (s) | floor, all cores (s) | vs floor / vs all-core floor |",
        "| ---: | ---: | ---: | ---: | ---: | --- | ---: | ---: | ---: | ---: |",
    ]
    for r in results:
        a, b = r["runs"]
        wall = min(a["wall_s"], b["wall_s"])
        single, overlapped = r["floors"]["floor"]["wall_s"], r["floors"]["overlapped"]["wall_s"]
        lines.append(
            f"| {r['n_prs']:,} | {r['rows']:,} | {a['wall_s']:.1f} / {b['wall_s']:.1f} | {r['rows'] / wall:,.0f} "
            f"| {max(a['peak_rss_gb'], b['peak_rss_gb']):.2f} | {'yes' if r['same_bytes'] else 'NO'} "
            f"| {r['marginals'][0]} of {r['marginals'][1]} | {single:.1f} | {overlapped:.1f} "
            f"| {wall / single:.2f}x / {wall / overlapped:.2f}x |")
    first = "cold start (empty caches, compile included)" if empty else "first run (caches given, not empty)"
    lines += ["", f"- The {first}, {min(sizes):,} PRs: {cold['wall_s']:.1f} s.",
              "- Wall times and ratios use the faster of the two runs of each size."]
    if alone is not None:
        lines.append(f"- {min(sizes):,} PRs sampled one block a call: {'the same' if alone else 'OTHER'} bytes.")
    section = "\n".join(lines) if args.print_only else write_section("bench_device", lines)
    print(section)
    failed = [r["n_prs"] for r in results if not r["same_bytes"] or r["marginals"][0] < r["marginals"][1]]
    if alone is False:
        failed.append(f"{min(sizes)} (one block a call)")
    if failed:
        print(f"differing bytes or failed marginals at {failed} PRs", file=sys.stderr)
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main())
