"""The few primitives a model program needs beyond NumPyro's own.

Tables are derived from the trace: a site's plates choose its table, its name
is its column. These helpers attach what a NumPyro site cannot say by itself,
in the site's ``infer`` dict, where the engine reads it:

- ``levels``: the category names of an integer-coded site (stored as a
  dictionary-encoded string column);
- ``timestamp``: the value is seconds after ``sampling.start`` or after another
  timestamp site, plus optionally the whole days of an integer site (stored as a
  UTC timestamp);
- ``latent``: a cause the model keeps hidden: a column only when the config's
  ``sampling.latents`` asks for the model's latents;
- ``row_mask``: which cells of a plate nest are real rows (variable-length
  children such as flow steps are sampled on a padded grid and masked);
- ``support``: the set a computed (deterministic) value lies in, a NumPyro
  constraint, as a sample site's distribution says it for its own value.
  ``causalsynth validate`` holds every column to its site's support.

Sites whose names start with ``_`` are latent noise or scaffolding: they are in
the model and its graph but not in the tables.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from typing import Any

import jax.numpy as jnp
import numpyro
import numpyro.distributions as dist
from numpyro.distributions import constraints
from numpyro.primitives import apply_stack

LEVELS = "levels"
TIMESTAMP = "timestamp"
DAYS = "days"
ROW_MASK = "row_mask"
LATENT = "latent"
SUPPORT = "support"


def _deterministic(name: str, value, infer: dict):
    # numpyro.deterministic carries no ``infer`` dict; this is the same message
    # with one, so handlers (plate, trace) treat it exactly as a deterministic.
    msg = {"type": "deterministic", "name": name, "value": value,
           "cond_indep_stack": [], "infer": infer}
    return apply_stack(msg)["value"]


def derived(name: str, value, support: constraints.Constraint):
    """Record a value computed from its parents, and the set it lies in (e.g.
    ``constraints.unit_interval`` for a rate, ``constraints.nonnegative_integer``
    for a count): what its column is validated against."""
    return _deterministic(name, value, {SUPPORT: support})


def categorical(name: str, probs, levels: Sequence[str]):
    """Sample a category index from ``probs`` (last axis ordered as ``levels``)."""
    return numpyro.sample(name, dist.CategoricalProbs(probs), infer={LEVELS: tuple(levels)})


def label(name: str, index, levels: Sequence[str]):
    """Record a category derived from its parents (integer index into ``levels``)."""
    return _deterministic(name, jnp.asarray(index, jnp.int32), {LEVELS: tuple(levels)})


def timestamp(name: str, seconds, since: str | None = None, days: str | None = None):
    """Record a time: ``seconds`` after the timestamp site ``since``, or after ``sampling.start``.

    Offsets keep float32 exact where it matters: a step a few seconds into a
    flow stays a few seconds after it, however far the flow is from the start.
    The engine adds offsets to their base in integer milliseconds. ``days``
    names an integer site of whole days added on top: float32 cannot hold a
    year in seconds exactly, and calendar columns derived from a time must
    agree with its timestamp to the second.
    """
    infer = {TIMESTAMP: since or True} | ({DAYS: days} if days else {})
    return _deterministic(name, seconds, infer)


def latent(name: str, fn):
    """Sample a hidden cause: in the model and its graph, in the tables only on request."""
    return numpyro.sample(name, fn, infer={LATENT: True})


def rows(name: str, mask):
    """Declare which cells of the enclosing plate nest are rows of its table."""
    return _deterministic(name, jnp.asarray(mask, bool), {ROW_MASK: True})


def shares(mapping) -> tuple[jnp.ndarray, tuple[str, ...]]:
    """A config ``shares`` mapping as (probability vector, level names)."""
    names = tuple(mapping)
    return jnp.stack([jnp.asarray(mapping[k], jnp.float32) for k in names]), names


@dataclass(frozen=True)
class Table:
    """The table of one plate nest: its name, key column, and optional number label.

    ``number`` is ``(column, printf-format)``: a human label made from the
    key, such as ``("pr_number", "PR-%06d")``. ``min_rows`` is the fewest rows
    a parent has in a variable-length (masked) plate, such as the steps of a
    flow; a plate without a mask has exactly its size per parent.
    ``refs`` are key columns pointing at a row of the same parent (``Ref``),
    such as a span's parent span in its trace.
    """

    name: str
    plates: tuple[str, ...]
    key: str
    number: tuple[str, str] | None = None
    min_rows: int = 0
    refs: tuple[Ref, ...] = ()


@dataclass(frozen=True)
class Ref:
    """A column of keys of ``table``'s rows under the same parent row: the int site ``site`` holds
    the target's position among its parent's children (0, 1, …; negative: no row, a null), so the
    key is written as positional keys are, and holds across sizes and twins. ``table`` is this
    table or one of its siblings (the same parent plates): a span's parent span in its trace, the
    span a log line of the trace was written in. ``causalsynth validate`` holds each to a row that
    exists under the same parent and, for a table's own rows, an earlier one (so they form trees)."""

    column: str
    site: str
    table: str


@dataclass(frozen=True)
class Calibration:
    """Solve ``p.intercepts[name]`` so the mean of ``site`` equals config ``target``."""

    name: str
    site: str
    target: str


@dataclass(frozen=True)
class Marginal:
    """A configured rate or mix the data must show, checked by ``causalsynth validate``.

    ``column`` is "table.column", or "table.column=LEVEL" for the share of one
    level; ``target`` is the config path of the rate, or of a ``shares``
    mapping (one check per level); ``tolerance`` names an entry of
    ``quality.tolerances``; ``among`` restricts the rows to those where that
    boolean column is true. A ``headline`` title also shows it after sampling.
    """

    column: str
    target: str
    tolerance: str = "default"
    among: str | None = None
    headline: str | None = None


@dataclass(frozen=True)
class Gaps:
    """A configured share of a variable-length table's cells that hold no row (``target``, a config
    path), such as the scrapes a series misses: checked by ``causalsynth validate`` like a
    marginal, over every cell of the table's grid."""

    table: str
    target: str
    tolerance: str = "default"


@dataclass(frozen=True)
class Shape:
    """A distribution a column must follow (``lognormal`` or ``beta``) on the rows where
    every ``where`` boolean column (own, or "ancestor.column"; "~" negates) holds."""

    column: str
    family: str
    where: tuple[str, ...] = ()


@dataclass(frozen=True)
class Identity:
    """A rule every row of ``table`` keeps by construction, in every world: a named check
    of ``causalsynth validate``, which counts the rows that break it.

    ``rule`` is a boolean ``pandas.eval`` expression over a frame of the
    table's rows (e.g. "p95_response_time_ms > response_time_ms") or, for what
    an expression cannot say, a function ``rule(rows, config) -> bool array``
    reading ``columns`` of ``rows`` (column name → values). Rules read the table's own columns,
    an ancestor table's as `` `table.column` `` (backquoted), and the table's
    ``Rollup`` columns; timestamps are integer milliseconds since the Unix epoch;
    ``{dotted.path}`` in an expression stands for that config value.
    """

    name: str
    table: str
    rule: str | Callable[[Any, Any], Any]
    columns: tuple[str, ...] = ()


@dataclass(frozen=True)
class Rollup:
    """A column of ``table`` summarising each row's children in ``child``, for identities.

    ``how`` is "count" (children where ``expr`` holds), "last" (``expr``'s
    value at the last child, in row order) or "nondecreasing" (whether
    ``expr`` never decreases along the children, in row order). ``expr`` is a
    ``pandas.eval`` expression over the child's rows, as in ``Identity`` (its
    own columns and its ancestors', `` `table.column` ``, ``table`` included),
    plus ``row_in_parent``: a child's position among its parent's (0, 1, …).
    """

    table: str
    name: str
    child: str
    how: str
    expr: str = "True"


@dataclass(frozen=True)
class Signature:
    """A causal effect the data must show: ``column``'s mean is ``direction``
    ("higher" or "lower") where the boolean ``by`` (an ancestor column) is true."""

    column: str
    by: str
    direction: str


@dataclass(frozen=True)
class Task:
    """An ML task over one table: its features, its binary and continuous labels and, where the model
    has one, a categorical label.

    ``kind`` is "predict" (features are causes: none may descend from a label)
    or "diagnose" (features are symptoms of a latent label). ``probability``
    names the model's own probability of the binary label, when it has one:
    the score no learned model can beat. A diagnose task's label has no such
    site (the model gives its probability from its causes, not its symptoms);
    ``posterior`` names a function of the model, ``f(params, rows)``, that
    computes it from the features by Bayes' rule.
    Features may be "table.column" of an ancestor table.
    """

    name: str
    table: str
    kind: str
    features: tuple[str, ...]
    binary: str
    continuous: str
    categorical: str | None = None
    probability: str | None = None
    posterior: str | None = None

    @property
    def labels(self) -> tuple[tuple[str, str], ...]:
        """(kind, column) of each label the task has, binary first."""
        return tuple((kind, column) for kind, column in (("binary", self.binary), ("continuous", self.continuous),
                                                         ("categorical", self.categorical)) if column)


@dataclass(frozen=True)
class Option:
    """An option of ``causalsynth sample`` that the model offers: ``FLAG VALUE`` sets the config value
    at ``key`` (a ``switch``: ``FLAG`` alone sets it true). A model's shape knobs are its own, so the
    command line offers the ones the chosen model declares."""

    flag: str
    key: str
    help: str
    switch: bool = False


@dataclass(frozen=True)
class Incidents:
    """Where a model's incidents are, for root-cause analysis (``causalsynth.tasks.rca``) and its exports.

    ``runs`` is the table of runs: its column ``fault`` names each run's injected fault (``no_fault``
    where there is none), ``root_cause`` the service the fault starts at, and ``onset_s`` when, in
    seconds after the run's window starts at the timestamp ``window_start``. ``services`` is the table
    of a run's services (a child of ``runs``), its column ``service`` the service's name. ``series`` is
    the table of each service's metric series (a child of ``services``), one row per tick, ``tick``
    the tick's index; ``metrics`` maps its metric columns to RCAEval's names for them, ``faults`` each
    fault to RCAEval's name for it. ``service_names``, ``ticks`` and ``tick_s`` are the config keys of
    the services (in order), the ticks in a window and a tick's length in seconds. ``option`` is the
    sample option that turns the series on, where they are optional. ``spurious``, where the model
    labels one, is the column of ``runs`` naming the service of an unrelated event (not a fault);
    ``second_root`` that of a second root cause at the same time (NONE without one), ``second_fault``
    its fault. ``local`` are the faults that move their own service only (not carried by calls).
    ``counterfactual``, where the model can write it, is the suffix of each series column's value in
    the world without the run's fault (a column of the series table where the dataset has it);
    ``calls`` the config key of the call graph (caller → its callees), along which a fault reaches
    its callers, and ``shared`` the name of the cause every service shares, through which a fault
    reaches a service off its call paths (the shipped model: the run's load), with the fault kinds
    that reach it: what propagation labels name as paths.

    ``spans`` and ``logs``, where the model samples them, are the tables of the runs' trace spans (a
    grandchild of ``runs``, under its traces) and the log lines spans write (under the same traces),
    ``trace_option`` the sample options that turn them on; ``fault_operation``, where the model labels
    one, the column of ``runs`` naming the operation a fault in one operation's code is in (sampled with
    the spans; NONE for other faults). Spans have ``span_id``, ``parent_span_id``
    (null at a root), ``service_name``, ``operation``, ``started_at``, ``duration_ms`` and ``status``
    (``OK`` or ``ERROR``); log lines ``span_id``, ``service_name``, ``level``, ``template`` and
    ``logged_at``: the column names the exports read."""

    runs: str
    window_start: str
    fault: str
    root_cause: str
    onset_s: str
    services: str
    service: str
    series: str
    tick: str
    metrics: Mapping[str, str]
    faults: Mapping[str, str]
    service_names: str
    ticks: str
    tick_s: str
    no_fault: str = "NONE"
    option: str | None = None
    spurious: str | None = None
    second_root: str | None = None
    second_fault: str | None = None
    local: tuple[str, ...] = ()
    counterfactual: str | None = None
    calls: str | None = None
    shared: tuple[str, tuple[str, ...]] | None = None
    spans: str | None = None
    logs: str | None = None
    trace_option: str | None = None
    fault_operation: str | None = None


@dataclass(frozen=True)
class Plot:
    """A section of ``causalsynth report``.

    ``kind`` is one of:
    - "effect": the mean of ``column`` per level of the boolean cause ``by`` (its own or an
      ancestor column), with 95 % intervals; beside a twin that intervened on ``by``, the
      true effect. The report opens with these, in order: the model's causal story;
    - "distribution": ``column`` by the boolean ``by`` (an ancestor column), histograms;
    - "mix": the level shares of ``column`` (among rows where ``among`` is true);
    - "funnel": share of ``column``'s units (a parent key) reaching each level of
      ``step`` (in level order), one line per level of each ``by`` column;
    - "graph": mean ``column`` per level of ``node`` drawn on the graph whose
      edges are the config mapping ``edges`` (node → the nodes it depends on).
    """

    title: str
    kind: str
    table: str
    column: str
    by: tuple[str, ...] = ()
    among: str | None = None
    step: str | None = None
    node: str | None = None
    edges: str | None = None
