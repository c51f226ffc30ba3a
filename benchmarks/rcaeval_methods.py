"""RCAEval's own methods on exported cases: AC@1, AC@3 and Avg@5 per world and fault kind.

For the default telemetry priors and each shipped variant (rca_easy,
rca_medium, rca_hard), samples --n-prs PRs with --series (seed 0, as
rca_benchmark.py), exports them with ``export --format rcaeval`` and runs
RCAEval's implementations (PyPI ``RCAEval``) on each case folder exactly as
its ``main.py`` reads one (``data.csv`` forward-filled, ``inject_time.txt``):
BARO and n-sigma (the field's baselines), CIRCA (a regression-based
hypothesis test on a structural graph it learns with PC) and PC-PageRank
(PageRank on the PC graph; it needs ``scikit-network``, the ``bench``
extra). The causal methods take about a second a case on 2 cores, so each
world is scored on up to --per-fault cases of each fault kind, spread evenly
over the cases. Beside them:

- a constant: the world's services ranked by how often each is the root cause;
- the shortcut: a logistic regression on each column's log ratio of its mean
  after the inject time to its mean before (services x metrics), trained on
  every case of the same world sampled with seed 1. If it beat the field's
  methods by far, the cases would hold a pattern no real incident has.

Usage: python benchmarks/rcaeval_methods.py [--n-prs 1600] [--per-fault 20]
Writes its section of benchmarks/RESULTS.md and prints it.
"""

from __future__ import annotations

import argparse
import datetime as dt
import json
import shutil
import sys
import tempfile
import time
import warnings
from collections import Counter
from pathlib import Path

import numpy as np

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE))
from rca_benchmark import sample_world  # noqa: E402
from results import machine, write_section  # noqa: E402

WORLDS = ("default", "rca_easy", "rca_medium", "rca_hard")
METHODS = ("constant", "shortcut", "baro", "nsigma", "circa", "pc_pagerank")


def _methods() -> dict:
    from RCAEval.e2e import nsigma
    from RCAEval.e2e.baro import baro
    from RCAEval.e2e.circa import circa
    from RCAEval.e2e.pc_pagerank import pc_pagerank

    return {"baro": baro, "nsigma": nsigma, "circa": circa, "pc_pagerank": pc_pagerank}


def _read_case(folder: Path):
    """A case as RCAEval's ``main.py`` reads it: ``data.csv`` forward-filled, and the inject time."""
    import pandas as pd

    data = pd.read_csv(folder / "data.csv").ffill().fillna(0)
    return data, int((folder / "inject_time.txt").read_text().split()[0])


def post_pre_ratios(data, inject: int) -> np.ndarray:
    """Each column's log ratio of its mean after the inject time to its mean before: the shortcut's features."""
    values = data.drop(columns="time").to_numpy(float)
    after = data["time"].to_numpy() >= inject
    return np.log(np.maximum(values[after].mean(0), 1e-9) / np.maximum(values[~after].mean(0), 1e-9))


def train_shortcut(out: Path):
    """The logistic regression on post/pre ratios, fitted on every case of an exported world."""
    from sklearn.linear_model import LogisticRegression
    from sklearn.pipeline import make_pipeline
    from sklearn.preprocessing import StandardScaler

    listed = json.loads((out / "cases.json").read_text())["cases"]
    features = np.stack([post_pre_ratios(*_read_case(out / c["case"])) for c in listed])
    model = make_pipeline(StandardScaler(), LogisticRegression(max_iter=5000))
    return model.fit(features, [c["root_cause_service"] for c in listed])


def _spread(cases: list[dict], per_fault: int) -> list[dict]:
    """Up to ``per_fault`` cases of each fault kind, evenly spaced over that kind's cases."""
    chosen = []
    for fault in sorted({c["fault_kind"] for c in cases}):
        of_fault = [c for c in cases if c["fault_kind"] == fault]
        at = np.unique(np.linspace(0, len(of_fault) - 1, min(per_fault, len(of_fault))).astype(int))
        chosen += [of_fault[i] for i in at]
    return chosen


def _ranked_services(ranks: list[str]) -> list[str]:
    """RCAEval ranks ``<service>_<metric>`` columns; a service's place is its first column's."""
    return list(dict.fromkeys(r.split("_")[0] for r in ranks))


def _scores(hits: list[list[bool]]) -> dict[str, float]:
    """AC@k (the root among the first k) and Avg@5, from each case's hit at ranks 1..5."""
    at = np.asarray(hits, float)                      # (cases, 5): root within the first k
    return {"AC@1": at[:, 0].mean(), "AC@3": at[:, 2].mean(), "Avg@5": at.mean()}


def score_world(out: Path, per_fault: int, shortcut) -> dict:
    listed = json.loads((out / "cases.json").read_text())["cases"]
    frequency = [s for s, _ in Counter(c["root_cause_service"] for c in listed).most_common()]
    methods = _methods()
    hits: dict[tuple[str, str], list[list[bool]]] = {}
    for case in _spread(listed, per_fault):
        data, inject = _read_case(out / case["case"])
        odds = shortcut.predict_proba(post_pre_ratios(data, inject)[None, :])[0]
        ranked = {"constant": frequency, "shortcut": list(shortcut.classes_[np.argsort(-odds, kind="stable")])}
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            for name, method in methods.items():
                ranked[name] = _ranked_services(method(data, inject, dataset="re1-ob")["ranks"])
        for name, services in ranked.items():
            row = [case["root_cause_service"] in services[:k] for k in range(1, 6)]
            for fault in (case["fault_kind"], "all"):
                hits.setdefault((name, fault), []).append(row)
    return {key: _scores(rows) | {"n": len(rows)} for key, rows in hits.items()}


def score_tables(worlds, methods, scores: dict) -> list[str]:
    """The results' two tables: each world's methods overall (AC@1, AC@3, Avg@5, cases), then per fault
    kind (AC@1 / Avg@5); ``scores[world][(method, fault or "all")]`` as ``score_world`` gives them."""
    faults = sorted({fault for world in scores.values() for _, fault in world if fault != "all"})
    lines = ["| world | method | AC@1 | AC@3 | Avg@5 | cases |", "| --- | --- | ---: | ---: | ---: | ---: |"]
    for world in worlds:
        for i, method in enumerate(methods):
            s = scores[world][(method, "all")]
            lines.append(f"| {world if i == 0 else ''} | {method} | {s['AC@1']:.2f} | {s['AC@3']:.2f} "
                         f"| {s['Avg@5']:.2f} | {s['n']} |")
    lines += ["", "Per fault kind, AC@1 / Avg@5:", "",
              "| world | method | " + " | ".join(faults) + " |",
              "| --- | --- | " + " | ".join("---" for _ in faults) + " |"]
    for world in worlds:
        for i, method in enumerate(methods):
            cells = [f"{s['AC@1']:.2f} / {s['Avg@5']:.2f}" if (s := scores[world].get((method, f))) else ""
                     for f in faults]
            lines.append(f"| {world if i == 0 else ''} | {method} | " + " | ".join(cells) + " |")
    return lines


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--n-prs", type=int, default=1600)
    parser.add_argument("--per-fault", type=int, default=20)
    args = parser.parse_args()

    from causalsynth.tasks.rcaeval import write_rcaeval

    work = Path(tempfile.mkdtemp(prefix="causalsynth-rcaeval-"))
    scores = {}
    started = time.perf_counter()
    try:
        for world in WORLDS:
            sample_world(world, args.n_prs, work / f"{world}-training", seed=1)
            shortcut = train_shortcut(write_rcaeval(work / f"{world}-training", work / f"{world}-training-cases"))
            sample_world(world, args.n_prs, work / world)
            write_rcaeval(work / world, work / f"{world}-cases")
            scores[world] = score_world(work / f"{world}-cases", args.per_fault, shortcut)
            print(f"{world}: {time.perf_counter() - started:.0f} s", file=sys.stderr)
    finally:
        shutil.rmtree(work, ignore_errors=True)
    seconds = time.perf_counter() - started
    faults = sorted({fault for world in scores.values() for _, fault in world if fault != "all"})
    lines = [f"## RCAEval's own methods on exported cases ({args.n_prs:,} PRs per world, seed 0)", "",
             f"Measured {dt.date.today().isoformat()} by `python benchmarks/rcaeval_methods.py` on {machine()}; "
             f"{seconds:.0f} s in all. Each world is `sample --series` (and `--variant`), exported with "
             "`export --format rcaeval`; RCAEval's BARO, n-sigma, CIRCA and PC-PageRank (PyPI `RCAEval`) run on "
             f"each case folder as its `main.py` reads one, on up to {args.per_fault} cases per fault kind spread "
             "over the world's cases. Constant: the world's services by how often each is the root cause. "
             "Shortcut: a logistic regression on each column's post/pre mean ratio, trained on the same world "
             "sampled with seed 1.", "",
             *score_tables(WORLDS, METHODS, scores)]
    easy, hard = scores["rca_easy"], scores["rca_hard"]
    field = ("baro", "nsigma", "circa", "pc_pagerank")
    best = max(field, key=lambda m: hard[(m, "all")]["AC@1"])
    lines += ["", f"On rca_hard the shortcut's AC@1 is {hard[('shortcut', 'all')]['AC@1']:.2f}, RCAEval's best "
              f"method's ({best}) {hard[(best, 'all')]['AC@1']:.2f}. From rca_easy to rca_hard, AC@1 falls "
              + ", ".join(f"{m} {easy[(m, 'all')]['AC@1']:.2f} to {hard[(m, 'all')]['AC@1']:.2f}" for m in field)
              + ". BARO's Avg@5 on rca_easy by fault kind: "
              + ", ".join(f"{f} {easy[('baro', f)]['Avg@5']:.2f}" for f in faults if ('baro', f) in easy) + "."]
    print(write_section("rcaeval_methods", lines))


if __name__ == "__main__":
    main()
