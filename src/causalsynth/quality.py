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

Uses Arrow compute throughout; each table is read once.
"""

from __future__ import annotations

import math
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
    """The dataset's tables, each read once, and ancestor lookups over the foreign keys."""

    def __init__(self, directory: Path, manifest: dict[str, Any]):
        self.directory, self.manifest = directory, manifest
        self.cache: dict[str, pa.Table | None] = {}

    def get(self, name: str) -> pa.Table | None:
        if name not in self.cache:
            try:
                self.cache[name] = pq.read_table(self.directory / self.manifest["tables"][name]["file"])
            except (OSError, pa.ArrowException):
                self.cache[name] = None
        return self.cache[name]

    def parent(self, name: str) -> tuple[str, str] | None:
        parent = self.manifest["tables"][name]["parent"]
        return None if parent is None else (parent["table"], parent["key"])

    def column(self, table: str, ref: str) -> pa.ChunkedArray:
        """``ref`` of ``table``'s rows: its own column, or "ancestor.column" looked up through the keys."""
        ancestor, _, column = ref.rpartition(".")
        if not ancestor:
            return self.get(table).column(column)
        rows, link = None, self.parent(table)
        current = table
        while True:
            up, key = link
            fk = self.get(current).column(key) if rows is None else pc.take(self.get(current).column(key), rows)
            rows = _lookup(self.get(up).column(self.manifest["tables"][up]["key"]), fk)
            if up == ancestor:
                return pc.take(self.get(up).column(column), rows)
            current, link = up, self.parent(up)

    def mask(self, table: str, conditions: tuple[str, ...]) -> pa.ChunkedArray | None:
        mask = None
        for condition in conditions:
            negate = condition.startswith("~")
            values = self.column(table, condition.lstrip("~"))
            values = pc.invert(values) if negate else values
            mask = values if mask is None else pc.and_(mask, values)
        return mask


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
    readable = [name for name in manifest["tables"] if tables.get(name) is not None]
    checks += _completeness(tables, readable, quality["completeness"])
    checks += _consistency(tables, readable, manifest, model)
    if len(readable) == len(manifest["tables"]):
        intervened = _intervened_sites(manifest, config)
        checks += _marginals(tables, model, config, quality["tolerances"], intervened)
        checks += _shapes(tables, model, quality["max_ks_distance"])
        checks += _signatures(tables, model)
    return checks


def _integrity(directory: Path, manifest: dict, tables: _Tables) -> list[Check]:
    out = []
    for name, entry in manifest["tables"].items():
        path = directory / entry["file"]
        digest = sha256(path) if path.is_file() else "missing"
        out.append(Check(f"checksum {entry['file']}", entry["sha256"][:16] + "…", digest[:16] + "…",
                         digest == entry["sha256"]))
        table = tables.get(name)
        rows = "unreadable" if table is None else f"{table.num_rows:,}"
        out.append(Check(f"rows {name}", f"{entry['rows']:,}", rows,
                         table is not None and table.num_rows == entry["rows"]))
    return out


def _completeness(tables: _Tables, names: list[str], minimum: float) -> list[Check]:
    out = []
    for name in names:
        table = tables.get(name)
        worst, column = 1.0, "-"
        for field in table.schema:
            share = 1.0 - table.column(field.name).null_count / max(table.num_rows, 1)
            if share < worst:
                worst, column = share, field.name
        out.append(Check(f"completeness {name}", f"> {_pct(minimum)} non-null",
                         f"{_pct(worst)} ({column})" if column != "-" else "100.00%", worst > minimum))
    return out


def _consistency(tables: _Tables, names: list[str], manifest: dict, model) -> list[Check]:
    out = []
    descriptions = model.DESCRIPTIONS
    for name in names:
        table, entry = tables.get(name), manifest["tables"][name]
        keys = table.column(entry["key"])
        distinct = len(keys) if _increasing(keys.to_numpy()) else pc.count_distinct(keys).as_py()
        out.append(Check(f"unique key {name}.{entry['key']}", "100%", _pct(distinct / max(len(keys), 1)),
                         distinct == len(keys)))
        parent = tables.parent(name)
        if parent is not None and tables.get(parent[0]) is not None:
            up_keys = tables.get(parent[0]).column(manifest["tables"][parent[0]]["key"])
            found = table.num_rows - _lookup(up_keys, table.column(parent[1])).null_count
            out.append(Check(f"foreign key {name}.{parent[1]} → {parent[0]}", "100%",
                             _pct(found / max(table.num_rows, 1)), found == table.num_rows))
            out += _time_order(tables, name, parent[0], manifest)
        for field in entry["schema"]:
            unit = _unit(descriptions, name, field["name"])
            if unit is None or not field["type"].startswith(("float", "double", "int")):
                continue
            low, high = pc.min_max(table.column(field["name"])).values()
            low, high = low.as_py(), high.as_py()
            if unit == "(0-1)":
                ok = low is not None and 0.0 <= low and high <= 1.0
                out.append(Check(f"range {name}.{field['name']}", "in [0, 1]", f"[{low:.4g}, {high:.4g}]", ok))
            else:
                ok = low is not None and low > 0.0
                out.append(Check(f"range {name}.{field['name']}", "> 0 ms", f"min {low:.4g}", ok))
    return out


def _unit(descriptions: dict[str, str], table: str, column: str) -> str | None:
    """The range the data dictionary states for a column: "(0-1)", "(ms)" or None."""
    for site, text in descriptions.items():
        if site.rpartition(".")[2] == column and ("(0-1)" in text or "(ms)" in text):
            return "(0-1)" if "(0-1)" in text else "(ms)"
    return None


def _time_order(tables: _Tables, child: str, parent: str, manifest: dict) -> list[Check]:
    def first_time(name):
        return next((f["name"] for f in manifest["tables"][name]["schema"] if f["type"].startswith("timestamp")),
                    None)

    child_time, parent_time = first_time(child), first_time(parent)
    if child_time is None or parent_time is None:
        return []
    mine = tables.get(child).column(child_time)
    theirs = tables.column(child, f"{parent}.{parent_time}")
    late = pc.sum(pc.less(mine, theirs)).as_py() or 0
    return [Check(f"time order {parent}.{parent_time} ≤ {child}.{child_time}", "100%",
                  _pct(1 - late / max(len(mine), 1)), late == 0)]


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
        values = tables.get(table).column(column)
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
        values = tables.get(table).column(column)
        mask = tables.mask(table, shape.where)
        if mask is not None:
            values = pc.filter(values, mask)
        x = values.to_numpy().astype(np.float64)
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
        out.append(Check(f"shape {shape.column} is {shape.family}" + (f" ({', '.join(shape.where)})"
                                                                     if shape.where else ""),
                         f"KS distance < {bound:.3f}", f"{distance:.4f} (n={len(x):,})", distance < bound))
    return out


def _signatures(tables: _Tables, model) -> list[Check]:
    out = []
    for sig in model.SIGNATURES:
        table, _, column = sig.column.partition(".")
        values = tables.get(table).column(column).to_numpy(zero_copy_only=False).astype(np.float64)
        by = tables.column(table, sig.by).to_numpy(zero_copy_only=False).astype(bool)
        if by.all() or not by.any():  # e.g. a twin where every PR, or none, regressed
            out.append(Check(f"signature {sig.column} {sig.direction} when {sig.by}", f"mean {sig.direction}",
                             f"not checked: {sig.by} is {bool(by.any())} everywhere", True))
            continue
        with_, without = values[by].mean(), values[~by].mean()
        ok = with_ > without if sig.direction == "higher" else with_ < without
        out.append(Check(f"signature {sig.column} {sig.direction} when {sig.by}",
                         f"mean {sig.direction}", f"{with_:.4g} vs {without:.4g}", bool(ok)))
    return out


def manifest_name(tables: _Tables) -> str:
    return f"intervention {tables.manifest['intervention']['name']}"


def as_json(checks: list[Check]) -> dict[str, Any]:
    return {"passed": all(c.passed for c in checks), "checks": [asdict(c) for c in checks]}
