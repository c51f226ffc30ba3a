"""Back-door adjustment sets read off the model graph, and a doubly robust estimate.

The model's causal graph (``causalsynth.causal.graph``) is the truth a real analyst
never has; here it answers the analyst's first question: which observed
columns must an observational estimate of a treatment's effect adjust for?
``backdoor_set`` finds a minimal set of observed columns that blocks every
back-door path from the treatment to the outcome (Pearl's criterion: no
descendant of the treatment, and d-separation once the treatment's outgoing
edges are cut), or says why none exists: the hidden causes that open a path
no observed column can block. ``aipw`` then estimates the effect from the
data with that set, so an observational estimate can be held against the
ground truth of ``causalsynth effects``.

What counts as observed is what a real dataset of this shape would hold:
columns of the tables, less

- the model's own probabilities (its ``CALIBRATION`` sites, and any site whose
  name ends in ``probability``): oracle quantities no real system records, and
  adjusting for the treatment's probability would be "cheating" with the
  propensity itself;
- latent noise (sites named ``_...``, never columns);
- columns the model marks ``latent`` (unless ``latents=True``).

A per-unit covariate must be a column of the unit's own row or of a row it
belongs to (the outcome's table and its ancestor tables, down the foreign
keys): a sibling table's rows (a run's services, for a flow) are many per
unit and have no single value to adjust for.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, NamedTuple

import numpy as np
import pandas as pd

from causalsynth.errors import ConfigError

if TYPE_CHECKING:
    from causalsynth.causal.graph import Graph
    from causalsynth.engine.program import Program, TableLayout

CLIP = (0.01, 0.99)


# --- the pure core: a DAG as edges ---------------------------------------------
class Backdoor(NamedTuple):
    """A minimal back-door set of ``observed`` nodes (None when none exists).

    ``blocking`` names the unobserved nodes that open a back-door path when
    ``sites`` is None; ``is_effect`` is False when the outcome is not a
    descendant of the treatment (its effect is zero by the graph).
    """

    sites: frozenset[str] | None
    is_effect: bool
    blocking: tuple[str, ...]


def backdoor(edges, treatment: str, outcome: str, observed) -> Backdoor:
    """A minimal set of ``observed`` nodes satisfying the back-door criterion, over a DAG's ``edges``.

    Candidates are the observed nodes that are not descendants of the
    treatment (adjusting for a mediator or a post-treatment collider biases
    the estimate); the set must d-separate treatment and outcome in the
    back-door graph (the treatment's outgoing edges removed), so only
    non-causal paths are left to block.
    """
    import networkx as nx

    graph = nx.DiGraph(list(edges))
    graph.add_nodes_from([treatment, outcome, *observed])
    downstream = nx.descendants(graph, treatment)
    candidates = set(observed) - downstream - {treatment, outcome}
    back = graph.copy()
    back.remove_edges_from(list(graph.out_edges(treatment)))
    found = nx.find_minimal_d_separator(back, {treatment}, {outcome}, restricted=candidates)
    is_effect = outcome in downstream
    if found is None:
        return Backdoor(None, is_effect, _blocking(back, treatment, outcome, candidates))
    if not nx.is_d_separator(back, {treatment}, {outcome}, set(found)):
        raise RuntimeError(f"networkx returned {sorted(found)}, which does not d-separate "
                           f"{treatment} and {outcome} in the back-door graph")
    return Backdoor(frozenset(found), is_effect, ())


def _blocking(back, treatment: str, outcome: str, candidates: set[str]) -> tuple[str, ...]:
    """The unobserved nodes to blame when no separator exists.

    First choice: hidden common causes with directed paths into both treatment
    and outcome through unobserved nodes only; such a path has no collider and
    nothing on it can be conditioned on, so it alone proves that no set works.
    Otherwise (paths that conditioning opens through an observed collider) the
    unobserved common ancestors of treatment and outcome.
    """
    import networkx as nx

    hidden = back.subgraph(set(back) - candidates)
    common = nx.ancestors(hidden, treatment) & nx.ancestors(hidden, outcome)
    if not common:
        common = (nx.ancestors(back, treatment) & nx.ancestors(back, outcome)) - candidates
    return tuple(sorted(common))


# --- the model-aware wrapper ---------------------------------------------------
@dataclass(frozen=True)
class AdjustmentSet:
    """Observed columns ("table.column") that identify the effect of ``treatment`` on ``outcome``.

    ``columns`` and ``sites`` are None when no set of observed columns blocks
    every back-door path; ``blocking`` then names the unobserved sites to
    blame and ``reason`` says so in words. An empty tuple means no adjustment
    is needed.
    """

    treatment: str
    outcome: str
    columns: tuple[str, ...] | None
    sites: tuple[str, ...] | None
    is_effect: bool
    blocking: tuple[str, ...] = ()
    reason: str | None = None


def probability_sites(program: Program) -> set[str]:
    """The model's own probabilities: oracle quantities, never adjusted for."""
    calibrated = {c.site for c in getattr(program.model, "CALIBRATION", ())}
    return calibrated | {name for name in program.sites if name.endswith("probability")}


def lineage(program: Program, table: str) -> list[TableLayout]:
    """The table's layout and its ancestors' (the rows each of its rows belongs to), nearest first."""
    by_name = {layout.table.name: layout for layout in program.tables}
    chain = [by_name[table]]
    while chain[-1].parent is not None:
        chain.append(by_name[chain[-1].parent.name])
    return chain


def _resolve_outcome(program: Program, outcome: str) -> tuple[TableLayout, str]:
    table, dot, column = outcome.partition(".")
    names = [layout.table.name for layout in program.tables]
    if not dot or table not in names:
        raise ConfigError(f"outcome {outcome!r}: expected TABLE.COLUMN with a table among {', '.join(names)}")
    layout = lineage(program, table)[0]
    col = next((c for c in layout.columns if c.name == column), None)
    if col is None:
        raise ConfigError(f"outcome {outcome!r}: {table} has no column {column!r}; "
                          f"columns: {', '.join(c.name for c in layout.columns)}")
    return layout, col.site


def _check_treatment(program: Program, treatment: str) -> None:
    valid = sorted(name for name, site in program.sites.items() if site.kind == "sample" and site.is_public)
    if treatment not in valid:
        raise ConfigError(f"treatment {treatment!r}: not a sample site of the model; "
                          f"sample sites: {', '.join(valid)}")


def _unobserved(site: str, column, probabilities: set[str], latents: bool) -> str | None:
    """Why a site cannot be adjusted for, in words; None when it is an observed column."""
    if site.startswith("_"):
        return "latent noise, not a column"
    if site in probabilities:
        return "the model's own probability"
    if column is None:
        return "a hidden cause, not a column of the dataset"
    if getattr(column, "latent", False) and not latents:
        return "a latent column; latents=True treats it as observed"
    return None


def backdoor_set(graph: Graph, program: Program, treatment: str, outcome: str,
                 latents: bool = False) -> AdjustmentSet:
    """A minimal back-door adjustment set of observed columns for ``treatment`` → ``outcome``.

    ``treatment`` is a sample site ("has_performance_regression"); ``outcome``
    is "table.column" ("ecommerce_flows.converted"). Candidates are the
    observed columns of the outcome's table and its ancestor tables (see the
    module docstring); with ``latents=True`` columns marked latent count as
    observed too, which answers "what would we need to measure?". Only
    columns can: a latent the program does not write as a column stays
    hidden, so build the program with its latents as columns for that question.
    """
    _check_treatment(program, treatment)
    layout, outcome_site = _resolve_outcome(program, outcome)
    if outcome_site == treatment:
        raise ConfigError(f"outcome {outcome!r} is the treatment itself")
    probabilities = probability_sites(program)
    columns = {c.site: (i, t.table.name, c) for i, t in enumerate(program.tables) for c in t.columns}
    own = {t.table.name for t in lineage(program, layout.table.name)}
    observed = {site for site, (_, table, col) in columns.items()
                if table in own and _unobserved(site, col, probabilities, latents) is None}
    found = backdoor(graph.edges, treatment, outcome_site, observed)
    if found.sites is None:
        def why(site: str) -> str:
            _, table, col = columns.get(site, (None, None, None))
            return (_unobserved(site, col, probabilities, latents)
                    or f"{table}.{col.name} is not a column of {layout.table.name} or a table it belongs to")

        if found.blocking:
            cause = "; ".join(f"{site} ({why(site)})" for site in found.blocking) + " open paths into both"
        elif outcome_site in graph.ancestors(treatment):
            cause = f"{outcome} is itself a cause of {treatment}"
        else:
            cause = "unobserved sites open paths into both"
        reason = f"no set of observed columns blocks every back-door path from {treatment} to {outcome}: {cause}"
        return AdjustmentSet(treatment, outcome, None, None, found.is_effect, found.blocking, reason)
    chosen = sorted(found.sites, key=lambda site: (columns[site][0], columns[site][2].name))
    return AdjustmentSet(treatment, outcome, tuple(f"{columns[s][1]}.{columns[s][2].name}" for s in chosen),
                         tuple(chosen), found.is_effect)


# --- estimation ----------------------------------------------------------------
@dataclass(frozen=True)
class Estimate:
    """An average treatment effect E[Y(1) - Y(0)] with its cluster-robust standard error,
    and the naive difference in means beside it."""

    ate: float
    se: float
    naive: float
    naive_se: float
    n_units: int
    n_clusters: int


def unit_frame(dataset_dir: str | Path, treatment_column: str, outcome: str,
               covariates: list[str]) -> pd.DataFrame:
    """One row per unit of the outcome's table: its key, its PR key, treatment, outcome, covariates.

    Every ref is "table.column" of the outcome's table or one of its ancestor
    tables (joined down the foreign keys by ``Dataset.frame``); the frame's
    columns are named by these refs, and the root table's key (``pr_id``)
    is the cluster: rows of one PR share its draws.
    """
    from causalsynth.dataset.reading import Dataset

    ds = Dataset(dataset_dir)
    layout, _ = _resolve_outcome(ds.program, outcome)
    table = layout.table.name
    allowed = {t.table.name: {c.name for c in t.columns} for t in lineage(ds.program, table)}
    refs = list(dict.fromkeys([treatment_column, outcome, *covariates]))
    asked = {}  # ref -> (what Dataset.frame is asked for, what it names the column)
    for ref in refs:
        ref_table, _, column = ref.partition(".")
        if column not in allowed.get(ref_table, ()):
            raise ConfigError(f"{ref!r}: not a column of {table} or of a table it belongs to "
                              f"({', '.join(allowed)}); write TABLE.COLUMN")
        asked[ref] = (column, column) if ref_table == table else (ref, f"{ref_table}_{column}")
    frame = ds.frame(table, [query for query, _ in asked.values()])
    keys = list(dict.fromkeys([ds.key(table), ds.key(ds.root(table))]))
    return frame[keys + [name for _, name in asked.values()]].set_axis(keys + refs, axis=1)


def _features(frame: pd.DataFrame) -> tuple[np.ndarray, np.ndarray | None]:
    """A float matrix for the gradient-boosted models, and its categorical mask.

    Categories (pandas category or object) become their codes, flagged so the
    trees split them as sets, not as numbers; booleans 0/1; timestamps seconds.
    """
    columns: list[np.ndarray] = []
    categorical: list[bool] = []
    for name in frame.columns:
        s = frame[name]
        is_category = isinstance(s.dtype, (pd.CategoricalDtype, pd.StringDtype)) or s.dtype == object
        if is_category:
            codes = s.astype("category").cat.codes.to_numpy().astype(float)
            values = np.where(codes < 0, np.nan, codes)
        elif pd.api.types.is_datetime64_any_dtype(s):
            values = (s - pd.Timestamp(0, tz=s.dt.tz)).dt.total_seconds().to_numpy()
        else:
            values = s.to_numpy(dtype=float, na_value=np.nan)
        columns.append(values)
        categorical.append(is_category)
    if not columns:  # nothing to adjust for: one constant, so the models fit the training means
        return np.zeros((len(frame), 1)), None
    x = np.column_stack(columns)
    return x, (np.array(categorical) if any(categorical) else None)


def _mean_and_se(scores: np.ndarray, clusters: np.ndarray) -> tuple[float, float]:
    """The mean of per-unit scores and its standard error clustered by ``clusters`` (codes 0..G-1).

    The score minus the mean is the estimator's influence function; summing it
    within clusters lets the rows of one PR be correlated.
    """
    mean = float(scores.mean())
    sums = np.bincount(clusters, weights=scores - mean)
    g = len(sums)
    return mean, float(np.sqrt((sums ** 2).sum() * g / max(g - 1, 1)) / len(scores))


def _scores(y, t, propensity, mu0, mu1) -> np.ndarray:
    """The AIPW score whose mean is the ATE: outcome-model contrast plus inverse-propensity-weighted residuals."""
    return mu1 - mu0 + t * (y - mu1) / propensity - (1 - t) * (y - mu0) / (1 - propensity)


def _binary(s: pd.Series, name: str) -> np.ndarray:
    values = s.to_numpy(dtype=float, na_value=np.nan)
    if not np.isin(values, (0.0, 1.0)).all():
        raise ConfigError(f"treatment {name!r}: must be boolean or 0/1 without missing values")
    return values


def aipw(frame: pd.DataFrame, treatment: str, outcome: str, covariates: list[str], cluster: str,
         folds: int = 2, seed: int = 0) -> Estimate:
    """The augmented inverse-propensity-weighted (doubly robust) estimate of E[Y(1) - Y(0)].

    Cross-fitted: clusters are dealt to ``folds`` folds (no cluster in two),
    and each fold's propensity and per-arm outcome models are fit on the
    others, so no unit is scored by a model that saw it (or its PR).
    Gradient-boosted trees, seeded; propensities clipped to [0.01, 0.99].
    The naive difference in means is the same score with a constant
    propensity and the arm means as outcome models, so both share one
    cluster-robust standard error.
    """
    from sklearn.ensemble import HistGradientBoostingClassifier, HistGradientBoostingRegressor

    if folds < 2:
        raise ConfigError(f"folds: cross-fitting needs at least 2 folds, got {folds}")
    missing = [c for c in [treatment, outcome, cluster, *covariates] if c not in frame.columns]
    if missing:
        raise ConfigError(f"aipw: no column {', '.join(map(repr, missing))} in the frame")
    t = _binary(frame[treatment], treatment)
    y = frame[outcome].to_numpy(dtype=float, na_value=np.nan)
    if np.isnan(y).any():
        raise ConfigError(f"outcome {outcome!r}: has missing values")
    x, categorical = _features(frame[list(covariates)])
    clusters, uniques = pd.factorize(frame[cluster])
    if len(uniques) < folds:
        raise ConfigError(f"aipw: {len(uniques)} clusters cannot fill {folds} folds")
    fold = (np.random.default_rng(seed).permutation(len(uniques)) % folds)[clusters]
    propensity, mu0, mu1 = (np.empty(len(y)) for _ in range(3))
    for k in range(folds):
        train, test = fold != k, fold == k
        for arm in (0, 1):
            if not (t[train] == arm).any():
                raise ConfigError(f"aipw: a training fold has no unit with {treatment} = {arm}")
        e = HistGradientBoostingClassifier(categorical_features=categorical, random_state=seed)
        propensity[test] = e.fit(x[train], t[train]).predict_proba(x[test])[:, 1]
        for arm, mu in ((0, mu0), (1, mu1)):
            rows = train & (t == arm)
            model = HistGradientBoostingRegressor(categorical_features=categorical, random_state=seed)
            mu[test] = model.fit(x[rows], y[rows]).predict(x[test])
    ate, se = _mean_and_se(_scores(y, t, np.clip(propensity, *CLIP), mu0, mu1), clusters)
    share = t.mean()
    arm_means = [y[t == arm].mean() for arm in (0, 1)]
    naive, naive_se = _mean_and_se(_scores(y, t, share, *arm_means), clusters)
    return Estimate(ate=ate, se=se, naive=naive, naive_se=naive_se, n_units=len(y), n_clusters=len(uniques))
