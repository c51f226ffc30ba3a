"""ML task views of a dataset: features, labels and leak-free splits, in four formats.

The tasks are declared by the model (``TASKS``): a task's rows are one table,
its features are columns of that table or of an ancestor table (joined down
the foreign keys), and it has a binary and a continuous label, and a categorical one where the model has it.
Every row carries the key of its pull request and a ``split`` drawn per pull
request, so no PR's rows fall in two splits.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.csv as pacsv
import pyarrow.parquet as pq

from causalsynth.causal.graph import model_graph
from causalsynth.config.limits import check_seed
from causalsynth.dataset.reading import Dataset
from causalsynth.dataset.staging import json_marker, staged_directory
from causalsynth.errors import ConfigError
from causalsynth.spec.modeling import Task

FORMATS = ("parquet", "csv", "jsonl", "json")
# What ``schema.json`` says it is: ``--force`` replaces only a directory holding one.
TASKS_FORMAT = "causalsynth-ml-tasks"
SPLITS = ("train", "valid", "test")
SPLIT_BY = ("pr", "time")
GOLDEN = np.uint64(0x9E3779B97F4A7C15)


@dataclass(frozen=True)
class TaskView:
    """One task's rows: ids, split, features and labels, with the feature names."""

    task: Task
    frame: pd.DataFrame
    features: tuple[str, ...]
    unit_key: str
    root_key: str

    @property
    def labels(self) -> tuple[str, ...]:
        return tuple(column for _, column in self.task.labels)


def declared_tasks(ds: Dataset) -> dict[str, Task]:
    return {t.name: t for t in ds.config.model.TASKS}


def task_named(ds: Dataset, name: str) -> Task:
    tasks = declared_tasks(ds)
    if name not in tasks:
        raise ConfigError(f"--tasks {name}: no such task; tasks: {', '.join(tasks)}")
    return tasks[name]


def _split_feature(task: Task, feature: str) -> tuple[str, str]:
    table, _, column = feature.rpartition(".")
    return (table or task.table), column


def probability_column(task: Task) -> str:
    """The column of the task's table holding the model's probability (the site, unqualified)."""
    return task.probability.rpartition(".")[2]


def feature_name(task: Task, feature: str) -> str:
    table, column = _split_feature(task, feature)
    return column if table == task.table else f"{table}_{column}"


def uniform_by_key(keys: np.ndarray, seed: int) -> np.ndarray:
    """A deterministic uniform [0, 1) per key (splitmix64), the same in every dataset."""
    z = keys.astype(np.uint64) * GOLDEN + np.uint64(seed) + GOLDEN
    z = (z ^ (z >> np.uint64(30))) * np.uint64(0xBF58476D1CE4E5B9)
    z = (z ^ (z >> np.uint64(27))) * np.uint64(0x94D049BB133111EB)
    z = z ^ (z >> np.uint64(31))
    return (z >> np.uint64(11)).astype(np.float64) / float(1 << 53)


def split_labels(u: np.ndarray, shares: dict[str, float]) -> np.ndarray:
    edges = np.cumsum([shares[s] for s in SPLITS])[:-1]
    return np.asarray(SPLITS, dtype=object)[np.searchsorted(edges, u, side="right")]


def task_view(ds: Dataset, name: str, *, split_by: str = "pr", seed: int = 0) -> TaskView:
    """The task's rows, with their PR's split."""
    if split_by not in SPLIT_BY:
        raise ConfigError(f"--split-by {split_by}: allowed values are {', '.join(SPLIT_BY)}")
    task = task_named(ds, name)
    unit_key = ds.key(task.table)
    labels = list(dict.fromkeys([c for _, c in task.labels] + ([probability_column(task)] if task.probability else [])))
    frame = ds.frame(task.table, list(task.features) + labels)
    table = ds.root(task.table)
    root_key = ds.key(table)
    shares = ds.config.get("ml.split.shares")
    if split_by == "pr":
        frame["split"] = split_labels(uniform_by_key(frame[root_key].to_numpy(), seed), shares)
    else:
        frame["split"] = _time_splits(ds, table, root_key, frame[root_key], shares)
    features = tuple(feature_name(task, f) for f in task.features)
    ids = [unit_key] if unit_key == root_key else [unit_key, root_key]
    keep = ids + ["split", *features, *labels]
    return TaskView(task, frame[keep].reset_index(drop=True), features, unit_key, root_key)


def _time_splits(ds: Dataset, root: str, key: str, keys: pd.Series, shares: dict[str, float]) -> np.ndarray:
    """Earliest PRs train, the next validate, the latest test (by the root table's first timestamp)."""
    time_columns = [f["name"] for f in ds.manifest["tables"][root]["schema"] if f["type"].startswith("timestamp")]
    if not time_columns:
        raise ConfigError(f"--split-by time: table {root} has no timestamp column")
    roots = ds.read(root, [key, time_columns[0]]).sort_values([time_columns[0], key])
    rank = pd.Series((np.arange(len(roots)) + 0.5) / len(roots), index=roots[key].to_numpy())
    return split_labels(rank.reindex(keys.to_numpy()).to_numpy(), shares)


def check_leakage(ds: Dataset, task: Task) -> list[str]:
    """Features that break the task's causal rules (empty when the task is clean).

    Every task: no feature is a label, or one of the model's own probabilities.
    A predict task also: no feature is a causal descendant of a label, and
    none is driven by a label's own exogenous noise (a latent ``_`` parent of
    the label): such a feature is settled by the same draws that settle the
    outcome (where a flow stopped, for conversion) and is known only with it.
    """
    graph = model_graph(ds.program)
    label_sites = {ds.site(task.table, c) for _, c in task.labels}
    probabilities = {c.site for c in ds.config.model.CALIBRATION} | ({task.probability} if task.probability else set())
    descendants = graph.descendants(label_sites)
    label_noise = {p for label in label_sites for p in graph.parents.get(label, ()) if p.startswith("_")}
    problems = []
    for feature in task.features:
        table, column = _split_feature(task, feature)
        site = ds.site(table, column)
        if site in label_sites:
            problems.append(f"{task.name}: feature {feature} is a label")
        elif site in probabilities:
            problems.append(f"{task.name}: feature {feature} is one of the model's own probabilities")
        elif task.kind == "predict" and site in descendants:
            problems.append(f"{task.name}: feature {feature} is a causal descendant of a label")
        elif task.kind == "predict" and graph.ancestors(site) & label_noise:
            problems.append(f"{task.name}: feature {feature} shares a label's own noise "
                            f"({', '.join(sorted(graph.ancestors(site) & label_noise))}): known only with the outcome")
    return problems


def data_dictionary(ds: Dataset, names: list[str], split_by: str, seed: int) -> dict[str, Any]:
    """ml/schema.json: per task, each feature's and label's meaning, type, source and causal parents."""
    graph = model_graph(ds.program)
    docs = ds.config.model.DESCRIPTIONS
    out: dict[str, Any] = {"format": TASKS_FORMAT,
                           "split": {"by": split_by, "seed": seed, "shares": ds.config.get("ml.split.shares"),
                                     "grouped_by": "pr_id"}, "tasks": {}}
    def entry(task: Task, table: str, column: str, role: str) -> dict[str, Any]:
        site = ds.site(table, column)
        col = next(c for c in ds.program.table(table).columns if c.name == column)
        return {"name": column if table == task.table else f"{table}_{column}", "role": role,
                "description": docs[site], "type": col.kind, "levels": list(col.levels) or None,
                "source": f"{table}.{column}", "site": site,
                "causal_parents": sorted(p for p in graph.parents.get(site, ()) if not p.startswith("_"))}

    for name in names:
        task = task_named(ds, name)
        fields = [entry(task, *_split_feature(task, f), "feature") for f in task.features]
        fields += [entry(task, task.table, c, f"label ({kind})") for kind, c in task.labels]
        if task.probability:
            fields.append(entry(task, task.table, probability_column(task), "model probability of the binary label"))
        out["tasks"][name] = {"unit": task.table, "kind": task.kind, "fields": fields}
    return out


def _text(value: str) -> pa.Scalar:
    return pa.scalar(value, pa.large_string())


def _json_values(column: pd.Series) -> pa.Array:
    """Each value of ``column`` as JSON text.

    A float is written in the shortest form that reads back to the very same
    float32 or float64, with ".0" on a whole number so that it stays a float
    (pandas' ``to_json`` rounds to 10 decimal places, which loses most digits
    of a small probability or rate, and all of one below 5e-11).
    """
    values = pa.array(column, from_pandas=True)
    if pa.types.is_floating(values.type):
        text = pc.cast(values, pa.large_string())
        whole = pc.match_substring_regex(text, r"^-?[0-9]+$")
        text = pc.if_else(whole, pc.binary_join_element_wise(text, _text(".0"), _text("")), text)
        return pc.if_else(pc.fill_null(pc.is_finite(values), False), text, _text("null"))
    if pa.types.is_integer(values.type) or pa.types.is_boolean(values.type):
        return pc.fill_null(pc.cast(values, pa.large_string()), _text("null"))
    # Anything else (categories, strings, timestamps): pandas' JSON of each distinct value.
    codes, uniques = pd.factorize(column, use_na_sentinel=False)
    text = np.array([json.dumps(v) for v in json.loads(pd.Series(uniques).to_json(orient="values"))], dtype=object)
    return pa.array(text[codes], pa.large_string())


def _nested_lines(view: TaskView) -> list[str]:
    """One JSON object per row in the seed's shape: ids, split, {features}, {labels}."""
    frame = view.frame
    ids = [view.unit_key] + ([view.root_key] if view.root_key != view.unit_key else [])
    label_cols = [c for c in frame.columns if c not in (*ids, "split", *view.features)]

    def members(columns) -> list:
        return [piece for i, c in enumerate(columns)
                for piece in (("," if i else "") + json.dumps(c) + ":", _json_values(frame[c]))]

    pieces = ["{", *members([*ids, "split"]), ',"features":{', *members(view.features), '},"labels":{',
              *members(label_cols), "}}"]
    pieces = [_text(p) if isinstance(p, str) else p for p in pieces]
    return pc.binary_join_element_wise(*pieces, _text("")).to_pylist()


def check_export_options(formats: list[str], split_by: str, seed: int) -> None:
    """Refuse an unknown ``--format`` or ``--split-by``, or a bad ``--split-seed``, before any work."""
    for fmt in formats:
        if fmt not in FORMATS:
            raise ConfigError(f"--format {fmt}: allowed formats are {', '.join(FORMATS)}")
    if split_by not in SPLIT_BY:
        raise ConfigError(f"--split-by {split_by}: allowed values are {', '.join(SPLIT_BY)}")
    check_seed(seed, "--split-seed")


def write_view(view: TaskView, directory: Path, fmt: str) -> Path:
    path = directory / f"{view.task.name}.{fmt}"
    if fmt == "parquet":
        pq.write_table(pa.Table.from_pandas(view.frame, preserve_index=False), path, compression="zstd")
    elif fmt == "csv":
        pacsv.write_csv(pa.Table.from_pandas(view.frame, preserve_index=False), path)
    elif fmt == "jsonl":
        path.write_text("\n".join(_nested_lines(view)) + "\n")
    else:
        path.write_text("[\n" + ",\n".join(_nested_lines(view)) + "\n]\n")
    return path


def no_tasks(ds: Dataset, names: list[str], verb: str) -> None:
    """Refuse a job with no task to run: a model may declare none."""
    if not names:
        raise ConfigError(f"{ds.directory}: its model {ds.config.model.NAME} declares no ML tasks (TASKS), "
                          f"so there is nothing to {verb}")


def export(directory: str | Path, *, tasks: list[str] | None = None, formats: list[str] | None = None,
           split_by: str = "pr", seed: int = 0, out: str | Path | None = None, force: bool = False,
           on_file=lambda path: None) -> list[Path]:
    """Write ``ml/<task>.<format>`` for each task and format, and ``ml/schema.json``; all or nothing.

    The options are checked first, then the dataset (``UnreadableDataset``),
    then the task names; nothing is written unless everything succeeds.
    """
    formats = list(formats or ["parquet"])
    check_export_options(formats, split_by, seed)
    ds = Dataset(directory)
    names = list(tasks or declared_tasks(ds))
    no_tasks(ds, names, "export")
    for name in names:
        task_named(ds, name)
    written = []
    with staged_directory(out if out else ds.beside("ml"), force=force, what="a causalsynth export",
                          owned=json_marker("schema.json", "format", TASKS_FORMAT)) as staging:
        for name in names:
            view = task_view(ds, name, split_by=split_by, seed=seed)
            for fmt in formats:
                written.append(write_view(view, staging, fmt))
                on_file(written[-1])
        (staging / "schema.json").write_text(json.dumps(data_dictionary(ds, names, split_by, seed), indent=2) + "\n")
    return written
