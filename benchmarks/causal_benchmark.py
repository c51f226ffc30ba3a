"""Is the default dataset a causal benchmark? Marginals, identities, confounding, abandonment.

Samples the default dataset (50,000 PRs) and records in benchmarks/RESULTS.md:

- every calibrated marginal and mix against its target (``causalsynth validate``'s checks);
- the share of rows keeping each identity the model declares (``IDENTITIES``);
- for the effect of a regression on a flow's conversion and on a run's
  response time: the ground truth (``causalsynth effects``: each unit under
  both interventions, same keys), the naive difference of regressed and
  clean PRs' units, and a doubly robust (AIPW) estimate adjusting for the set
  ``causalsynth graph --adjust`` prints, each with its standard error
  clustered by PR;
- how much ``abandonment_reason`` says beyond ``last_step``: macro-F1 of a
  classifier of the reason that sees the last step alone, and one that also
  sees the flow's causes.

Usage: python benchmarks/causal_benchmark.py [--n-prs 50000] [--seed 0]
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

TREATMENT = "has_performance_regression"
OUTCOMES = ("ecommerce_flows.converted", "system_runs.response_time_ms")
REASON_CAUSES = ["cart_size", "cart_value", "region", "device_type", "user_segment", "expected_latency_ms",
                 "load_intensity"]


def _rule(rule) -> str:
    """An identity's rule for a Markdown table cell."""
    return "`" + rule.replace("|", "\\|") + "`" if isinstance(rule, str) else f"`{rule.__name__}`"


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--n-prs", type=int, default=50_000)
    parser.add_argument("--seed", type=int, default=0)
    args = parser.parse_args()

    import pyarrow.parquet as pq

    from causalsynth.causal.adjustment import aipw, backdoor_set, unit_frame
    from causalsynth.causal.effects import estimate_effect
    from causalsynth.causal.graph import model_graph
    from causalsynth.config.loading import load_config
    from causalsynth.engine.program import Program
    from causalsynth.jobs.sample import sample_dataset
    from causalsynth.tasks.evaluation import label_information
    from causalsynth.validate.quality import validate_dataset

    config = load_config()
    program = Program(config)
    graph = model_graph(program)
    work = Path(tempfile.mkdtemp(prefix="causalsynth-causal-"))
    ds = work / "ds"
    started = time.perf_counter()
    try:
        sample_dataset(config=config, n_prs=args.n_prs, seed=args.seed, to=ds)
        read = lambda table, columns=None: pq.read_table(ds / table, columns=columns).to_pandas()  # noqa: E731
        checks = validate_dataset(ds)
        marginals = [c for c in checks if c.check.startswith("marginal")]
        identities = [c for c in checks if c.check.startswith("identity")]
        effects = []
        for outcome in OUTCOMES:
            adjust = backdoor_set(graph, program, TREATMENT, outcome)
            truth = estimate_effect(config=config, treatment=TREATMENT, levels=("false", "true"), outcome=outcome,
                                    n_prs=args.n_prs, seed=args.seed)
            frame = unit_frame(ds, f"pull_requests.{TREATMENT}", outcome, list(adjust.columns))
            estimate = aipw(frame, f"pull_requests.{TREATMENT}", outcome, list(adjust.columns), cluster="pr_id")
            effects.append((outcome, adjust, truth, estimate))
        flows = read("ecommerce_flows").merge(read("system_runs", ["run_id", "pr_id", "load_intensity"]), on="run_id")
        reasons = label_information(flows[~flows.converted], "abandonment_reason", ["last_step"], REASON_CAUSES,
                                    "pr_id")
        abandoned = flows.abandonment_reason[~flows.converted].astype(str).value_counts(normalize=True)
    finally:
        shutil.rmtree(work, ignore_errors=True)
    seconds = time.perf_counter() - started

    failed = [c for c in marginals if not c.passed]
    lines = [f"## Causal benchmark: the default {args.n_prs:,}-PR dataset (seed {args.seed})", "",
             f"Measured {dt.date.today().isoformat()} by `python benchmarks/causal_benchmark.py` on {machine()}; "
             f"{seconds:.0f} s in all.", "",
             f"**Marginals.** {len(marginals) - len(failed)} of {len(marginals)} calibrated rates and mix shares "
             "land within their tolerance:", "",
             "| marginal | target | observed | |", "| --- | ---: | ---: | --- |"]
    lines += [f"| {c.check.removeprefix('marginal ')} | {c.expected} | {c.observed} | "
              f"{'ok' if c.passed else '**off**'} |" for c in marginals]
    rules = {f"identity {i.table}: {i.name}": i.rule for i in config.model.IDENTITIES}
    lines += ["", "**Identities** (the model's `IDENTITIES`, as `causalsynth validate` counts the rows breaking "
              "each; README, \"Identities every row keeps\"):", "",
              "| identity | rule | rows breaking it |", "| --- | --- | ---: |"]
    lines += [f"| {c.check.removeprefix('identity ')} | "
              f"{_rule(rules[c.check])} | "
              f"{'none' if c.observed == 'every row' else c.observed} |" for c in identities]
    lines += ["", "**Confounding.** The effect of do(has_performance_regression = true) vs false. Ground truth: "
              "`causalsynth effects` (each unit under both interventions, same keys). Naive: regressed minus clean "
              "PRs' units. Adjusted: AIPW (cross-fitted gradient boosting, 2 folds by PR) on the set "
              "`causalsynth graph --adjust` prints. Standard errors clustered by PR.", "",
              "| outcome | ground truth | naive ± SE | naive − truth | adjusted for | AIPW ± SE | AIPW − truth |",
              "| --- | ---: | ---: | ---: | --- | ---: | ---: |"]
    for outcome, adjust, truth, est in effects:
        bias = est.naive - truth.average
        lines.append(f"| {outcome} | {truth.average:+.4g} | {est.naive:+.4g} ± {est.naive_se:.2g} | "
                     f"{bias:+.3g} ({abs(bias) / abs(truth.average):.0%} of the effect, "
                     f"{abs(bias) / est.naive_se:.0f} SE) | {', '.join(adjust.columns)} | "
                     f"{est.ate:+.4g} ± {est.se:.2g} | {est.ate - truth.average:+.3g} "
                     f"({abs(est.ate - truth.average) / est.se:.1f} SE) |")
    lines += ["", "**Abandonment.** Reasons among abandoned flows: "
              + ", ".join(f"{level} {share:.1%}" for level, share in abandoned.items())
              + ". Macro-F1 of a classifier of the reason (gradient boosting, 30 % of PRs held out): "
              f"last step alone {reasons['given']:.3f}; last step and the flow's causes "
              f"({', '.join(REASON_CAUSES)}) {reasons['with_causes']:.3f}; the most frequent reason "
              f"{reasons['majority']:.3f}."]
    print(write_section("causal_benchmark", lines))


if __name__ == "__main__":
    main()
