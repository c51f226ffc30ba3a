"""RCAEval's own methods on exported cases: AC@1, AC@3 and Avg@5 per world and fault type.

For the default telemetry priors and each shipped variant (rca_easy,
rca_medium, rca_hard), samples --n-prs PRs with --series (seed 0, as
rca_benchmark.py), exports them with ``export --format rcaeval`` and runs
RCAEval's implementations (PyPI ``RCAEval``) on each case folder exactly as
its ``main.py`` reads one (``data.csv`` forward-filled, ``inject_time.txt``):
BARO and n-sigma (the field's baselines) and CIRCA (a causal method: a
regression-based hypothesis test on a structural graph it learns with PC).
CIRCA takes about 0.6 s a case on 2 cores, so each world is scored on up to
--per-fault cases of each fault type, spread evenly over the cases. Beside
them, a constant: the world's services ranked by how often each is the root
cause.

Usage: python benchmarks/rcaeval_methods.py [--n-prs 1600] [--per-fault 30]
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
from rca_benchmark import WORLDS, sample_world  # noqa: E402
from results import machine, write_section  # noqa: E402

METHODS = ("constant", "baro", "nsigma", "circa")


def _methods() -> dict:
    from RCAEval.e2e import nsigma
    from RCAEval.e2e.baro import baro
    from RCAEval.e2e.circa import circa

    return {"baro": baro, "nsigma": nsigma, "circa": circa}


def _spread(cases: list[dict], per_fault: int) -> list[dict]:
    """Up to ``per_fault`` cases of each fault type, evenly spaced over that type's cases."""
    chosen = []
    for fault in sorted({c["fault"] for c in cases}):
        of_fault = [c for c in cases if c["fault"] == fault]
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


def score_world(out: Path, per_fault: int) -> dict:
    import pandas as pd

    listed = json.loads((out / "cases.json").read_text())["cases"]
    frequency = [s for s, _ in Counter(c["root_cause_service"] for c in listed).most_common()]
    methods = _methods()
    hits: dict[tuple[str, str], list[list[bool]]] = {}
    for case in _spread(listed, per_fault):
        folder = out / case["case"]
        data = pd.read_csv(folder / "data.csv").ffill().fillna(0)   # as RCAEval's main.py reads a case
        inject = int((folder / "inject_time.txt").read_text().split()[0])
        ranked = {"constant": frequency}
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            for name, method in methods.items():
                ranked[name] = _ranked_services(method(data, inject, dataset="re1-ob")["ranks"])
        for name, services in ranked.items():
            row = [case["root_cause_service"] in services[:k] for k in range(1, 6)]
            for fault in (case["fault"], "all"):
                hits.setdefault((name, fault), []).append(row)
    return {key: _scores(rows) | {"n": len(rows)} for key, rows in hits.items()}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--n-prs", type=int, default=1600)
    parser.add_argument("--per-fault", type=int, default=30)
    args = parser.parse_args()

    from causalsynth.tasks.rcaeval import write_rcaeval

    work = Path(tempfile.mkdtemp(prefix="causalsynth-rcaeval-"))
    scores = {}
    started = time.perf_counter()
    try:
        for world in WORLDS:
            sample_world(world, args.n_prs, work / world)
            write_rcaeval(work / world, work / f"{world}-cases")
            scores[world] = score_world(work / f"{world}-cases", args.per_fault)
            print(f"{world}: {time.perf_counter() - started:.0f} s", file=sys.stderr)
    finally:
        shutil.rmtree(work, ignore_errors=True)
    seconds = time.perf_counter() - started
    faults = sorted({fault for world in scores.values() for _, fault in world if fault != "all"})
    lines = [f"## RCAEval's own methods on exported cases ({args.n_prs:,} PRs per world, seed 0)", "",
             f"Measured {dt.date.today().isoformat()} by `python benchmarks/rcaeval_methods.py` on {machine()}; "
             f"{seconds:.0f} s in all. Each world is `sample --series` (and `--variant`), exported with "
             "`export --format rcaeval`; RCAEval's BARO, n-sigma and CIRCA (PyPI `RCAEval`) run on each case "
             f"folder as its `main.py` reads one, on up to {args.per_fault} cases per fault type spread over "
             "the world's cases. Constant: the world's services by how often each is the root cause. "
             "Cells: AC@1 / AC@3 / Avg@5 (cases).", "",
             "| world | method | all | " + " | ".join(faults) + " |",
             "| --- | --- | --- | " + " | ".join("---" for _ in faults) + " |"]
    for world in WORLDS:
        for i, method in enumerate(METHODS):
            cells = []
            for fault in ("all", *faults):
                s = scores[world].get((method, fault))
                cells.append("" if s is None else f"{s['AC@1']:.2f} / {s['AC@3']:.2f} / {s['Avg@5']:.2f} ({s['n']})")
            lines.append(f"| {world if i == 0 else ''} | {method} | " + " | ".join(cells) + " |")
    easy, hard = scores["rca_easy"], scores["rca_hard"]
    lines += ["", f"CIRCA's AC@1 is {easy[('circa', 'all')]['AC@1']:.2f} on rca_easy and "
              f"{hard[('circa', 'all')]['AC@1']:.2f} on rca_hard; BARO's {easy[('baro', 'all')]['AC@1']:.2f} and "
              f"{hard[('baro', 'all')]['AC@1']:.2f}. BARO's Avg@5 on rca_easy by fault type: "
              + ", ".join(f"{f} {easy[('baro', f)]['Avg@5']:.2f}" for f in faults if ('baro', f) in easy) + "."]
    print(write_section("rcaeval_methods", lines))


if __name__ == "__main__":
    main()
