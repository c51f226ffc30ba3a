"""Exact propagation labels: what an incident's fault did to every service and metric, from the
series beside their values in the world without the fault (``sample --counterfactual``).

With traces, each service's span operations are labelled the same way (``with_operations``).

No real system can observe this: a trace shows what was slow, not what would have been slow anyway.
Here both worlds are sampled with the same noise, so for each service and metric the label holds
the factual and the counterfactual mean from the fault's first tick on, their difference (the fault's effect),
whether the counterfactual itself would have looked anomalous (BARO's robust z-score of its ticks
from that tick on against those before it, above ``ANYWAY_Z``), and the paths the fault took:
the shortest call paths from the root cause (from each, in a case with two) up to the service, or,
for a service the fault moved with no call path to it, the model's shared cause
(``Incidents.shared``) between them.
"""

from __future__ import annotations

import warnings
from collections.abc import Mapping, Sequence

import numpy as np

from causalsynth.tasks.rca import roots

ANYWAY_Z = 3.0
# A span's duration differs between the worlds by more than this share of it: float32 carries about 7
# digits, and a caller's duration sums its callees' in an order the two worlds may fuse differently.
SPAN_RTOL = 1e-6


def call_paths(calls: Mapping[str, Sequence[str]], root: str) -> dict[str, list[list[str]]]:
    """Every shortest path from ``root`` up the calls to each service it reaches (``calls``: caller →
    its callees), as service names from ``root``; ``root`` itself has the path ``[root]``."""
    callers: dict[str, list[str]] = {}
    for caller, callees in calls.items():
        for callee in callees:
            callers.setdefault(callee, []).append(caller)
    paths, frontier = {root: [[root]]}, [root]
    while frontier:
        reached: dict[str, list[list[str]]] = {}
        for service in frontier:
            for caller in callers.get(service, []):
                if caller not in paths:
                    reached.setdefault(caller, []).extend(p + [caller] for p in paths[service])
        paths |= reached
        frontier = list(reached)
    return paths


def propagation(cases, c: int, names: Mapping[str, str], calls: Mapping[str, Sequence[str]],
                shared: tuple[str, Sequence[str]] | None, local: Sequence[str] = ()) -> list[dict]:
    """Case ``c``'s labels, one entry per service (``cases.without`` must hold the counterfactual series;
    ``names``: series column → the name the labels use; ``shared``: the shared cause's name and the fault
    kinds that reach every service through it; ``local``: the fault kinds calls do not carry)."""
    factual, without = cases.series[c], cases.without[c]                        # (S, M, T)
    after = np.arange(factual.shape[-1]) >= cases.onset_tick[c]
    paths: dict[str, list[list[str]]] = {}
    for cause, kind in roots(cases, c):   # every root's shortest paths (two roots: each service by either)
        for service, found in (call_paths(calls, cause) if kind not in local else {cause: [[cause]]}).items():
            paths.setdefault(service, []).extend(found)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", RuntimeWarning)   # a metric without ticks before the onset
        before = without[..., ~after]
        centre = np.nanmedian(before, -1)
        spread = np.nanpercentile(before, 75, -1) - np.nanpercentile(before, 25, -1)
        anyway = np.nanmax((without[..., after] - centre[..., None]) / np.where(spread > 0, spread, 1.0)[..., None],
                           -1) > ANYWAY_Z
        f_mean, cf_mean = np.nanmean(factual[..., after], -1), np.nanmean(without[..., after], -1)
    moved = np.any((factual != without) & ~np.isnan(factual), axis=-1)         # (S, M)
    out = []
    for s, service in enumerate(cases.services):
        affected = bool(moved[s].any())
        route = paths.get(service) or ([[cause, shared[0], service] for cause, kind in roots(cases, c)
                                         if kind in shared[1]] if affected and shared else [])
        out.append({"service": service, "affected": affected, "paths": route if affected else [],
                    "metrics": {names[m]: {"factual": float(f_mean[s, i]), "counterfactual": float(cf_mean[s, i]),
                                           "effect": float(f_mean[s, i] - cf_mean[s, i]),
                                           "moved": bool(moved[s, i]), "anomalous_anyway": bool(anyway[s, i])}
                                for i, m in enumerate(cases.metrics)}})
    return out


def with_operations(labels: list[dict], spans, first_ms: int, suffix: str) -> list[dict]:
    """``labels`` (``propagation``'s) with each service's span operations labelled from ``spans`` (one
    case's, with ``duration_ms``/``status`` and their values without the fault, ``<column><suffix>``):
    per operation, over the spans that start from ``first_ms`` on (the start of the first tick the fault
    is in, Unix ms), the mean duration in both worlds, its effect, the share failed in both, and whether
    any span moved: failed in one world only, or took longer or shorter by more than float32's rounding
    (``SPAN_RTOL``: a span's duration sums its callees', which the two worlds may round differently)."""
    if f"duration_ms{suffix}" not in spans:
        return labels
    after = spans[spans["started_at_ms"].to_numpy() >= first_ms]
    factual, without = after["duration_ms"].to_numpy(np.float64), after[f"duration_ms{suffix}"].to_numpy(np.float64)
    failed = after["status"].astype(str).to_numpy() == "ERROR"
    failed_without = after[f"status{suffix}"].astype(str).to_numpy() == "ERROR"
    moved_rows = ~np.isclose(spans["duration_ms"].to_numpy(np.float64), spans[f"duration_ms{suffix}"].to_numpy(
        np.float64), rtol=SPAN_RTOL, atol=0.0) | (
        spans["status"].astype(str).to_numpy() != spans[f"status{suffix}"].astype(str).to_numpy())
    moved_ops = set(zip(spans["service_name"].astype(str)[moved_rows], spans["operation"].astype(str)[moved_rows]))
    keys = list(zip(after["service_name"].astype(str), after["operation"].astype(str)))
    by_op: dict[tuple[str, str], list[int]] = {}
    for i, key in enumerate(keys):
        by_op.setdefault(key, []).append(i)
    out = []
    for entry in labels:
        ops = {}
        for (service, operation), rows in sorted(by_op.items()):
            if service == entry["service"]:
                f, w = factual[rows].mean(), without[rows].mean()
                ops[operation] = {"spans": len(rows), "factual_ms": float(f), "counterfactual_ms": float(w),
                                  "effect_ms": float(f - w), "failed": float(failed[rows].mean()),
                                  "failed_without_fault": float(failed_without[rows].mean()),
                                  "moved": (service, operation) in moved_ops}
        out.append(entry | {"operations": ops})
    return out
