"""Root-cause analysis on the series: each method's AC@1, AC@3 and Avg@5 per difficulty.

For the default telemetry priors, each shipped variant (rca_easy,
rca_medium, rca_hard) and a large system (the default priors with 25
services generated around the five: 30), samples --n-prs PRs with --series (seed 0; about 1.3
incident runs per PR, so 1,600 PRs give about 2,000 incidents) and scores
every incident with ``causalsynth.tasks.rca``: BARO's robust z-score and n-sigma
(the field's baselines, as RCAEval implements them), the mechanism-aware
method, and a constant (the services ranked by how often each is the root
cause). On each world's runs without a fault it also measures how the
series behave (``series_statistics``): persistence, spread, tails, and how
metrics and services move together.

Usage: python benchmarks/rca_benchmark.py [--n-prs 1600]
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

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE))
from results import machine, write_section  # noqa: E402

WORLDS = ("default", "rca_easy", "rca_medium", "rca_hard", "large")
# Worlds of the default priors with config changes: `large` has 25 services generated around the five.
CONFIGURED = {"large": ("service.generated.count=25",)}
METHODS = ("constant", "baro", "nsigma", "mechanism")


def sample_world(world: str, n_prs: int, out: Path, seed: int = 0, overrides: tuple[str, ...] = ()) -> None:
    """``sample --series`` of ``n_prs`` PRs into ``out``: the default priors, a variant's, or a
    ``CONFIGURED`` world's (and any further config ``overrides``)."""
    from causalsynth.config.loading import load_config
    from causalsynth.engine.interventions import Intervention, load_variant
    from causalsynth.jobs.sample import sample_dataset

    intervention = Intervention() if world == "default" or world in CONFIGURED else load_variant(world)
    overrides = ("telemetry.enabled=true", *CONFIGURED.get(world, ()), *overrides)
    sample_dataset(config=load_config(overrides=overrides), n_prs=n_prs, seed=seed, to=out,
                   intervention=intervention)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--n-prs", type=int, default=1600)
    args = parser.parse_args()

    from causalsynth.dataset.reading import Dataset
    from causalsynth.tasks.rca import evaluate_rca, read_cases, series_statistics

    work = Path(tempfile.mkdtemp(prefix="causalsynth-rca-"))
    scores, realism = {}, {}
    started = time.perf_counter()
    try:
        for world in WORLDS:
            out = work / world
            sample_world(world, args.n_prs, out)
            scores[world] = evaluate_rca(out)
            ds = Dataset(out)
            clean = read_cases(ds, clean=True)
            realism[world] = (len(clean), series_statistics(clean, dict(ds.config.model.INCIDENTS.metrics)))
    finally:
        shutil.rmtree(work, ignore_errors=True)
    seconds = time.perf_counter() - started
    lines = [f"## Root-cause analysis on the series ({args.n_prs:,} PRs per world, seed 0)", "",
             f"Measured {dt.date.today().isoformat()} by `python benchmarks/rca_benchmark.py` on {machine()}; "
             f"{seconds:.0f} s in all. Each world is `sample --series` (and `--variant`); every incident run "
             "is a case, scored as RCAEval scores (AC@k: the root cause among the first k services; Avg@5: the "
             "mean of AC@1..AC@5).", "",
             "| world | incidents (by fault) | method | AC@1 | AC@3 | Avg@5 | AC@1 by fault |",
             "| --- | --- | --- | ---: | ---: | ---: | --- |"]
    for world in WORLDS:
        cases = scores[world]["cases"]
        counted = ", ".join(f"{kind} {n:,}" for kind, n in cases["by_fault"].items())
        for i, method in enumerate(METHODS):
            m = scores[world][method]
            head = f"{world} | {cases['n']:,} ({counted})" if i == 0 else " | "
            by_fault = ", ".join(f"{kind} {s['AC@1']:.2f}" for kind, s in m["by_fault"].items())
            lines.append(f"| {head} | {method} | {m['AC@1']:.3f} | {m['AC@3']:.3f} | {m['Avg@5']:.3f} | {by_fault} |")
    easy, hard = scores["rca_easy"], scores["rca_hard"]
    lines += ["", f"BARO's AC@1 falls from {easy['baro']['AC@1']:.2f} on rca_easy to {hard['baro']['AC@1']:.2f} "
              f"on rca_hard, while the method that knows the fault's pattern keeps "
              f"{hard['mechanism']['AC@1']:.2f}: the difficulty comes from confusions real incidents have "
              "(propagation, noise, unrelated events, gaps, drift), not from erasing the signal. A constant "
              f"guess (the most frequent root causes first) scores {hard['constant']['AC@1']:.2f}"
              + (": BARO falls below it on rca_hard." if hard["baro"]["AC@1"] < hard["constant"]["AC@1"] else ".")]
    lines += ["", "**How the series behave** (`tasks.rca.series_statistics` on each world's runs without a fault): "
              "lag-1 autocorrelation of the logs and coefficient of variation within a window, per metric; the "
              "excess kurtosis of latency's log-differences; the lowest service's median correlation of latency "
              "and of CPU with its request rate within a window; the median correlation of two services' "
              "latencies; the busiest service's median CPU over the idlest's.", "",
              "| world | windows | lag-1 latency / errors / requests / cpu / memory / disk | CV latency / errors / cpu "
              "| kurtosis | corr(latency, requests) | corr(cpu, requests) | corr(service, service) | CPU spread |",
              "| --- | ---: | --- | --- | ---: | ---: | ---: | ---: | ---: |"]
    for world in WORLDS:
        n, r = realism[world]
        lag = " / ".join(f"{r[m]['lag1']:.2f}" for m in ("latency", "error", "workload", "cpu", "mem", "disk"))
        cv = " / ".join(f"{r[m]['cv']:.3f}" for m in ("latency", "error", "cpu"))
        lines.append(f"| {world} | {n:,} | {lag} | {cv} | {r['latency']['kurtosis']:.1f} "
                     f"| {r['latency']['corr_workload']:.2f} | {r['cpu']['corr_workload']:.2f} "
                     f"| {r['services']['corr']:.2f} | {r['services']['cpu_spread']:.2f} |")
    print(write_section("rca", lines))


if __name__ == "__main__":
    main()
