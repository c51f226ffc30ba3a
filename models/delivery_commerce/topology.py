"""A service graph of realistic size: services added around the story's five, drawn from their own seed.

The five services of the story (``services``, ``service.depends_on``) are the
default system. ``service.generated`` adds ``count`` more, one at a time, as a
system grows: each is called by one service already reached from the entry
(so every service is, and the graph has no cycles), and by a second one with
``second_caller_rate`` (fan-in), unless a trace from the entry would then
pass more than ``max_call_paths`` call paths (the span plate's size; each
service still to come keeps one in reserve). Each
added service gets:

- a profile that composes along calls: each call is made by a share (0.3 to
  1) of the caller's requests, so the service's request rate is what its
  callers send and its latency its own time (median 4 ms) plus that share of
  each callee's: an added caller's latency includes its callees' (the five
  keep the seed's profiles); error and retry rates in the five's range;
- a resource level around 1 (``telemetry.resource_level``), so CPU, memory
  and disk differ by service;
- one to ``operations`` operations named after it (``GetCart``, ``ListCart``, …).

Regressions stay where the team's PRs land: an added service has no
``primary_service`` share, and no PR touches it. Anomalies and injected faults
land on any service, so incidents spread over the whole graph.

The result is config as data: the config with the added services written into
every per-service mapping (what the model, the checks and the exports read),
the same for the same ``graph_seed``. A dataset's manifest records the config
as given; reading it expands it again, to the same graph.
"""

from __future__ import annotations

import copy
from typing import Any

import numpy as np

# Names for added services, in order; past the list they repeat with a number (cart-2).
NAMES = ("cart", "payment", "inventory", "shipping", "catalog", "search", "recommendation", "pricing", "currency",
         "auth", "session", "review", "media", "fraud", "tax", "loyalty", "coupon", "wishlist", "address", "email",
         "ledger", "invoice", "warehouse", "fulfillment", "returns", "analytics", "ads", "feature-flags", "cache",
         "queue", "scheduler", "audit", "geo", "support", "rating", "stock")
VERBS = ("Get", "List", "Update", "Create", "Delete")
CALLS_PER_REQUEST = (0.3, 1.0)  # share of a caller's requests that make a call (uniform, per call)
OWN_LATENCY_MS = 4.0            # median of an added service's own time, before its calls
OWN_LATENCY_SD = 0.6            # log-scale sd of it
ERROR_RATE = (0.002, 0.008)
RETRY_RATE = (0.005, 0.03)
RESOURCE_LEVEL_SD = 0.25        # log-scale sd of an added service's resource level around 1


def expand(data: dict[str, Any]) -> dict[str, Any]:
    """``data`` with ``service.generated.count`` services added to every per-service mapping; ``data``
    itself when the count is 0. Raises ``ValueError`` naming the key when the call-path budget is too
    small for the count."""
    gen = data["service"]["generated"]
    count = int(gen["count"])
    if count == 0:
        return data
    if count < 0:
        raise ValueError(f"service.generated.count: {count} must be >= 0 (services added to the five)")
    out = copy.deepcopy(data)
    rng = np.random.default_rng(int(gen["graph_seed"]))
    core = list(out["services"])
    calls = {s: list(out["service"]["depends_on"].get(s, [])) for s in core}
    entry = out["service"]["entry"]
    reached = _reached(calls, entry)
    added = _names(count, set(core))
    for name, left in zip(added, range(count - 1, -1, -1)):
        # Each service still to add needs a path of its own: keep one per service in reserve.
        paths = _paths_to(calls, entry)  # a trace has a span per call path: their sum
        budget = int(gen["max_call_paths"]) - sum(paths.values()) - left
        callers = [s for s in reached if paths[s] <= budget]
        if not callers:
            raise ValueError(f"service.generated.max_call_paths: {gen['max_call_paths']} call paths from "
                             f"{entry} are too few for {count} added services (each needs one); raise it or "
                             f"lower service.generated.count")
        first = callers[rng.integers(len(callers))]
        calls[first].append(name)
        calls[name] = []
        if rng.random() < float(gen["second_caller_rate"]):
            others = [s for s in reached if s != first and paths[s] <= budget - paths[first]]
            if others:
                calls[others[rng.integers(len(others))]].append(name)
        reached.append(name)
    _profiles(out, rng, calls, added, int(gen["operations"]))
    out["service"]["depends_on"] = {s: calls[s] for s in [*core, *added]}
    shares = out["pull_request"]["primary_service"]["shares"]
    out["pull_request"]["primary_service"]["shares"] = shares | dict.fromkeys(added, 0.0)
    return out


def _profiles(out: dict, rng: np.random.Generator, calls: dict, added: list[str], operations: int) -> None:
    """Each added service's profile, resource level and operations. A call ``c → s`` is made by a
    share of ``c``'s requests (``CALLS_PER_REQUEST``): ``s`` serves that share of each caller's
    traffic, and its latency is its own time plus that share of each callee's, so a caller's latency
    includes its callees'. The order the services were added in has callers first: traffic is set in
    it, latency in reverse."""
    profile, level = out["services"], out["telemetry"]["resource_level"]
    ops = out["telemetry"]["traces"]["operations"]
    share = {(c, s): rng.uniform(*CALLS_PER_REQUEST) for c, callees in calls.items() for s in callees if s in added}
    own = rng.lognormal(np.log(OWN_LATENCY_MS), OWN_LATENCY_SD, len(added))
    for s in added:
        profile[s] = {"throughput_rps": round(sum(profile[c]["throughput_rps"] * share[c, s]
                                                  for c, callees in calls.items() if s in callees), 1),
                      "error_rate": round(rng.uniform(*ERROR_RATE), 4),
                      "retry_rate": round(rng.uniform(*RETRY_RATE), 3)}
        level[s] = round(float(np.exp(RESOURCE_LEVEL_SD * rng.standard_normal())), 2)
        noun = "".join(part.capitalize() for part in s.split("-"))
        ops[s] = [f"{verb}{noun}" for verb in VERBS[:rng.integers(1, operations + 1)]]
    for i in reversed(range(len(added))):
        s = added[i]
        latency = own[i] + sum(share[s, callee] * profile[callee]["response_time_ms"] for callee in calls[s])
        profile[s] = {"response_time_ms": round(float(latency), 2)} | profile[s]


def _names(count: int, taken: set[str]) -> list[str]:
    names, rounds = [], 1
    while len(names) < count:
        for base in NAMES:
            name = base if rounds == 1 else f"{base}-{rounds}"
            if name not in taken and len(names) < count:
                names.append(name)
        rounds += 1
    return names


def _reached(calls: dict[str, list[str]], entry: str) -> list[str]:
    """The services a call from ``entry`` reaches, ``entry`` first, each once."""
    seen, todo = [entry], [entry]
    while todo:
        for callee in calls.get(todo.pop(0), []):
            if callee not in seen:
                seen.append(callee)
                todo.append(callee)
    return seen


def _paths_to(calls: dict[str, list[str]], entry: str) -> dict[str, int]:
    """How many call paths lead from ``entry`` to each service (0 where none does)."""
    callers: dict[str, list[str]] = {s: [] for s in calls}
    for caller, callees in calls.items():
        for callee in callees:
            callers.setdefault(callee, []).append(caller)
    memo: dict[str, int] = {}

    def count(s: str) -> int:
        if s not in memo:
            memo[s] = 1 if s == entry else sum(count(c) for c in callers[s])
        return memo[s]

    return {s: count(s) for s in callers}
