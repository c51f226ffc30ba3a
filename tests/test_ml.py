"""ML task views, leakage, splits, formats and evaluation."""

from __future__ import annotations

import json
import math
import shutil
from dataclasses import replace
from pathlib import Path

import numpy as np
import pandas as pd
import pyarrow as pa
import pyarrow.parquet as pq
import pytest
from conftest import sha256
from tolerance import Z, assert_share, assert_within, cluster_se
from typer.testing import CliRunner

from causalsynth.cli import app
from causalsynth.dataset.reading import Dataset
from causalsynth.jobs.sample import sample_dataset
from causalsynth.tasks.evaluation import evaluate
from causalsynth.tasks.ml import FORMATS, check_leakage, export, task_named, task_view

runner = CliRunner()
TASKS = ("pr_impact", "service_health", "conversion", "anomaly")


@pytest.fixture(scope="module")
def small_dataset(tmp_path_factory, small_config):
    out = tmp_path_factory.mktemp("ml") / "ds"
    sample_dataset(config=small_config, n_prs=2_000, seed=4, to=out)
    return out


@pytest.fixture(scope="module")
def exported(small_dataset):
    export(small_dataset, formats=list(FORMATS))
    return small_dataset / "ml"


@pytest.mark.parametrize("task", TASKS)
def test_every_task_in_every_format_with_declared_columns(small_dataset, exported, task):
    ds = Dataset(small_dataset)
    view = task_view(ds, task)
    schema = json.loads((exported / "schema.json").read_text())["tasks"][task]
    declared = [f["name"] for f in schema["fields"] if f["role"] == "feature"]
    assert declared == list(view.features)
    parquet = pq.read_table(exported / f"{task}.parquet").to_pandas()
    assert {"split", *view.features, *view.labels} <= set(parquet.columns)
    csv = pd.read_csv(exported / f"{task}.csv")
    assert list(csv.columns) == list(parquet.columns) and len(csv) == len(parquet)
    for column in parquet.columns:  # CSV and Parquet agree row for row
        left, right = parquet[column], csv[column]
        if pd.api.types.is_float_dtype(left):  # every float reads back to the very same float32 or float64
            assert (right.to_numpy(np.float64).astype(left.dtype) == left.to_numpy()).all(), column
        else:
            assert (left.astype(str).str.lower() == right.astype(str).str.lower()).all(), column


def _json_value(arrow_type: pa.DataType, expected, got, where) -> None:
    """One value of a JSON export against the Parquet export's, its JSON type included."""
    if pa.types.is_floating(arrow_type):  # the JSON number reads back to the very same float
        assert type(got) is float and np.asarray(got).astype(expected.dtype) == expected, (where, expected, got)
    elif pa.types.is_boolean(arrow_type):
        assert type(got) is bool and got == expected, (where, expected, got)
    elif pa.types.is_integer(arrow_type):
        assert type(got) is int and got == expected, (where, expected, got)
    elif pa.types.is_dictionary(arrow_type) or pa.types.is_string(arrow_type) or pa.types.is_large_string(arrow_type):
        assert type(got) is str and got == str(expected), (where, expected, got)
    else:
        pytest.fail(f"{where}: no check for a {arrow_type} column in the JSON exports; add one")


@pytest.mark.parametrize("task", TASKS)
def test_json_and_jsonl_match_parquet_field_for_field(small_dataset, exported, task):
    """Every record in its place, the ids and split of all of them, and every feature and label
    value of 200 random records and the first and last, with its JSON type."""
    view = task_view(Dataset(small_dataset), task)
    table = pq.read_table(exported / f"{task}.parquet")
    parquet = table.to_pandas()
    lines = (exported / f"{task}.jsonl").read_text().splitlines()
    records = json.loads((exported / f"{task}.json").read_text())
    assert len(lines) == len(records) == len(parquet) == len(view.frame)
    ids = list(dict.fromkeys([view.unit_key, view.root_key]))
    labels = list(dict.fromkeys([*view.labels, *([view.task.probability.rpartition(".")[2]]
                                                  if view.task.probability else [])]))
    assert list(parquet.columns) == [*ids, "split", *view.features, *labels]
    for column in [*ids, "split"]:
        assert [r[column] for r in records] == parquet[column].tolist(), column
    picked = np.random.default_rng(0).choice(len(parquet), size=min(200, len(parquet)), replace=False)
    for i in sorted({0, len(parquet) - 1, *picked.tolist()}):
        line = json.loads(lines[i])
        assert line == records[i], i
        assert list(line) == [*ids, "split", "features", "labels"], i
        assert list(line["features"]) == list(view.features) and list(line["labels"]) == labels, i
        for column in ids:
            _json_value(table.schema.field(column).type, parquet[column].iat[i], line[column], (i, column))
        assert line["split"] == parquet.split.iat[i] in ("train", "valid", "test"), i
        for group, columns in (("features", view.features), ("labels", labels)):
            for column in columns:
                _json_value(table.schema.field(column).type, parquet[column].iat[i], line[group][column],
                            (i, column))


def test_schema_json_is_a_data_dictionary(exported):
    schema = json.loads((exported / "schema.json").read_text())
    fields = {f["name"]: f for f in schema["tasks"]["pr_impact"]["fields"]}
    assert "coverage" in fields["test_coverage"]["description"].lower()
    assert fields["test_coverage"]["source"] == "pull_requests.test_coverage"
    assert fields["has_performance_regression"]["role"] == "label (binary)"
    assert "regression_probability" in fields["has_performance_regression"]["causal_parents"]
    assert fields["size_class"]["levels"] == ["SMALL", "MEDIUM", "LARGE"]
    service = {f["name"]: f for f in schema["tasks"]["service_health"]["fields"]}
    assert service["system_runs_cpu_usage"]["source"] == "system_runs.cpu_usage"


@pytest.mark.parametrize("task", TASKS)
def test_no_feature_leaks_its_labels(small_dataset, task):
    ds = Dataset(small_dataset)
    assert check_leakage(ds, task_named(ds, task)) == []


def test_leakage_check_catches_descendants_labels_and_probabilities(small_dataset):
    ds = Dataset(small_dataset)
    conversion = task_named(ds, "conversion")
    assert "known only with the outcome" in check_leakage(ds, replace(conversion, features=("last_step",)))[0]
    assert "causal descendant" in check_leakage(ds, replace(task_named(ds, "pr_impact"),
                                                            features=("system_runs.response_time_ms",)))[0]
    assert "is a label" in check_leakage(ds, replace(conversion, features=("converted",)))[0]
    assert "own probabilities" in check_leakage(ds, replace(task_named(ds, "pr_impact"),
                                                            features=("regression_probability",)))[0]
    # the run metrics are symptoms of an anomaly: allowed when diagnosing, a leak when predicting
    anomaly = task_named(ds, "anomaly")
    assert check_leakage(ds, anomaly) == []
    assert check_leakage(ds, replace(anomaly, kind="predict"))


@pytest.mark.parametrize("task", TASKS)
def test_splits_are_grouped_by_pr_and_deterministic(small_dataset, task):
    ds = Dataset(small_dataset)
    frame = task_view(ds, task).frame
    assert (frame.groupby("pr_id").split.nunique() == 1).all()
    # Each PR's split is a uniform hash of its key: a share of independent draws, one per PR.
    prs = frame.drop_duplicates("pr_id")
    shares = prs.split.value_counts(normalize=True)
    for split, expected in ds.config.get("ml.split.shares").items():
        assert_share(shares[split], expected, len(prs), f"{task} {split} PRs")
    assert task_view(ds, task).frame.split.equals(frame.split)


def test_time_split_trains_on_the_past(small_dataset):
    ds = Dataset(small_dataset)
    frame = task_view(ds, "pr_impact", split_by="time").frame
    merged = ds.read("pull_requests", ["pr_id", "merged_at"]).set_index("pr_id").merged_at
    times = frame.assign(merged=merged.reindex(frame.pr_id).to_numpy()).groupby("split").merged
    assert times.max()["train"] <= times.min()["valid"] and times.max()["valid"] <= times.min()["test"]


@pytest.fixture(scope="module")
def evaluation_run(small_dataset):
    """`causalsynth evaluate` on the small dataset: its output and its evaluation.json."""
    result = runner.invoke(app, ["evaluate", str(small_dataset)])
    assert result.exit_code == 0, result.output
    return result.output, json.loads((small_dataset / "evaluation.json").read_text())


@pytest.fixture(scope="module")
def evaluated(evaluation_run):
    return evaluation_run[1]


def test_evaluate_writes_results_and_bayes_bounds_the_baseline(evaluation_run):
    output, results = evaluation_run
    assert set(results) == set(TASKS)
    for task in TASKS:
        accuracy = next(v for k, v in results[task].items() if k.endswith(".accuracy"))
        assert accuracy["bayes"] >= accuracy["value"] - 0.03, task
        assert 0 <= accuracy["value"] <= 1
    assert results["anomaly"]["is_anomalous.precision"]["target"] == 0.95
    assert "conversion" in output and "accuracy" in output and "majority" in output


BINARY_METRICS = ("accuracy", "balanced_accuracy", "precision", "recall", "f1", "roc_auc", "pr_auc")


def _split_labels(ds: Dataset, task: str, split: str) -> pd.Series:
    view = task_view(ds, task)
    return view.frame.loc[view.frame.split == split, view.task.binary].astype(bool)


@pytest.mark.parametrize("task", TASKS)
def test_binary_scores_stand_beside_a_constant(small_dataset, evaluated, task):
    ds = Dataset(small_dataset)
    binary = task_named(ds, task).binary
    scores = {metric: evaluated[task][f"{binary}.{metric}"] for metric in BINARY_METRICS}
    for metric, entry in scores.items():
        for reference in ("value", "bayes", "majority"):
            assert entry[reference] is None or 0 <= entry[reference] <= 1, (metric, reference, entry)
    # The constant is the train split's majority class; the fixture must not sit on the fence.
    prevalence, train_prevalence = _split_labels(ds, task, "test").mean(), _split_labels(ds, task, "train").mean()
    assert (prevalence > 0.5) == (train_prevalence > 0.5)
    assert scores["accuracy"]["majority"] == pytest.approx(max(prevalence, 1 - prevalence))
    assert scores["balanced_accuracy"]["majority"] == pytest.approx(0.5)
    # A constant score ranks nothing: chance ROC AUC, and precision at full recall is the prevalence.
    assert scores["roc_auc"]["majority"] == 0.5
    assert scores["pr_auc"]["majority"] == pytest.approx(prevalence)


def test_baseline_ranks_failing_services_far_above_a_constant(evaluated):
    pr_auc = evaluated["service_health"]["is_failing.pr_auc"]
    # At least halfway from a constant's PR-AUC (the prevalence) to a perfect ranking.
    assert pr_auc["value"] - pr_auc["majority"] > 0.5 * (1 - pr_auc["majority"]), pr_auc


def test_every_target_is_checked_for_the_baseline_and_for_a_constant(small_dataset, evaluated):
    targets = Dataset(small_dataset).config.get("ml.targets")
    for task, metrics in evaluated.items():
        targeted = set()
        for name, entry in metrics.items():
            if name.startswith("_"):
                continue
            assert {"value", "target", "bayes", "majority", "meets_target", "constant_meets_target"} == set(entry)
            if entry["target"] is None:
                assert entry["meets_target"] is None and entry["constant_meets_target"] is None, (task, name)
                continue
            targeted.add(name.rpartition(".")[2])
            assert entry["meets_target"] == (entry["value"] > entry["target"]), (task, name, entry)
            assert entry["constant_meets_target"] == (entry["majority"] > entry["target"]), (task, name, entry)
        assert targeted == set(targets.get(task, {})), task  # a target on any binary metric counts


def test_categorical_and_continuous_labels_have_a_constant_reference(small_dataset, evaluated):
    ds = Dataset(small_dataset)
    for task in TASKS:
        t = task_named(ds, task)
        frame = task_view(ds, task).frame
        train, test = frame[frame.split == "train"], frame[frame.split == "test"]
        # Independently of sklearn: the median's error, and macro-F1 when one level is always predicted.
        mae = (test[t.continuous] - train[t.continuous].median()).abs().mean()
        assert evaluated[task][f"{t.continuous}.mae"]["majority"] == pytest.approx(mae)
        guess = train[t.categorical].astype(str).mode()[0]
        hit = test[t.categorical].astype(str) == guess
        levels = set(train[t.categorical].astype(str)) | set(test[t.categorical].astype(str))
        f1 = 2 * hit.mean() / (hit.mean() + 1) / len(levels)
        assert evaluated[task][f"{t.categorical}.macro_f1"]["majority"] == pytest.approx(f1)


@pytest.mark.parametrize("metric", ["balanced_accuracy", "f1", "roc_auc", "pr_auc"])
def test_targets_on_any_binary_metric_are_probabilities(metric):
    from causalsynth.config.loading import _check_values

    assert _check_values({"ml": {"targets": {"service_health": {metric: 0.8}}}}, "") == []
    assert "probability" in _check_values({"ml": {"targets": {"service_health": {metric: 1.2}}}}, "")[0]


@pytest.mark.slow
def test_defaults_meet_the_seed_targets(dataset_20k):
    results = evaluate(dataset_20k)
    for task, metrics in results.items():
        for name, metric in metrics.items():
            if not name.startswith("_") and metric["target"] is not None:
                assert metric["meets_target"], (task, name, metric)
                if metric["bayes"] is not None:
                    assert metric["value"] <= metric["bayes"] + 0.01, (task, name, metric)


def test_evaluate_on_a_shifted_twin(small_dataset, tmp_path):
    from causalsynth.engine.interventions import load_variant
    from causalsynth.jobs.sample import sample_twin

    twin = tmp_path / "twin"
    sample_twin(factual_dir=small_dataset, intervention=load_variant("all_regressions"), to=twin)
    shifted = evaluate(small_dataset, test_dir=twin, tasks=["pr_impact"])["pr_impact"]
    assert shifted["has_performance_regression.recall"]["value"] < 0.95  # every PR regresses in the twin
    assert shifted["has_performance_regression.accuracy"]["bayes"] < 0.9


def _rewritten(source, out, table: str, column: str, values) -> Path:
    """A copy of the dataset ``source`` at ``out`` with ``table.column`` replaced by ``values(frame)``
    (same type), the manifest's checksum and row count of the table brought up to date."""
    shutil.copytree(source, out, ignore=shutil.ignore_patterns("ml", "ml-*", "evaluation.json"))
    manifest = json.loads((out / "manifest.json").read_text())
    for part in manifest["tables"][table]["parts"]:
        path = out / part["file"]
        data = pq.read_table(path)
        i = data.schema.get_field_index(column)
        field = data.schema.field(i)
        new = np.asarray(values(data.to_pandas())).astype(field.type.to_pandas_dtype())
        pq.write_table(data.set_column(i, field, pa.array(new, field.type)), path)
        part.update(sha256=sha256(path), rows=data.num_rows)
    (out / "manifest.json").write_text(json.dumps(manifest, indent=2) + "\n")
    return out


def _negated_on(source, out, task: str, part: str) -> Path:
    """A copy of ``source`` with the task's binary label negated on the rows of one split."""
    view = task_view(Dataset(source), task)
    split, key, binary = view.frame.set_index(view.unit_key).split, view.unit_key, view.task.binary
    return _rewritten(source, out, view.task.table, binary,
                      lambda f: np.where(f[key].map(split) == part, ~f[binary], f[binary]))


@pytest.mark.parametrize("task", ["pr_impact", "conversion"])
def test_evaluate_fits_on_the_train_split_and_scores_on_the_test_split_only(small_dataset, evaluated, tmp_path,
                                                                            task):
    """Negate the binary label on one split's rows of a real dataset and watch what `evaluate` reports
    (a PR task, and a flow task split by the flows' PRs).

    - On the valid split: nothing changes (valid rows are neither fitted nor scored).
    - On the test split: the fitted models are the same (the categorical and continuous scores do
      not move) and every hit becomes a miss, with no other row scored: accuracy, balanced accuracy
      and ROC AUC become exactly 1 minus what they were, for the baseline, the Bayes rule and the
      constant alike.
    """
    honest = evaluated[task]
    t = task_named(Dataset(small_dataset), task)
    assert evaluate(_negated_on(small_dataset, tmp_path / "valid", task, "valid"), tasks=[task])[task] == honest
    negated = evaluate(_negated_on(small_dataset, tmp_path / "test", task, "test"), tasks=[task])[task]
    assert negated["_rows"] == honest["_rows"]
    for name in (f"{t.categorical}.macro_f1", f"{t.continuous}.mae"):
        assert negated[name] == honest[name], name
    for metric in ("accuracy", "balanced_accuracy", "roc_auc"):
        for reference in ("value", "bayes", "majority"):
            was = honest[f"{t.binary}.{metric}"][reference]
            assert negated[f"{t.binary}.{metric}"][reference] == pytest.approx(1 - was, abs=1e-12), (metric, reference)


def test_a_large_train_split_is_fitted_on_about_max_train_rows_whole_prs(small_dataset, evaluated):
    from causalsynth.tasks.evaluation import _fitted_rows

    assert evaluated["conversion"]["_rows"]["fitted"] == evaluated["conversion"]["_rows"]["train"]  # under the cap
    view = task_view(Dataset(small_dataset), "conversion")
    train = view.frame[view.frame.split == "train"]
    fitted = _fitted_rows(view, train, 5_000)
    assert abs(len(fitted) - 5_000) < 0.15 * 5_000 and len(train) > 3 * 5_000
    per_pr = train.groupby("pr_id").size()
    assert (fitted.groupby("pr_id").size() == per_pr[fitted.pr_id.unique()]).all()  # whole PRs
    assert fitted.equals(_fitted_rows(view, train, 5_000))
    assert _fitted_rows(view, train, len(train)) is train


def test_a_leak_in_the_train_split_never_reaches_the_reported_score(small_dataset, evaluated, tmp_path):
    """A feature equal to the label on the train split and noise elsewhere. The model fitted to it
    scores 1.0 wherever the scored rows carry the leak too (so would any score on the train split);
    on the real test rows, where the feature is noise, it ranks no better than chance, far below
    the honest baseline."""
    task, feature = "pr_impact", "risk_score"
    ds = Dataset(small_dataset)
    view = task_view(ds, task)
    key, binary = view.unit_key, view.task.binary
    split = view.frame.set_index(key).split
    assert feature in view.features
    noise = pd.Series(np.random.default_rng(0).uniform(size=len(view.frame)), index=view.frame[key].to_numpy())
    leaky = _rewritten(small_dataset, tmp_path / "leak-in-train", view.task.table, feature,
                       lambda f: np.where(f[key].map(split) == "train", f[binary].astype(float), f[key].map(noise)))
    everywhere = _rewritten(small_dataset, tmp_path / "leak-everywhere", view.task.table, feature,
                            lambda f: f[binary].astype(float))
    seen = evaluate(leaky, test_dir=everywhere, tasks=[task])[task]
    assert seen[f"{binary}.accuracy"]["value"] == 1.0 and seen[f"{binary}.roc_auc"]["value"] == 1.0
    leaked = evaluate(leaky, tasks=[task])[task][f"{binary}.roc_auc"]["value"]
    # The ROC AUC of a score independent of the label is 1/2, standard error at most
    # sqrt((n1 + n0 + 1) / (12 n1 n0)) (Hanley and McNeil); the noise is drawn per row, so the
    # rows of one PR share none of it.
    test = view.frame[view.frame.split == "test"]
    n1 = int(test[binary].sum())
    n0 = len(test) - n1
    se = math.sqrt((n1 + n0 + 1) / (12 * n1 * n0))
    assert_within(leaked, 0.5, se, "ROC AUC of a model fitted to a leak in the train split")
    honest = evaluated[task][f"{binary}.roc_auc"]["value"]
    assert honest > 0.5 + 2 * Z * se, honest


def test_export_refuses_to_overwrite_without_force(small_dataset, exported):
    result = runner.invoke(app, ["export", str(small_dataset), "--tasks", "pr_impact"])
    assert result.exit_code == 2 and "--force" in result.output
    result = runner.invoke(app, ["export", str(small_dataset), "--tasks", "pr_impact", "--force",
                                 "--format", "csv", "--out", str(small_dataset / "ml-csv")])
    assert result.exit_code == 0, result.output
    assert sorted(p.name for p in (small_dataset / "ml-csv").iterdir()) == ["pr_impact.csv", "schema.json"]


def test_force_replaces_only_task_files_it_wrote(small_dataset, tmp_path):
    out = tmp_path / "mine"
    out.mkdir()
    (out / "schema.json").write_text('{"tasks": {}}')
    (out / "thesis.txt").write_text("x")
    result = runner.invoke(app, ["export", str(small_dataset), "--tasks", "pr_impact", "--out", str(out), "--force"])
    assert result.exit_code == 2 and "holds files that are not" in result.output, result.output
    assert (out / "thesis.txt").read_text() == "x"


def test_anomaly_posterior_is_calibrated(dataset_20k):
    """The model's posterior given a run's metrics averages to the anomaly rate, and is sharp: on the
    test split (about 15,000 runs), where evaluate scores it."""
    from causalsynth.tasks.evaluation import _label_probability

    ds = Dataset(dataset_20k)
    frame = task_view(ds, "anomaly").frame
    frame = frame[frame.split == "test"]
    p = _label_probability(ds, task_named(ds, "anomaly"), frame)
    # Runs of one PR share its (summed-out) regression, so the standard error is clustered by PR.
    y = frame.is_anomalous.to_numpy(np.float64)
    assert_within(y.mean(), p.mean(), cluster_se(y - p, frame.pr_id), "anomalous runs against the mean posterior")
    assert ((p > 0.5) == frame.is_anomalous).mean() > 0.99
