"""Baseline models per task against the seed's targets, the model's own ceiling and a constant.

For each task an ordinary baseline (scikit-learn's HistGradientBoosting with
a fixed seed, default settings) is trained on the ``train`` split (at most
about ``ml.max_train_rows`` of its rows, as whole PRs) and scored on the
whole ``test`` split: accuracy, balanced accuracy, precision, recall, F1,
ROC AUC and PR-AUC (average precision) of the positive class for the binary
label, macro-F1 for the categorical one, MAE for the continuous one. Beside
each score stand three references:

- the seed's target (from the dataset's config, ``ml.targets``), for any
  binary metric it names;
- where the model knows the binary label's probability, the score of the rule
  "predict 1 when that probability exceeds 1/2" (ranking metrics rank by the
  probability itself): the Bayes-optimal classifier given the model's own
  information, which no learned model can beat on average. For a diagnose
  task the probability is the model's posterior given the task's features
  (``Task.posterior``);
- the score of a constant: the train split's majority class (binary and
  categorical) or median (continuous). On a rare label a constant already
  scores a high accuracy, so a target it meets too says little
  (``constant_meets_target``).

With ``test_dir`` the baseline is scored on another dataset's test split (for
example a counterfactual twin, or a dataset sampled with shifted priors):
robustness to shift.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
from sklearn.ensemble import HistGradientBoostingClassifier, HistGradientBoostingRegressor
from sklearn.metrics import (
    accuracy_score,
    average_precision_score,
    balanced_accuracy_score,
    f1_score,
    mean_absolute_error,
    precision_score,
    recall_score,
    roc_auc_score,
)

from causalsynth.dataset.location import locate
from causalsynth.dataset.reading import Dataset
from causalsynth.dataset.staging import atomic_file
from causalsynth.engine.interventions import shifted_config
from causalsynth.engine.sampling import with_intercepts
from causalsynth.errors import ConfigError
from causalsynth.tasks.ml import (
    TaskView,
    declared_tasks,
    no_tasks,
    probability_column,
    task_named,
    task_view,
    uniform_by_key,
)

SEED = 0


def _design(view: TaskView, ds: Dataset, frame: pd.DataFrame) -> pd.DataFrame:
    """Features as a model input: categories with the dataset's full level list, booleans as 0/1."""
    X = frame[list(view.features)].copy()
    for name, feature in zip(view.features, view.task.features):
        table, _, column = feature.rpartition(".")
        col = next(c for c in ds.program.table(table or view.task.table).columns if c.name == column)
        if col.kind == "category":
            X[name] = pd.Categorical(X[name].astype(str), categories=list(col.levels))
        elif col.kind == "bool":
            X[name] = X[name].astype(np.int8)
    return X


def _binary_scores(y: np.ndarray, predicted: np.ndarray, score: np.ndarray) -> dict[str, float]:
    """Threshold metrics of ``predicted`` and ranking metrics of ``score`` (positive class: True).

    A constant predictor goes through here too: its precision is 0 by ``zero_division`` and, its
    score being constant, its ROC AUC is 1/2 and its PR-AUC the test prevalence."""
    # Ranking metrics need both classes in the test split to mean anything.
    both = 0 < y.sum() < len(y)
    return {"accuracy": accuracy_score(y, predicted),
            "balanced_accuracy": balanced_accuracy_score(y, predicted),
            "precision": precision_score(y, predicted, zero_division=0.0),
            "recall": recall_score(y, predicted, zero_division=0.0),
            "f1": f1_score(y, predicted, zero_division=0.0),
            "roc_auc": roc_auc_score(y, score) if both else float("nan"),
            "pr_auc": average_precision_score(y, score) if both else float("nan")}


def _macro_f1(y: pd.Series, predicted: np.ndarray, labels: list[str]) -> float:
    # Averaged over every level seen in either split, so a level never predicted counts as F1 = 0.
    return f1_score(y, predicted, labels=labels, average="macro", zero_division=0.0)


def _entry(value: float, target: float | None, bayes: float | None, majority: float) -> dict[str, Any]:
    """One metric's evaluation.json entry; "meets" is strictly above the target."""
    return {"value": float(value), "target": target, "bayes": None if bayes is None else float(bayes),
            "majority": float(majority),
            "meets_target": None if target is None else bool(value > target),
            "constant_meets_target": None if target is None else bool(majority > target)}


def verdict(entry: dict[str, Any]) -> str:
    """How a score stands against its target, in words: "" without a target."""
    if entry["meets_target"] is None:
        return ""
    if not entry["meets_target"]:
        return "misses"
    return "meets (so does a constant)" if entry["constant_meets_target"] else "meets"


def _label_probability(ds: Dataset, task, rows: pd.DataFrame) -> np.ndarray | None:
    """The model's probability of the binary label for ``rows``: a column of the dataset, or
    (diagnose tasks) the model's posterior given the features, in the dataset's own world."""
    if task.probability:
        return rows[probability_column(task)].to_numpy(float)
    if task.posterior:
        world = shifted_config(ds.config, ds.intervention)
        params = with_intercepts(world.params, ds.manifest["calibration"]["intercepts"])
        return np.asarray(getattr(ds.config.model, task.posterior)(params, rows), float)
    return None


def evaluate_task(train_ds: Dataset, test_ds: Dataset, name: str) -> dict[str, dict[str, Any]]:
    train_view = task_view(train_ds, name)
    test_view = task_view(test_ds, name)
    task = train_view.task
    train = train_view.frame[train_view.frame.split == "train"]
    test = test_view.frame[test_view.frame.split == "test"]
    if train.empty or test.empty:
        raise ConfigError(f"{name}: the dataset is too small to have both train and test rows")
    split_rows = len(train)
    train = _fitted_rows(train_view, train, int(train_ds.config.get("ml.max_train_rows")))
    X_train, X_test = _design(train_view, train_ds, train), _design(test_view, test_ds, test)
    common = dict(random_state=SEED, categorical_features="from_dtype")

    y_train, y_test = train[task.binary].to_numpy(bool), test[task.binary].to_numpy(bool)
    classifier = HistGradientBoostingClassifier(**common).fit(X_train, y_train)
    baseline = _binary_scores(y_test, classifier.predict(X_test), classifier.predict_proba(X_test)[:, 1])
    # The constant predicts the train split's majority class (a tie: negative); as a ranking score
    # it is constant too, so it ranks every row alike.
    constant = np.full(len(test), y_train.mean() > 0.5)
    majority = _binary_scores(y_test, constant, constant.astype(float))
    bayes = {}
    p = _label_probability(test_ds, task, test)
    if p is not None:
        bayes = _binary_scores(y_test, p > 0.5, p)

    score_train, score_test = train[task.continuous].to_numpy(float), test[task.continuous].to_numpy(float)
    regressor = HistGradientBoostingRegressor(**common).fit(X_train, score_train)
    mae = mean_absolute_error(score_test, regressor.predict(X_test))
    # The median is the constant with the least absolute error (on the train split).
    majority_mae = mean_absolute_error(score_test, np.full(len(test), np.median(score_train)))

    targets = test_ds.config.get("ml.targets").get(name, {})
    out: dict[str, dict[str, Any]] = {
        f"{task.binary}.{metric}": _entry(value, targets.get(metric), bayes.get(metric), majority[metric])
        for metric, value in baseline.items()}
    if task.categorical is not None:
        out[f"{task.categorical}.macro_f1"] = _categorical(train, test, task.categorical, X_train, X_test, common)
    out[f"{task.continuous}.mae"] = _entry(mae, None, None, majority_mae)
    out["_rows"] = {"train": split_rows, "fitted": int(len(train)), "test": int(len(test))}
    return out


def _fitted_rows(view: TaskView, train: pd.DataFrame, most: int) -> pd.DataFrame:
    """The train rows a baseline fits on: all of them, or past ``most`` (``ml.max_train_rows``) about
    that many, as whole PRs drawn by key. A fit's cost grows with its rows and its score hardly does:
    on the default 50,000-PR dataset, 100,000 of service_health's 877,000 train rows move no score by
    0.01 or more, and evaluate takes 24 s instead of 56 s (benchmarks/RESULTS.md)."""
    if len(train) <= most:
        return train
    # Seed 1: independent of the split's draw (seed 0), so the kept PRs are not the split's lowest.
    return train[uniform_by_key(train[view.root_key].to_numpy(), 1) < most / len(train)]


def _categorical(train: pd.DataFrame, test: pd.DataFrame, label: str, X_train, X_test, common) -> dict[str, Any]:
    """Macro-F1 of the categorical ``label``, learnt and as the train split's most common category."""
    cat_train, cat_test = train[label].astype(str), test[label].astype(str)
    labels = sorted(set(cat_train) | set(cat_test))
    multi = HistGradientBoostingClassifier(**common).fit(X_train, cat_train)
    # mode() sorts its values, so a tie between categories resolves the same way every time.
    return _entry(_macro_f1(cat_test, multi.predict(X_test), labels), None, None,
                  _macro_f1(cat_test, np.full(len(test), cat_train.mode()[0]), labels))


def label_information(frame: pd.DataFrame, label: str, given: list[str], causes: list[str],
                      groups: str) -> dict[str, float]:
    """How much a categorical ``label`` says beyond ``given``: macro-F1 on a held-out 30 % (split by
    ``groups``, e.g. the PR key) of a baseline that sees ``given`` alone, of one that sees the
    ``causes`` too, and of the train split's most frequent level. A label that is a relabel of
    ``given`` gains nothing from its causes."""
    X = frame[list(dict.fromkeys([*given, *causes]))].copy()
    for column in X.columns:
        if not pd.api.types.is_numeric_dtype(X[column]):
            X[column] = X[column].astype(str).astype("category")
    y = frame[label].astype(str).to_numpy()
    train = uniform_by_key(frame[groups].to_numpy(), SEED) < 0.7
    labels = sorted(set(y))

    def score(columns: list[str]) -> float:
        model = HistGradientBoostingClassifier(random_state=SEED, categorical_features="from_dtype")
        model.fit(X.loc[train, columns], y[train])
        return _macro_f1(y[~train], model.predict(X.loc[~train, columns]), labels)

    majority = pd.Series(y[train]).mode()[0]
    return {"given": score(list(given)), "with_causes": score(list(X.columns)),
            "majority": _macro_f1(y[~train], np.full((~train).sum(), majority), labels)}


ROOT_CAUSE = "root_cause"  # the series' task: which service an incident started at (rca.py)


def evaluate(directory: str | Path, *, test_dir: str | Path | None = None, tasks: list[str] | None = None,
             on_task=lambda name: None) -> dict[str, Any]:
    """Train on ``directory``'s train split, test on ``test_dir`` (default: the same dataset)."""
    from causalsynth.tasks.rca import no_series  # pandas-heavy RCA code loads with the task that needs it

    train_ds = Dataset(directory)
    test_ds = Dataset(test_dir) if test_dir is not None else train_ds
    missing = no_series(test_ds)
    names = list(tasks or [*declared_tasks(train_ds), *[ROOT_CAUSE] * (missing is None)])
    no_tasks(train_ds, names, "evaluate")
    for name in names:
        if name != ROOT_CAUSE:
            task_named(train_ds, name)
        elif missing is not None:
            raise ConfigError(f"--tasks {ROOT_CAUSE}: {missing}")
    results = {}
    for name in names:
        on_task(name)
        results[name] = root_cause(test_ds) if name == ROOT_CAUSE else evaluate_task(train_ds, test_ds, name)
    return results


def root_cause(ds: Dataset) -> dict[str, Any]:
    """The root-cause task on a dataset's incidents: each method's AC@1, AC@3 and Avg@5, beside a
    constant (the most frequent root causes first). The methods are unsupervised: no split."""
    from causalsynth.tasks.rca import evaluate_rca

    scores = evaluate_rca(ds.directory)
    constant = scores.pop("constant")
    out: dict[str, Any] = {"_cases": scores.pop("cases"),
                           "_by_fault": {m: s.pop("by_fault") for m, s in (("constant", constant), *scores.items())}}
    for method, metrics in scores.items():
        for metric in ("AC@1", "AC@3", "Avg@5"):
            out[f"{method}.{metric}"] = _entry(metrics[metric], None, None, constant[metric])
    return out


def write_evaluation(results: dict[str, Any], directory: str | Path) -> str:
    """``evaluation.json`` into the dataset, replacing any previous one whole; return where it went."""
    location = locate(directory)
    data = (json.dumps(results, indent=2) + "\n").encode()
    if location.local:
        path = location.path / "evaluation.json"
        with atomic_file(path) as partial:
            partial.write_bytes(data)
        return str(path)
    location.write_bytes("evaluation.json", data)  # one object in the store: all or nothing
    return location.show("evaluation.json")
