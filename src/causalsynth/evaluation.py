"""Baseline models per task against the seed's targets and the model's own ceiling.

For each task an ordinary baseline (scikit-learn's HistGradientBoosting with
a fixed seed, default settings) is trained on the ``train`` split and scored
on the ``test`` split: accuracy, precision, recall and ROC AUC for the binary
label, macro-F1 for the categorical one, MAE for the continuous one. Beside
each score stand the seed's target (from the dataset's config, ``ml.targets``)
and, where the model knows the binary label's probability, the score of the
rule "predict 1 when that probability exceeds 1/2": the Bayes-optimal
classifier given the model's own information, which no learned model can beat
on average. For a diagnose task the probability is the model's posterior
given the task's features (``Task.posterior``). With ``test_dir`` the baseline is scored on another dataset's test
split (for example a counterfactual twin, or a dataset sampled with shifted
priors): robustness to shift.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
from sklearn.ensemble import HistGradientBoostingClassifier, HistGradientBoostingRegressor
from sklearn.metrics import accuracy_score, f1_score, mean_absolute_error, precision_score, recall_score, roc_auc_score

from causalsynth.errors import ConfigError
from causalsynth.interventions import Intervention, soft_overrides
from causalsynth.ml import Dataset, TaskView, probability_column, task_view
from causalsynth.sampling import with_intercepts
from causalsynth.staging import atomic_file

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
    return {"accuracy": accuracy_score(y, predicted),
            "precision": precision_score(y, predicted, zero_division=0.0),
            "recall": recall_score(y, predicted, zero_division=0.0),
            "roc_auc": roc_auc_score(y, score) if 0 < y.sum() < len(y) else float("nan")}


def _label_probability(ds: Dataset, task, rows: pd.DataFrame) -> np.ndarray | None:
    """The model's probability of the binary label for ``rows``: a column of the dataset, or
    (diagnose tasks) the model's posterior given the features, in the dataset's own world."""
    if task.probability:
        return rows[probability_column(task)].to_numpy(float)
    if task.posterior:
        intervention = Intervention(**ds.manifest["intervention"])
        world = ds.config.with_overrides(soft_overrides(ds.config, intervention))
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
    X_train, X_test = _design(train_view, train_ds, train), _design(test_view, test_ds, test)
    common = dict(random_state=SEED, categorical_features="from_dtype")

    y_train, y_test = train[task.binary].to_numpy(bool), test[task.binary].to_numpy(bool)
    classifier = HistGradientBoostingClassifier(**common).fit(X_train, y_train)
    baseline = _binary_scores(y_test, classifier.predict(X_test), classifier.predict_proba(X_test)[:, 1])
    bayes = {}
    p = _label_probability(test_ds, task, test)
    if p is not None:
        bayes = _binary_scores(y_test, p > 0.5, p)

    labels = sorted(set(train[task.categorical].astype(str)) | set(test[task.categorical].astype(str)))
    multi = HistGradientBoostingClassifier(**common).fit(X_train, train[task.categorical].astype(str))
    macro_f1 = f1_score(test[task.categorical].astype(str), multi.predict(X_test), labels=labels,
                        average="macro", zero_division=0.0)
    regressor = HistGradientBoostingRegressor(**common).fit(X_train, train[task.continuous].to_numpy(float))
    mae = mean_absolute_error(test[task.continuous].to_numpy(float), regressor.predict(X_test))

    targets = test_ds.config.get("ml.targets").get(name, {})
    out: dict[str, dict[str, Any]] = {}
    for metric, value in baseline.items():
        out[f"{task.binary}.{metric}"] = {"value": float(value), "target": targets.get(metric),
                                          "bayes": float(bayes[metric]) if metric in bayes else None}
    out[f"{task.categorical}.macro_f1"] = {"value": float(macro_f1), "target": None, "bayes": None}
    out[f"{task.continuous}.mae"] = {"value": float(mae), "target": None, "bayes": None}
    for entry in out.values():
        entry["meets_target"] = None if entry["target"] is None else bool(entry["value"] > entry["target"])
    out["_rows"] = {"train": int(len(train)), "test": int(len(test))}
    return out


def evaluate(directory: str | Path, *, test_dir: str | Path | None = None, tasks: list[str] | None = None,
             on_task=lambda name: None) -> dict[str, Any]:
    """Train on ``directory``'s train split, test on ``test_dir`` (default: the same dataset)."""
    train_ds = Dataset(directory)
    test_ds = Dataset(test_dir) if test_dir is not None else train_ds
    names = list(tasks or train_ds.tasks)
    for name in names:
        train_ds.task(name)
    results = {}
    for name in names:
        on_task(name)
        results[name] = evaluate_task(train_ds, test_ds, name)
    return results


def write_evaluation(results: dict[str, Any], directory: str | Path) -> Path:
    """``evaluation.json`` into the dataset directory, replacing any previous one atomically."""
    path = Path(directory) / "evaluation.json"
    with atomic_file(path) as partial:
        partial.write_text(json.dumps(results, indent=2) + "\n")
    return path
