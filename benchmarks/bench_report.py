"""`causalsynth report` at 20,000 PRs: size and time of the file, against a baseline installation.

Samples a 20,000-PR dataset and its `no_regressions` twin once, then times `causalsynth report`
(whole process, warm caches) on the dataset alone and beside its twin, alternated with the same
runs of the baseline installation (--baseline PYTHON: the interpreter of another installation,
such as the release before the report was rewritten), and writes the figures to RESULTS.md.

Usage: python benchmarks/bench_report.py --baseline PYTHON [--n-prs 20000] [--repeats 3]
"""

from __future__ import annotations

import argparse
import datetime
import statistics
import subprocess
import sys
import tempfile
from pathlib import Path

from results import machine, measure, write_section


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--n-prs", type=int, default=20_000)
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--baseline", required=True, help="python of another causalsynth installation")
    args = parser.parse_args()
    cli = [str(Path(sys.executable).parent / "causalsynth")]
    with tempfile.TemporaryDirectory() as tmp:
        work = Path(tmp)
        subprocess.run([*cli, "sample", "--n-prs", str(args.n_prs), "--out", str(work / "ds")], check=True,
                       capture_output=True)
        subprocess.run([*cli, "variant", str(work / "ds"), "--variant", "no_regressions", "--out",
                        str(work / "twin")], check=True, capture_output=True)
        rows = []
        for label, extra in (("alone", []), ("beside its twin", ["--compare", str(work / "twin")])):
            times: dict[str, list[float]] = {"ours": [], "baseline": []}
            sizes = {}
            for _ in range(args.repeats):
                for who, python in (("ours", sys.executable), ("baseline", args.baseline)):
                    out = work / f"{who}.html"
                    run = measure([str(Path(python).parent / "causalsynth"), "report", str(work / "ds"), *extra,
                                   "--out", str(out)])
                    times[who].append(run["wall_s"])
                    sizes[who] = out.stat().st_size / 1e6
            ours, base = statistics.median(times["ours"]), statistics.median(times["baseline"])
            rows.append(f"| {label} | {ours:.1f} s | {base:.1f} s | {ours / base:.2f}x | {sizes['ours']:.2f} MB | "
                        f"{sizes['baseline']:.2f} MB | {sizes['ours'] / sizes['baseline']:.2f}x |")
    version = subprocess.run([args.baseline, "-c",
                              "from importlib.metadata import version; print(version('causalsynth'))"],
                             capture_output=True, text=True).stdout.strip()
    lines = ["## Report (`python benchmarks/bench_report.py`)", "",
             f"{machine()}; {datetime.date.today()}; {args.n_prs:,} PRs; median of {args.repeats} whole-process "
             f"runs each, alternated with the baseline installation (causalsynth {version}, the report before its "
             "rewrite: PNG charts, no Graphviz), warm caches.", "",
             "| report | time | baseline | ratio | size | baseline | ratio |",
             "| --- | ---: | ---: | ---: | ---: | ---: | ---: |",
             *rows]
    print(write_section("report", lines))


if __name__ == "__main__":
    main()
