"""`validate`'s checks of what the model computes without randomness, computed again from the stored columns.

Which sites qualify comes from the model program, not from a list of rules:
the model graph (``graph.py``) holds, for every site, the sites its value is
computed from (JAX's provenance tracking over one abstract trace). A site
can be computed again when every site it is computed from is a stored
column, or is itself a deterministic site that can be. Then:

- ``derived TABLE.COLUMN``: a stored deterministic site that can be computed
  again is, by the model's own code on the stored parent columns, and the rows
  that differ are counted (a request count that is not throughput × duration,
  a service name not its slot's, a status not its score's band);
- ``possible TABLE.COLUMN``: a stored sampled site whose distribution's
  parameters can be computed again is held to a nonzero probability under
  that distribution (a regression where the stored probability is 0).

Out of reach, and said so in ``docs/guides/validation.md``: columns computed
from hidden noise; tables of a variable-length plate (their rows do not map
back to the model's grid without the hidden row mask: their rules are the
model's declared identities); timestamps (stored as sums with their base).
The model runs jitted, block by block, on the stored columns; XLA drops
everything the checked sites do not need, sampling included.
"""

from __future__ import annotations

from dataclasses import dataclass
from functools import cached_property

import jax
import jax.numpy as jnp
import numpy as np
import numpyro.distributions as dist
import pandas as pd
from numpyro import handlers
from numpyro.primitives import Messenger

from causalsynth.dataset.reading import DatasetFiles, UnreadableTable
from causalsynth.engine.compiled import CachedJit
from causalsynth.engine.program import TRACING, Column, Program, TableLayout
from causalsynth.validate.checks import Check, not_run

# Floats agree to this relative difference: the same operations on the same float32 inputs, compiled
# in another program, may round their last bit otherwise.
RTOL = 1e-6


@dataclass(frozen=True)
class Stored:
    """A site stored as a column of a table whose rows are the model's grid."""

    site: str
    layout: TableLayout
    column: Column

    @property
    def ref(self) -> str:
        return f"{self.layout.table.name}.{self.column.name}"


@dataclass(frozen=True)
class Plan:
    """The sites to compute again, each with the stored columns it is computed from."""

    derived: dict[str, tuple[str, ...]]
    possible: dict[str, tuple[str, ...]]
    stored: dict[str, Stored]
    missing: dict[str, str]  # a site not checked because a table it reads is unreadable → why

    @cached_property
    def inputs(self) -> tuple[str, ...]:
        """Stored sites the model is given: every parent, and each sampled site held to its distribution."""
        return tuple(sorted(set().union(*self.derived.values(), *self.possible.values(), self.possible)))

    @cached_property
    def outputs(self) -> tuple[str, ...]:
        return tuple(self.derived) + tuple(self.possible)


def _gridded(program: Program) -> dict[str, Stored]:
    """Every column of a table without a row mask, timestamps aside."""
    return {c.site: Stored(c.site, t, c) for t in program.tables if t.mask_site is None
            for c in t.columns if c.kind != "timestamp"}


def plan(program: Program, tables: set[str], intervened: set[str] = frozenset(),
         unreadable: dict[str, str] | None = None) -> Plan:
    """What can be computed again in a dataset holding ``tables`` (``unreadable``: table → why).

    An intervened site's stored value is the one the intervention set, not a draw from its
    distribution: it is read as a parent, never held to its distribution.
    """
    from causalsynth.causal.graph import model_graph

    graph = model_graph(program)
    unreadable = unreadable or {}
    gridded = {s: st for s, st in _gridded(program).items() if st.layout.table.name in tables}
    readable = set(gridded)  # an unreadable table's columns still count: their checks are reported not run
    known: dict[str, frozenset[str] | None] = {}

    def roots(site: str, via: set[str]) -> frozenset[str] | None:
        """The stored sites ``site`` is computed from, None where hidden noise enters."""
        if site in readable and site not in via:
            return frozenset({site})
        if site in known:
            return known[site]
        if program.sites[site].kind != "deterministic" or site in via:
            return None
        found: set[str] = set()
        for parent in sorted(graph.parents.get(site, ())):
            up = roots(parent, via | {site})
            if up is None:
                known[site] = None
                return None
            found |= up
        known[site] = frozenset(found)
        return known[site]

    derived, possible, missing = {}, {}, {}
    for site, st in gridded.items():
        kind = program.sites[site].kind
        if kind == "sample" and site in intervened:
            continue
        parents: set[str] = set()
        for parent in graph.parents.get(site, ()):
            up = roots(parent, {site})
            if up is None:
                break
            parents |= up
        else:
            table = st.layout.table.name
            blocked = sorted({gridded[p].layout.table.name for p in parents if p not in readable} | (
                {table} & set(unreadable)))
            if blocked:
                missing[site] = unreadable[blocked[0]]
            (derived if kind == "deterministic" else possible)[site] = tuple(sorted(parents))
    return Plan(derived=derived, possible=possible, stored=gridded, missing=missing)


class _computed_again(Messenger):
    """Each deterministic site's value as the model computes it, recorded before the stored value
    replaces it; each stored sampled site's log-probability under its distribution. Later code
    reads the stored values, so a site is computed from its stored parents."""

    def __init__(self, fn, stored: dict, out: dict):
        self.stored, self.out = stored, out
        super().__init__(fn)

    def process_message(self, msg):
        name = msg["name"]
        if msg["type"] == "deterministic":
            self.out[name] = msg["value"]
            if name in self.stored:
                msg["value"] = self.stored[name]
        elif msg["type"] == "sample" and name in self.stored:
            msg["value"] = self.stored[name]
            self.out[name] = _log_probability(msg["fn"], self.stored[name])


def _log_probability(fn, value):
    """log P(value) under ``fn``. A Bernoulli's or categorical's mass is read as is: their ``log_prob``
    clamps a probability of 0 to float32's epsilon, which would let an impossible row through."""
    base = fn
    while isinstance(base, dist.ExpandedDistribution):
        base = base.base_dist
    if isinstance(base, dist.BernoulliProbs):
        return jnp.log(jnp.where(value, base.probs, 1.0 - base.probs))
    if isinstance(base, dist.CategoricalProbs):
        n = base.probs.shape[-1]
        index = jnp.clip(value, 0, n - 1).astype(jnp.int32)
        probs = jnp.broadcast_to(base.probs, jnp.shape(value) + (n,))
        mass = jnp.take_along_axis(probs, index[..., None], axis=-1)[..., 0]
        return jnp.log(jnp.where((value >= 0) & (value < n), mass, 0.0))
    return fn.log_prob(value)


def _function(program: Program, p: Plan) -> CachedJit:
    model, n_prs, wanted = program.model.model, program.block_prs, p.outputs

    def block(params, stored):
        out: dict = {}
        with TRACING, handlers.seed(rng_seed=0):
            _computed_again(model, stored, out)(params, n_prs)
        return {name: out[name] for name in wanted}

    return program.compiled(block, "recompute", block_prs=n_prs, inputs=p.inputs, outputs=wanted)


def _values(files: DatasetFiles, st: Stored, dtype: str, n_prs: int) -> np.ndarray:
    """A stored column as the site's values on the dataset's whole grid (category names as level indices)."""
    values = files.values(st.layout.table.name, st.column.name)
    if isinstance(values, pd.Categorical):
        index = {level: i for i, level in enumerate(st.column.levels)}
        codes = np.asarray([index.get(str(c), -1) for c in values.categories], np.int64)
        values = np.where(values.codes >= 0, codes[values.codes], -1)
    grid = (n_prs, *st.layout.grid[1:])
    return np.asarray(values).astype(dtype).reshape(grid)


def _as_site(values: np.ndarray, shape: tuple[int, ...]) -> np.ndarray:
    """A block of a column's grid reduced to the site's own shape: its first value along the plates
    it is constant over (they are checked as the site's own ``derived`` rows)."""
    target = (1,) * (values.ndim - len(shape)) + tuple(shape)
    for axis, size in enumerate(target):
        if size == 1 and values.shape[axis] > 1:
            values = values[(slice(None),) * axis + (slice(0, 1),)]
    return values.reshape(shape)


def _differ(stored: np.ndarray, computed: np.ndarray, kind: str) -> np.ndarray:
    if kind == "float":
        return ~np.isclose(stored, computed, rtol=RTOL, atol=0.0)
    return stored != computed


def checks(files: DatasetFiles, program: Program, params, p: Plan, n_prs: int) -> list[Check]:
    """A ``derived`` check per site of ``p.derived``, a ``possible`` check per site of ``p.possible``."""
    def name(site: str) -> str:
        return ("derived " if site in p.derived else "possible ") + p.stored[site].ref

    def expected(site: str) -> str:
        parents = ", ".join(p.stored[s].ref for s in (p.derived.get(site) or p.possible.get(site) or ()))
        if site in p.derived:
            return f"as the model computes it from {parents}" if parents else "the model's constant"
        return f"a nonzero probability given {parents}" if parents else "a nonzero probability"

    runnable = [s for s in p.outputs if s not in p.missing]
    out = {s: not_run(name(s), expected(s), p.missing[s]) for s in p.missing}
    try:
        bad = _count(files, program, params, p, runnable, n_prs)
    except (UnreadableTable, ValueError, KeyError, IndexError, TypeError) as exc:
        bad = {}
        out |= {s: not_run(name(s), expected(s), exc) for s in runnable}
    for site, (n_bad, n) in bad.items():
        what = "differ" if site in p.derived else "have probability 0"
        out[site] = Check(name(site), expected(site), f"{n_bad:,} of {n:,} rows {what}" if n_bad else "every row",
                          n_bad == 0)
    return [out[s] for s in p.outputs]


def _count(files: DatasetFiles, program: Program, params, p: Plan, sites: list[str],
           n_prs: int) -> dict[str, tuple[int, int]]:
    """(rows that break it, rows) of each site, the model run block by block on the stored columns."""
    if not sites:
        return {}
    block_prs = program.block_prs
    inputs = {s: _values(files, p.stored[s], program.sites[s].dtype, n_prs) for s in p.inputs}
    targets = {s: inputs[s] if s in inputs else _values(files, p.stored[s], program.sites[s].dtype, n_prs)
               for s in sites if s in p.derived}
    run = _function(program, p)
    bad = {s: 0 for s in sites}
    for start in range(0, n_prs, block_prs):
        n = min(block_prs, n_prs - start)

        def block(values: np.ndarray) -> np.ndarray:
            values = values[start:start + n]
            return np.pad(values, [(0, block_prs - n)] + [(0, 0)] * (values.ndim - 1), mode="edge")

        stored = {s: _as_site(block(v), program.sites[s].shape) for s, v in inputs.items()}
        # The model on stored, perhaps corrupted, columns: a NaN (a row that differs) or a -inf (a value of
        # probability 0) is a finding, never a failure, even where JAX is set to stop on one.
        with jax.debug_nans(False), jax.debug_infs(False):
            computed = jax.device_get(run(params, stored))
        for s in sites:
            grid = (block_prs, *p.stored[s].layout.grid[1:])
            value = np.broadcast_to(computed[s], grid)[:n]
            if s in p.derived:
                wrong = _differ(targets[s][start:start + n], value, p.stored[s].column.kind)
            else:
                wrong = ~(value > -np.inf)
            bad[s] += int(np.count_nonzero(wrong))
    return {s: (bad[s], n_prs * p.stored[s].layout.cells_per_pr) for s in sites}
