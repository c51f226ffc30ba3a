"""The seed's ML targets on a default dataset: sample, evaluate, record.

Samples the default 50,000-PR dataset, trains the baseline of every task on
its train split, scores it on its test split next to the seed's targets, the
model's own Bayes score and a constant predictor's score, and writes the table
to benchmarks/RESULTS.md.

Usage: python benchmarks/evaluate_default.py [--n-prs 50000] [--seed 0]
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


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--n-prs", type=int, default=50_000)
    parser.add_argument("--seed", type=int, default=0)
    args = parser.parse_args()

    from causalsynth.config.loading import load_config
    from causalsynth.jobs.sample import sample_dataset
    from causalsynth.tasks.evaluation import evaluate, verdict

    work = Path(tempfile.mkdtemp(prefix="causalsynth-eval-"))
    try:
        sample_dataset(config=load_config(), n_prs=args.n_prs, seed=args.seed, to=work / "ds")
        started = time.perf_counter()
        results = evaluate(work / "ds")
        seconds = time.perf_counter() - started
    finally:
        shutil.rmtree(work, ignore_errors=True)

    fitted = ", ".join(f"{task} {r['_rows']['fitted']:,} of {r['_rows']['train']:,}" for task, r in results.items())
    lines = [f"## `causalsynth evaluate` on the default {args.n_prs:,}-PR dataset (seed {args.seed})", "",
             f"Measured {dt.date.today().isoformat()} by `python benchmarks/evaluate_default.py` on {machine()}; "
             f"training and scoring all four tasks took {seconds:.0f} s.",
             "Baseline: HistGradientBoosting (scikit-learn defaults, random_state 0) trained on the train split "
             f"(rows fitted of the split's, per task: {fitted}; `ml.max_train_rows`), scored on the whole test "
             "split. Bayes: the rule p > 1/2 on the model's own probability of the label "
             "(for anomaly: its posterior given the run's metrics). Majority: a constant, the train split's "
             "majority class (binary, categorical) or median (continuous).", "",
             "| task | label | metric | baseline | seed target | Bayes | majority | |",
             "| --- | --- | --- | ---: | ---: | ---: | ---: | --- |"]
    met_by_constant = []
    for task, metrics in results.items():
        for name, m in metrics.items():
            if name.startswith("_"):
                continue
            label, _, metric = name.rpartition(".")
            target = "" if m["target"] is None else "> " + format(m["target"], ".2f")
            words = verdict(m)
            lines.append(f"| {task} | {label} | {metric} | {m['value']:.4f} | {target} | "
                         f"{'' if m['bayes'] is None else format(m['bayes'], '.4f')} | {m['majority']:.4f} | "
                         f"{'**misses**' if words == 'misses' else words} |")
            if m["constant_meets_target"]:
                met_by_constant.append(f"{task} {metric} {target}")
    lines += ["", "Seed targets a constant predictor meets too: "
              + (", ".join(met_by_constant) if met_by_constant else "none") + "."]
    print(write_section("evaluate_default", lines))


if __name__ == "__main__":
    main()
