"""`causalsynth validate`: is this dataset what its manifest and config say it is?

Every check is read against the dataset's own manifest and resolved config,
so a dataset sampled with a 35 % regression rate validates against 35 %:

- integrity: each file's SHA-256 and row count against the manifest;
- completeness: the non-null share of every column (``quality.completeness``);
- consistency: unique keys, foreign keys that resolve (100 %), values in
  range (columns the data dictionary marks "(0-1)" in [0, 1], "(ms)" > 0),
  and timestamps ordered parent → child (PR → run → flow → step);
- marginals: every configured rate and mix (the model's ``MARGINALS``)
  within ``quality.tolerances``, widened to 4 standard errors on small
  samples so that a correct small dataset is not failed by sampling noise;
- shapes: the model's ``SHAPES`` (log-normal response times, Beta error
  rates) within ``quality.max_ks_distance`` of the fitted family (or the
  KS test's 1 % critical value, when a small sample makes that larger);
- causal signatures: the model's ``SIGNATURES`` (regressed PRs' runs are
  slower, their flows convert less).

Uses Arrow compute and Parquet statistics; child tables are streamed by row
group, so memory stays bounded as the dataset grows.
"""

from __future__ import annotations

import math
import re
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.parquet as pq
from scipy import stats

from causalsynth.config import load_config
from causalsynth.dataset import parse_column, read_manifest, sha256, true_count
from causalsynth.errors import CausalsynthError
from causalsynth.graph import model_graph
from causalsynth.program import Program


# Fewer rows than this cannot fit a distribution's two parameters and test the fit.
MIN_SHAPE_ROWS = 20


class UnreadableDataset(CausalsynthError):
    """The directory is not a dataset whose manifest can be read."""


@dataclass(frozen=True)
class Check:
    check: str
    expected: str
    observed: str
    passed: bool
    value: float | None = None   # marginals: the realised share ...
    target: float | None = None  # ... and its target, for plotting

    def __post_init__(self):
        object.__setattr__(self, "passed", bool(self.passed))  # numpy booleans are not JSON


class _Tables:
    """The dataset's Parquet files, read a column at a time (and child tables a row group
    at a time), so that validating holds a few columns in memory, never whole tables."""

    def __init__(self, directory: Path, manifest: dict[str, Any]):
        self.directory, self.manifest = directory, manifest
        self.files: dict[str, pq.ParquetFile | None] = {}
        self.columns: dict[tuple[str, str], pa.ChunkedArray] = {}

    def file(self, name: str) -> pq.ParquetFile | None:
        if name not in self.files:
            try:
                self.files[name] = pq.ParquetFile(self.directory / self.manifest["tables"][name]["file"])
                self.files[name].schema_arrow  # noqa: B018 - parse the footer now: corrupt is unreadable
            except (OSError, pa.ArrowException):
                self.files[name] = None
        return self.files[name]

    def key(self, name: str) -> str:
        return self.manifest["tables"][name]["key"]

    def own(self, name: str, column: str, keep: bool = False) -> pa.ChunkedArray:
        """One whole column; ``keep`` caches it (keys and parents' columns used per child row group)."""
        if (name, column) in self.columns:
            return self.columns[name, column]
        values = self.file(name).read(columns=[column]).column(0)
        if keep:
            self.columns[name, column] = values
        return values

    def key_column(self, name: str) -> pa.ChunkedArray:
        return self.own(name, self.key(name), keep=True)

    def row_groups(self, name: str, columns: list[str]):
        f = self.file(name)
        for i in range(f.metadata.num_row_groups):
            yield f.read_row_group(i, columns=columns)

    def parent(self, name: str) -> tuple[str, str] | None:
        parent = self.manifest["tables"][name]["parent"]
        return None if parent is None else (parent["table"], parent["key"])

    def column(self, table: str, ref: str) -> pa.ChunkedArray:
        """``ref`` of ``table``'s rows: its own column, or "ancestor.column" looked up through the keys."""
        ancestor, _, column = ref.rpartition(".")
        if not ancestor:
            return self.own(table, column)
        rows, link = None, self.parent(table)
        current = table
        while True:
            up, key = link
            fk = self.own(current, key) if rows is None else pc.take(self.own(current, key), rows)
            rows = _lookup(self.key_column(up), fk)
            if up == ancestor:
                return pc.take(self.own(up, column), rows)
            current, link = up, self.parent(up)

    def mask(self, table: str, conditions: tuple[str, ...]) -> pa.ChunkedArray | None:
        mask = None
        for condition in conditions:
            negate = condition.startswith("~")
            values = self.column(table, condition.lstrip("~"))
            values = pc.invert(values) if negate else values
            mask = values if mask is None else pc.and_(mask, values)
        return mask

    def stats(self, name: str, column: str) -> tuple[int, Any, Any]:
        """Nulls, minimum and maximum of a column: from the row groups' statistics when
        written (pyarrow writes them), else from the data."""
        f = self.file(name)
        index = f.schema_arrow.get_field_index(column)
        nulls, low, high = 0, None, None
        for i in range(f.metadata.num_row_groups):
            st = f.metadata.row_group(i).column(index).statistics
            if st is None or not st.has_null_count or not st.has_min_max:
                values = self.own(name, column)
                bounds = pc.min_max(values)
                return values.null_count, bounds["min"].as_py(), bounds["max"].as_py()
            nulls += st.null_count
            low = st.min if low is None else min(low, st.min)
            high = st.max if high is None else max(high, st.max)
        return nulls, low, high


def _increasing(keys: np.ndarray) -> bool:
    return bool(np.all(keys[1:] > keys[:-1]))


def _lookup(keys: pa.ChunkedArray, values: pa.ChunkedArray) -> pa.Array:
    """Row of ``keys`` holding each of ``values`` (null where absent).

    Keys are written in increasing order, so a binary search does it; any
    other order falls back to Arrow's hash lookup.
    """
    k = keys.to_numpy()
    if not _increasing(k):
        return pc.index_in(values, value_set=keys)
    v = values.to_numpy()
    idx = np.minimum(np.searchsorted(k, v), max(len(k) - 1, 0))
    found = (k[idx] == v) if len(k) else np.zeros(len(v), bool)
    return pa.array(idx, mask=~found)


def _pct(x: float) -> str:
    return f"{x:.2%}"


def validate_dataset(directory: str | Path) -> list[Check]:
    """Every check on the dataset in ``directory``; raises UnreadableDataset if there is none."""
    directory = Path(directory)
    try:
        manifest = read_manifest(directory)
        config = load_config(data=manifest["config"])
    except (CausalsynthError, ValueError, KeyError) as exc:
        raise UnreadableDataset(f"{directory}: cannot be read as a dataset: {exc}") from None
    tables = _Tables(directory, manifest)
    model, quality = config.model, config.data["quality"]
    checks: list[Check] = []
    checks += _integrity(directory, manifest, tables)
    readable = [name for name in manifest["tables"] if tables.file(name) is not None]
    for name in list(readable):  # a copy: an unreadable table leaves the list, not the loop
        try:
            checks += _table_checks(tables, name, manifest, model, quality["completeness"])
        except (OSError, pa.ArrowException) as exc:
            readable.remove(name)
            checks.append(Check(f"read {name}", "readable", f"unreadable: {exc}", False))
    if len(readable) == len(manifest["tables"]):
        intervened = _intervened_sites(manifest, config)
        checks += _marginals(tables, model, config, quality["tolerances"], intervened)
        checks += _shapes(tables, model, quality["max_ks_distance"])
        checks += _signatures(tables, model, set(manifest["intervention"]["do"]))
    return checks


def _integrity(directory: Path, manifest: dict, tables: _Tables) -> list[Check]:
    out = []
    for name, entry in manifest["tables"].items():
        path = directory / entry["file"]
        digest = sha256(path) if path.is_file() else "missing"
        out.append(Check(f"checksum {entry['file']}", entry["sha256"][:16] + "…", digest[:16] + "…",
                         digest == entry["sha256"]))
        f = tables.file(name)
        rows = "unreadable" if f is None else f"{f.metadata.num_rows:,}"
        out.append(Check(f"rows {name}", f"{entry['rows']:,}", rows,
                         f is not None and f.metadata.num_rows == entry["rows"]))
    return out


def _table_checks(tables: _Tables, name: str, manifest: dict, model, minimum: float) -> list[Check]:
    """Completeness and consistency of one table, streaming its row groups."""
    out = []
    f, entry = tables.file(name), manifest["tables"][name]
    n = max(f.metadata.num_rows, 1)
    worst, worst_column = 1.0, None
    for field in f.schema_arrow:
        share = 1.0 - tables.stats(name, field.name)[0] / n
        if share < worst:
            worst, worst_column = share, field.name
    out.append(Check(f"completeness {name}", f"> {_pct(minimum)} non-null",
                     f"{_pct(worst)} ({worst_column})" if worst_column else "100.00%", worst > minimum))

    key, parent = entry["key"], tables.parent(name)
    increasing, last, found, late = True, None, 0, 0
    columns = [key] + ([parent[1]] if parent else [])
    time = _first_time(manifest, name)
    up_time = _first_time(manifest, parent[0]) if parent else None
    if time and up_time:
        columns.append(time)
    for group in tables.row_groups(name, columns):
        k = group.column(key).to_numpy()
        increasing &= _increasing(k) and (last is None or len(k) == 0 or k[0] > last)
        last = k[-1] if len(k) else last
        if parent:
            rows = _lookup(tables.key_column(parent[0]), group.column(parent[1]))
            found += group.num_rows - rows.null_count
            if time and up_time:
                theirs = pc.take(tables.own(parent[0], up_time, keep=True), rows)
                late += pc.sum(pc.less(group.column(time), theirs)).as_py() or 0
    distinct = f.metadata.num_rows if increasing else pc.count_distinct(tables.own(name, key)).as_py()
    out.append(Check(f"unique key {name}.{key}", "100%", _pct(distinct / n), distinct == f.metadata.num_rows))
    if parent:
        out.append(Check(f"foreign key {name}.{parent[1]} → {parent[0]}", "100%", _pct(found / n),
                         found == f.metadata.num_rows))
        if time and up_time:
            out.append(Check(f"time order {parent[0]}.{up_time} ≤ {name}.{time}", "100%", _pct(1 - late / n),
                             late == 0))
    for field in entry["schema"]:
        unit = _unit(model.DESCRIPTIONS, name, field["name"])
        if unit is None or not field["type"].startswith(("float", "double", "int")):
            continue
        _, low, high = tables.stats(name, field["name"])
        if unit == "(0-1)":
            ok = low is not None and 0.0 <= low and high <= 1.0
            out.append(Check(f"range {name}.{field['name']}", "in [0, 1]", f"[{low:.4g}, {high:.4g}]", ok))
        else:
            ok = low is not None and low > 0.0
            out.append(Check(f"range {name}.{field['name']}", "> 0 ms", f"min {low:.4g}", ok))
    return out


def _first_time(manifest: dict, name: str) -> str | None:
    return next((f["name"] for f in manifest["tables"][name]["schema"] if f["type"].startswith("timestamp")), None)


def _unit(descriptions: dict[str, str], table: str, column: str) -> str | None:
    """The range the data dictionary states for a column: "(0-1)", "(ms)" or None."""
    for site, text in descriptions.items():
        if site.rpartition(".")[2] == column and ("(0-1)" in text or "(ms)" in text):
            return "(0-1)" if "(0-1)" in text else "(ms)"
    return None


def _intervened_sites(manifest: dict, config) -> set[str]:
    """Sites the dataset's intervention moves: their configured marginals no longer apply."""
    intervention = manifest["intervention"]
    if not intervention["do"] and not intervention["set"]:
        return set()
    graph = model_graph(Program(config))
    return graph.descendants(set(intervention["do"]) | graph.reading(intervention["set"]))


def _marginals(tables: _Tables, model, config, tolerances: dict, intervened: set[str]) -> list[Check]:
    out = []
    sites = {(t.table.name, c.name): c.site for t in Program(config).tables for c in t.columns} if intervened else {}
    for m in model.MARGINALS:
        table, column, level = parse_column(m.column)
        if sites.get((table, column)) in intervened:
            out.append(Check(f"marginal {m.column}", "not checked: moved by the intervention",
                             manifest_name(tables), True))
            continue
        values = tables.own(table, column)
        if m.among:
            values = pc.filter(values, tables.column(table, m.among))
        target = config.get(m.target)
        targets = target if isinstance(target, dict) else {level: target}
        n = max(len(values), 1)
        for lvl, expected in targets.items():
            observed = true_count(values.combine_chunks(), lvl) / n
            se = math.sqrt(max(expected * (1 - expected), 1e-12) / n)
            tolerance = max(tolerances[m.tolerance], 4 * se)
            name = f"{table}.{column}" + (f"={lvl}" if lvl else "") + (f" among {m.among}" if m.among else "")
            out.append(Check(f"marginal {name}", f"{_pct(expected)} ± {_pct(tolerance)}", _pct(observed),
                             abs(observed - expected) <= tolerance, observed, float(expected)))
    return out


def _shapes(tables: _Tables, model, max_distance: float) -> list[Check]:
    out = []
    for shape in model.SHAPES:
        table, _, column = shape.column.partition(".")
        values = tables.own(table, column)
        mask = tables.mask(table, shape.where)
        if mask is not None:
            values = pc.filter(values, mask)
        x = values.to_numpy().astype(np.float64)
        name = f"shape {shape.column} is {shape.family}" + (f" ({', '.join(shape.where)})" if shape.where else "")
        if len(x) < MIN_SHAPE_ROWS:  # e.g. no clean runs in a world where every PR regresses
            out.append(Check(name, "KS distance", f"not applicable: {len(x)} rows where {', '.join(shape.where)}",
                             True))
            continue
        if shape.family == "lognormal":
            logs = np.log(x)
            distance = stats.kstest(logs, "norm", args=(logs.mean(), logs.std())).statistic
        else:
            mean, var = x.mean(), x.var()
            common = mean * (1 - mean) / var - 1
            distance = stats.kstest(x, "beta", args=(mean * common, (1 - mean) * common)).statistic
        # On small samples the KS distance of even a perfect fit exceeds a fixed bound:
        # allow its 1 % critical value, 1.63 / sqrt(n), when that is larger.
        bound = max(max_distance, 1.63 / math.sqrt(max(len(x), 1)))
        out.append(Check(name, f"KS distance < {bound:.3f}", f"{distance:.4f} (n={len(x):,})", distance < bound))
    return out


def _signatures(tables: _Tables, model, fixed: set[str]) -> list[Check]:
    """The model's causal signatures; ``fixed`` are the columns a ``do`` set to one value."""
    out = []
    for sig in model.SIGNATURES:
        table, _, column = sig.column.partition(".")
        name = f"signature {sig.column} {sig.direction} when {sig.by}"
        if column in fixed:  # e.g. no_regressions: the effect's outcome is a constant
            out.append(Check(name, f"mean {sig.direction}", f"not checked: do({column}) fixes it", True))
            continue
        values = tables.own(table, column).to_numpy().astype(np.float64)
        by = tables.column(table, sig.by).to_numpy(zero_copy_only=False).astype(bool)
        if by.all() or not by.any():  # e.g. a twin where every PR, or none, regressed
            out.append(Check(name, f"mean {sig.direction}", f"not checked: {sig.by} is {bool(by.any())} everywhere",
                             True))
            continue
        with_, without = values[by].mean(), values[~by].mean()
        ok = with_ > without if sig.direction == "higher" else with_ < without
        out.append(Check(name, f"mean {sig.direction}", f"{with_:.4g} vs {without:.4g}", bool(ok)))
    return out


def identity_holds(identity, frame, config) -> np.ndarray:
    """Which rows of ``frame`` (a DataFrame of ``identity.table``) keep the model's ``identity``."""
    rule = re.sub(r"\{([\w.]+)\}", lambda m: repr(config.get(m.group(1))), identity.rule)
    return np.asarray(frame.eval(rule), bool)


def manifest_name(tables: _Tables) -> str:
    return f"intervention {tables.manifest['intervention']['name']}"


def as_json(checks: list[Check]) -> dict[str, Any]:
    return {"passed": all(c.passed for c in checks), "checks": [asdict(c) for c in checks]}
