"""Row-level checks of `causalsynth validate`: structure, domains and identities.

Each check counts the rows (or parents) that break it, and each is derived
from the model program, not from prose:

- structure: each table's Arrow schema is the one the model writes; keys are
  1, 2, … in row order (increasing, for a variable-length plate); each row sits
  under the parent its key was written under; every parent has exactly its
  plate's size of children (between the table's ``min_rows`` and the slot grid,
  for a variable-length plate); each row's first timestamp is not before its
  parent's; a table's number label is its key in the declared format;
- domains: every number within its site's support (``Column.domain``: a
  distribution's support, or what a computed site declares), every category
  one of its declared levels; a column the model does not bound says so;
- identities: the model's ``IDENTITIES``, rules over a table's rows, its
  ancestors' columns and its ``ROLLUPS`` of its children.

Each table is read once, in chunks of rows, children before parents (a
parent's roll-ups come from its children's pass); parents' keys and the
ancestor columns rules read are the only whole columns held.
"""

from __future__ import annotations

import re
from collections.abc import Callable, Iterable, Mapping
from typing import Any

import numpy as np
import pandas as pd
import pyarrow as pa

from causalsynth.dataset.reading import DatasetFiles, UnreadableTable, as_numpy, lookup
from causalsynth.engine.program import Program, TableLayout
from causalsynth.engine.tabulate import table_schema
from causalsynth.validate.checks import Check, not_applicable, not_run

# What a check that cannot run raises: it is reported as not run, never dropped.
CHECK_ERRORS = (UnreadableTable, KeyError, ValueError, TypeError, IndexError, AttributeError, SyntaxError,
                NameError, pa.ArrowException, OSError)


def guarded(name: str, expected: str, run: Callable[[], list[Check]]) -> list[Check]:
    """``run()``'s checks, or one failed check saying why it could not run."""
    try:
        return run()
    except CHECK_ERRORS as exc:
        return [not_run(name, expected, exc)]


def _count(n: int, of: int, what: str = "rows") -> str:
    return f"{n:,} of {of:,} {what}"


def _first_time(layout: TableLayout | None) -> str | None:
    return None if layout is None else next((c.name for c in layout.columns if c.kind == "timestamp"), None)


class Chunk:
    """Consecutive rows of one table, starting at row ``offset``; columns converted once
    (``as_numpy``) however many checks read them, ancestors' looked up once."""

    def __init__(self, files: DatasetFiles, table: str, offset: int, batch: pa.Table):
        self.files, self.table, self.offset, self.batch = files, table, offset, batch
        self.num_rows = batch.num_rows
        self._values: dict[str, Any] = {}

    def __getitem__(self, column: str):
        if column not in self._values:
            if column in self.batch.schema.names:
                self._values[column] = as_numpy(self.batch.column(column))
            else:  # "ancestor.column"
                self._values[column] = ancestor_values(self.files, self.table, column,
                                                       self[self.files.parent(self.table)[1]])
        return self._values[column]


def ancestor_values(files: DatasetFiles, table: str, ref: str, fk: np.ndarray):
    """Column "ancestor.column" for rows of ``table`` whose parent keys are ``fk``."""
    ancestor, _, column = ref.rpartition(".")
    rows = files.rows_of(table, ancestor, fk)
    values = files.values(ancestor, column)[np.maximum(rows, 0)]  # orphans read row 0: the foreign key check fails
    return np.where(rows >= 0, values, np.nan) if values.dtype.kind == "f" else values


class _Accumulator:
    """Checks fed a table's chunks in order. An error while adding marks them not run."""

    columns: set[str] = set()

    def __init__(self):
        self.error: Exception | None = None

    def feed(self, chunk: Chunk) -> None:
        if self.error is None:
            try:
                self.add(chunk)
            except CHECK_ERRORS as exc:
                self.error = exc

    def add(self, chunk: Chunk) -> None:
        raise NotImplementedError

    def results(self) -> list[Check]:
        raise NotImplementedError

    def checks(self) -> list[Check]:
        if self.error is None:
            try:
                return self.results()
            except CHECK_ERRORS as exc:
                self.error = exc
        return self.not_run(self.error)

    def not_run(self, error: Exception) -> list[Check]:
        raise NotImplementedError


# --- structure --------------------------------------------------------------------

def schema_check(files: DatasetFiles, layout: TableLayout) -> list[Check]:
    name = layout.table.name
    expected, found = table_schema(layout), files.file(name).schema_arrow
    if found.equals(expected, check_metadata=False):
        return [Check(f"schema {name}", "the model's columns and types", f"{len(found)} columns", True)]
    want, have = {f.name: f.type for f in expected}, {f.name: f.type for f in found}
    problems = ([f"missing {c}" for c in want if c not in have] + [f"extra {c}" for c in have if c not in want]
                + [f"{c} is {have[c]}, not {t}" for c, t in want.items() if c in have and have[c] != t])
    return [Check(f"schema {name}", "the model's columns and types", "; ".join(problems) or "column order differs",
                  False)]


class _Structure(_Accumulator):
    """Keys, parents and children per parent as the model writes them, and time order."""

    def __init__(self, files: DatasetFiles, program: Program, layout: TableLayout, n_prs: int):
        super().__init__()
        self.files, self.layout, self.n_prs = files, layout, n_prs
        self.name, self.key, self.parent = layout.table.name, layout.table.key, layout.parent
        self.masked = layout.mask_site is not None
        self.fk = self.parent.key if self.parent else None
        self.time = _first_time(layout)
        self.up_time = _first_time(program.table(self.parent.name)) if self.parent else None
        if not (self.time and self.up_time):
            self.time = self.up_time = None
        self.number = layout.table.number  # (column, printf template of the key)
        self.columns = ({self.key} | ({self.fk} if self.fk else set()) | ({self.time} if self.time else set())
                        | ({self.number[0]} if self.number else set()))
        self._children: np.ndarray | None = None  # per parent row; the parent's file is opened on first use
        self.misplaced = self.misparented = self.orphans = self.late = self.misnumbered = self.n = 0
        self.previous = 0

    @property
    def children(self) -> np.ndarray:
        if self._children is None:
            self._children = np.zeros(self.files.rows(self.parent.name) if self.parent else 1, np.int64)
        return self._children

    @property
    def n_parents(self) -> int:
        return len(self.children)

    def add(self, chunk: Chunk) -> None:
        k = chunk[self.key]
        self.n += len(k)
        if self.masked:
            self.misplaced += int(np.count_nonzero(k <= np.r_[self.previous, k[:-1]]))
            self.previous = k[-1] if len(k) else self.previous
        else:
            self.misplaced += int(np.count_nonzero(k != np.arange(chunk.offset + 1, chunk.offset + 1 + len(k))))
        if self.number:
            written = np.asarray(chunk[self.number[0]], dtype=str)
            self.misnumbered += int(np.count_nonzero(written != np.char.mod(self.number[1], k)))
        if self.parent is None:
            return
        fk = chunk[self.fk]
        self.misparented += int(np.count_nonzero(fk != (k - 1) // self.layout.inner_size + 1))
        rows = lookup(self.files.keys(self.parent.name), fk)
        found = rows >= 0
        self.orphans += int(np.count_nonzero(~found))
        self._children = self.children + np.bincount(rows[found], minlength=self.n_parents)
        if self.time:
            theirs = self.files.values(self.parent.name, self.up_time)[rows[found]]
            self.late += int(np.count_nonzero(chunk[self.time][found] < theirs))

    def _names(self) -> list[str]:
        names = [f"unique key {self.name}.{self.key}", f"keys as written {self.name}.{self.key}"]
        if self.number:
            names.append(f"number {self.name}.{self.number[0]}")
        if self.parent is None:
            return names + [f"rows {self.name} per dataset"]
        names += [f"foreign key {self.name}.{self.fk} → {self.parent.name}", f"parent as written {self.name}.{self.fk}",
                  f"rows per parent {self.parent.name} → {self.name}"]
        return names + ([f"time order {self.parent.name}.{self.up_time} ≤ {self.name}.{self.time}"] * bool(self.time))

    def not_run(self, error: Exception) -> list[Check]:
        return [not_run(name, "as the model writes it", error) for name in self._names()]

    def results(self) -> list[Check]:
        names, n = iter(self._names()), self.n
        distinct = n if self.misplaced == 0 else len(np.unique(self.files.keys(self.name)))
        order = "increasing in row order (a variable-length plate)" if self.masked else "1, 2, 3, … in row order"
        out = [Check(next(names), "100%", f"{distinct / max(n, 1):.2%}", distinct == n),
               Check(next(names), order, "all in place" if not self.misplaced
                     else f"{_count(self.misplaced, n)} out of place", self.misplaced == 0)]
        if self.number:
            out.append(Check(next(names), f"{self.number[1]} of {self.key}", "every row" if not self.misnumbered
                             else f"{_count(self.misnumbered, n)} differ", self.misnumbered == 0))
        if self.parent is None:
            out.append(Check(next(names), f"{self.n_prs:,} (the manifest's n_prs)", f"{n:,}", n == self.n_prs))
            return out
        size = self.layout.inner_size
        low = self.layout.table.min_rows if self.masked else size
        wrong = int(np.count_nonzero((self.children < low) | (self.children > size)))
        seen = f"{self.children.min()} to {self.children.max()}" if self.n_parents else "none"
        out += [
            Check(next(names), "100%", f"{1 - self.orphans / max(n, 1):.2%}", self.orphans == 0),
            Check(next(names), "each row under the parent its key was written under",
                  "all in place" if not self.misparented else f"{_count(self.misparented, n)} under another parent",
                  self.misparented == 0),
            Check(next(names), f"exactly {size}" if low == size else f"{low} to {size}",
                  f"all {self.n_parents:,} parents" if not wrong
                  else f"{_count(wrong, self.n_parents, 'parents')} outside (counts {seen})", wrong == 0),
        ]
        if self.time:
            out.append(Check(next(names), "every row",
                             "every row" if not self.late else f"{_count(self.late, n)} before their parent",
                             self.late == 0))
        return out


class _Refs(_Accumulator):
    """Each ``Table.refs`` column points at a row that exists under the same parent, never a later
    one of its own table, and at one no later in time; a reference to the table's own rows is null
    at exactly one row per parent (its tree's root), one to a sibling table never is."""

    def __init__(self, files: DatasetFiles, program: Program, layout: TableLayout):
        super().__init__()
        self.files, self.layout = files, layout
        self.name, self.key, self.fk = layout.table.name, layout.table.key, layout.parent.key
        self.time = _first_time(layout)
        self.columns = {self.key, self.fk, *(ref.column for ref, _ in layout.refs)} | (
            {self.time} if self.time else set())
        self.targets = {ref.column: program.table(ref.table) for ref, _ in layout.refs}
        self.counts = {ref.column: dict(dangling=0, later=0, late=0, n=0) for ref, _ in layout.refs}
        self.roots: dict[str, np.ndarray] = {}

    def add(self, chunk: Chunk) -> None:
        key, fk = chunk[self.key], chunk[self.fk]
        for ref, size in self.layout.refs:
            column = chunk.batch.column(ref.column).combine_chunks()
            valid = column.is_valid().to_numpy(zero_copy_only=False)
            target, counts = self.targets[ref.column], self.counts[ref.column]
            if ref.table == self.name:
                parents = self.files.rows(self.layout.parent.name)
                self.roots[ref.column] = self.roots.get(ref.column, np.zeros(parents, np.int64)) + np.bincount(
                    fk[~valid] - 1, minlength=parents)
            points = column.fill_null(0).to_numpy(zero_copy_only=False)[valid]
            rows = lookup(self.files.keys(ref.table), points)
            found = (rows >= 0) & ((points - 1) // size + 1 == fk[valid])
            counts["n"] += len(points)
            counts["dangling"] += int(np.count_nonzero(~found))
            if ref.table == self.name:
                counts["later"] += int(np.count_nonzero(points >= key[valid]))
            else:
                counts["dangling"] += int(np.count_nonzero(~valid))
            there = _first_time(target)
            if self.time and there:
                theirs = self.files.values(ref.table, there)[rows[found]]
                counts["late"] += int(np.count_nonzero(chunk[self.time][valid][found] < theirs))

    def _names(self) -> list[str]:
        names = []
        for ref, _ in self.layout.refs:
            names.append(f"reference {self.name}.{ref.column} → {ref.table}")
            if ref.table == self.name:
                names += [f"tree {self.name}.{ref.column}"]
            if self.time and _first_time(self.targets[ref.column]):
                names.append(f"time order {ref.table} ≤ {self.name} by {ref.column}")
        return names

    def not_run(self, error: Exception) -> list[Check]:
        return [not_run(name, "as the model writes it", error) for name in self._names()]

    def results(self) -> list[Check]:
        out, names = [], iter(self._names())
        for ref, _ in self.layout.refs:
            c = self.counts[ref.column]
            own = ref.table == self.name
            out.append(Check(next(names), f"a {ref.table} row under the same {self.layout.parent.name} row"
                             + ("" if own else ", in every row"),
                             "every reference" if not c["dangling"] else f"{_count(c['dangling'], c['n'])} dangling",
                             c["dangling"] == 0))
            if own:
                roots = self.roots.get(ref.column, np.zeros(0, np.int64))
                wrong = int(np.count_nonzero(roots != 1))
                out.append(Check(next(names), f"one root per {self.layout.parent.name} row, every other row "
                                 f"pointing at an earlier one", "every tree" if not (wrong or c["later"]) else
                                 f"{wrong:,} parents without exactly one root, {c['later']:,} rows pointing on",
                                 wrong == 0 and c["later"] == 0))
            if self.time and _first_time(self.targets[ref.column]):
                out.append(Check(next(names), "every row", "every row" if not c["late"]
                                 else f"{_count(c['late'], c['n'])} before the row they point at", c["late"] == 0))
        return out


# --- domains ------------------------------------------------------------------------

class _Domains(_Accumulator):
    """Every number within its site's support, every category one of its levels."""

    def __init__(self, layout: TableLayout):
        super().__init__()
        self.name = layout.table.name
        self.layout = layout
        self.numbers = [c for c in layout.columns if c.kind in ("int", "float") and c.domain is not None]
        self.categories = [c for c in layout.columns if c.kind == "category"]
        self.columns = {c.name for c in self.numbers + self.categories}
        self.outside = dict.fromkeys(self.columns, 0)
        self.low = {c.name: np.inf for c in self.numbers}
        self.high = {c.name: -np.inf for c in self.numbers}
        self.strangers: dict[str, set[str]] = {c.name: set() for c in self.categories}
        self.n = 0

    def add(self, chunk: Chunk) -> None:
        self.n += chunk.num_rows
        for c in self.numbers:
            x = chunk[c.name]
            self.outside[c.name] += int(np.count_nonzero(c.domain.outside(x)))
            if len(x) and not np.isnan(x).all():
                self.low[c.name] = min(self.low[c.name], np.nanmin(x))
                self.high[c.name] = max(self.high[c.name], np.nanmax(x))
        for c in self.categories:
            values = chunk[c.name]
            known = np.isin(np.asarray(values.categories, object), c.levels)
            stray = (values.codes < 0) | ~known[values.codes]
            if stray.any():
                self.outside[c.name] += int(stray.sum())
                self.strangers[c.name].update(map(str, pd.unique(np.asarray(values, object)[stray])[:5]))

    def not_run(self, error: Exception) -> list[Check]:
        return [not_run(f"domain {self.name}.{c.name}", "its domain", error) for c in self.layout.columns
                if c.kind in ("int", "float", "category")]

    def results(self) -> list[Check]:
        out = []
        for c in self.layout.columns:
            check, bad = f"domain {self.name}.{c.name}", self.outside.get(c.name, 0)
            if c.kind in ("int", "float") and c.domain is None:
                out.append(not_applicable(check, "a bound from the model", "not bounded by the model"))
            elif c.kind in ("int", "float"):
                seen = (f" (seen {self.low[c.name]:.4g} to {self.high[c.name]:.4g})"
                        if self.low[c.name] <= self.high[c.name] else "")
                out.append(Check(check, c.domain.describe(),
                                 (f"{_count(bad, self.n)} outside" if bad else "every row") + seen, bad == 0))
            elif c.kind == "category":
                stray = ", ".join(sorted(self.strangers[c.name]))
                out.append(Check(check, "one of " + ", ".join(c.levels),
                                 f"{_count(bad, self.n)} are not: {stray}" if bad else "every row", bad == 0))
        return out


# --- identities and their roll-ups -------------------------------------------------------

def _rule_text(rule: str, config) -> str:
    return re.sub(r"\{([\w.]+)\}", lambda m: repr(config.get(m.group(1))), rule)


def evaluate(rule: str | Callable, columns: Mapping[str, Any], config) -> np.ndarray:
    """A rule (or roll-up expression) over ``columns`` (name → one value per row): one value per row.

    Expressions go through ``pandas.eval`` over the arrays themselves (no
    DataFrame: building one per chunk costs more than the rule);
    `` `table.column` `` names are spelled as identifiers for it.
    """
    n = len(next(iter(columns.values()))) if columns else 0
    if callable(rule):
        return np.asarray(rule(columns, config))
    text = re.sub(r"`([^`]+)`", lambda m: _identifier(m.group(1)), _rule_text(rule, config))
    result = pd.eval(text, local_dict={_identifier(k): v for k, v in columns.items()}, engine="python")
    if np.isscalar(result):  # a constant expression ("True"): one per row
        return np.full(n, result)
    return result if isinstance(result, pd.Categorical) else np.asarray(result)


def _identifier(name: str) -> str:
    return name.replace(".", "__")


def reads(rule: str | Callable, columns: Iterable[str] = ()) -> set[str]:
    """Column names a rule reads: backquoted ("table.column") and bare identifiers."""
    if callable(rule):
        return set(columns)
    bare = re.sub(r"`[^`]+`|'[^']*'", " ", rule)
    return set(re.findall(r"`([^`]+)`", rule)) | set(re.findall(r"[A-Za-z_]\w*", bare))


def _columns(chunk: Chunk, names: Iterable[str], extra: dict[str, Any] | None = None) -> dict[str, Any]:
    return {name: chunk[name] for name in names} | (extra or {})


class _Rollups(_Accumulator):
    """The roll-ups of one child table into its parent's rows."""

    def __init__(self, files: DatasetFiles, child: str, declared, config, available: set[str]):
        super().__init__()
        self.files, self.child, self.declared, self.config = files, child, declared, config
        self.parent, self.fk = files.parent(child)
        for r in declared:
            if r.table != self.parent:
                raise ValueError(f"roll-up {r.name}: {child} is a child of {self.parent}, not of {r.table}")
            if r.how not in ("count", "last", "nondecreasing"):
                raise ValueError(f"roll-up {r.name}: how={r.how!r}; allowed are count, last, nondecreasing")
        names = set().union(*(reads(r.expr) for r in declared))
        self.reads = sorted(c for c in names if c in available or ("." in c and c.split(".")[0] != child))
        self.columns = {self.fk} | (names & available)
        self.values: dict[str, np.ndarray] = {}
        self.carry: dict[str, tuple[int, Any]] = {}
        self.n = 0

    def start(self) -> dict[str, np.ndarray]:
        """The roll-ups' arrays, one value per parent row (made on first use: the parent's file is read)."""
        if not self.values:
            self.n = self.files.rows(self.parent)
            self.seen = np.zeros(self.n, np.int64)
            for r in self.declared:
                self.values[r.name] = np.zeros(self.n, np.int64) if r.how == "count" else np.ones(self.n, bool)
        return self.values

    def add(self, chunk: Chunk) -> None:
        self.start()
        rows = lookup(self.files.keys(self.parent), chunk[self.fk])
        ok = rows >= 0
        rows = rows[ok]
        starts = np.flatnonzero(np.r_[True, rows[1:] != rows[:-1]]) if len(rows) else np.zeros(0, np.int64)
        rank = np.arange(len(rows)) - np.repeat(starts, np.diff(np.r_[starts, len(rows)]))
        columns = _columns(chunk, self.reads)
        if not ok.all():
            columns = {name: values[ok] for name, values in columns.items()}
        columns["row_in_parent"] = self.seen[rows] + rank
        self.seen += np.bincount(rows, minlength=self.n)
        for r in self.declared:
            self._add(r, rows, evaluate(r.expr, columns, self.config))

    def _add(self, r, rows: np.ndarray, values) -> None:
        out = self.values[r.name]
        if r.how == "count":
            out += np.bincount(rows[np.asarray(values, bool)], minlength=self.n)
        elif r.how == "last":
            values = np.asarray(values, object) if isinstance(values, pd.Categorical) else np.asarray(values)
            if out.dtype != values.dtype:  # the first chunk sets the type (a step type, a flag)
                out = self.values[r.name] = np.full(self.n, None, object) if values.dtype == object \
                    else np.zeros(self.n, values.dtype)
            last = np.r_[rows[1:] != rows[:-1], True]
            out[rows[last]] = values[last]
        elif len(rows):
            values = np.asarray(values)
            same = rows[1:] == rows[:-1]
            out[rows[1:][same & (values[1:] < values[:-1])]] = False
            carry = self.carry.get(r.name)
            if carry is not None and carry[0] == rows[0] and values[0] < carry[1]:
                out[rows[0]] = False
            self.carry[r.name] = (rows[-1], values[-1])

    def results(self) -> list[Check]:
        return []

    def not_run(self, error: Exception) -> list[Check]:
        return []


class _Identities(_Accumulator):
    """The model's identities of one table, with the count of rows breaking each."""

    def __init__(self, name: str, identities, available: set[str], rolled: dict[str, np.ndarray],
                 broken: dict[str, Exception], config, parent_key: str | None = None):
        super().__init__()
        self.name, self.config, self.rolled = name, config, rolled
        self.identities = identities
        self.needs = {i.name: reads(i.rule, i.columns) for i in identities}
        self.failed: dict[str, Exception] = {}
        for i in identities:
            missing = [c for c in self.needs[i.name] if c in broken]
            if missing:
                self.failed[i.name] = broken[missing[0]]
        wanted = set().union(*self.needs.values()) if identities else set()
        self.own = sorted(wanted & available)
        self.ancestors = sorted(c for c in wanted if "." in c and c not in available)
        self.rollups = sorted(wanted & set(rolled))
        self.columns = set(self.own) | ({parent_key} if parent_key and self.ancestors else set())
        self.bad = {i.name: 0 for i in identities}
        # A function's declared columns that this dataset does not write (the series' ground truth, when
        # sampled without --series): n/a, as an expression naming an absent column is.
        self.absent: dict[str, Exception] = {
            i.name: NameError(f"name {missing[0]!r} is not defined") for i in identities if callable(i.rule)
            for missing in [[c for c in i.columns if "." not in c and c not in available and c not in rolled]]
            if missing}
        self.n = 0

    def add(self, chunk: Chunk) -> None:
        rolled = {c: self.rolled[c][chunk.offset:chunk.offset + chunk.num_rows] for c in self.rollups}
        self.n += chunk.num_rows
        for i in self.identities:
            if i.name in self.failed or i.name in self.absent:
                continue
            try:
                # A frame of just the rule's columns: pandas' eval costs grow with the frame's width.
                needs = self.needs[i.name]
                columns = _columns(chunk, [c for c in self.own + self.ancestors if c in needs],
                                   {c: v for c, v in rolled.items() if c in needs})
                holds = np.asarray(evaluate(i.rule, columns, self.config), bool)
                self.bad[i.name] += int(np.count_nonzero(~holds))
            except NameError as exc:  # a column this config does not write (the series' ground truth)
                self.absent[i.name] = exc
            except CHECK_ERRORS as exc:
                self.failed[i.name] = exc

    def not_run(self, error: Exception) -> list[Check]:
        return [not_run(f"identity {self.name}: {i.name}", "every row", error) for i in self.identities]

    def results(self) -> list[Check]:
        out = []
        for i in self.identities:
            check, bad = f"identity {self.name}: {i.name}", self.bad[i.name]
            if i.name in self.failed:
                out.append(not_run(check, "every row", self.failed[i.name]))
            elif i.name in self.absent:
                out.append(not_applicable(check, "every row", f"not in this dataset: {self.absent[i.name]}"))
            else:
                out.append(Check(check, "every row", f"{_count(bad, self.n)} break it" if bad else "every row",
                                 bad == 0))
        return out


# --- one pass per table ------------------------------------------------------------------

def row_checks(files: DatasetFiles, program: Program, config, n_prs: int) -> dict[str, list[Check]]:
    """Structure, domain and identity checks of every table: table name → checks."""
    model = config.model
    declared = getattr(model, "ROLLUPS", ())
    rolled: dict[str, np.ndarray] = {}
    broken: dict[str, Exception] = {}
    out: dict[str, list[Check]] = {}
    for layout in reversed(program.tables):  # children first: their roll-ups feed their parents' identities
        name = layout.table.name
        identities = [i for i in model.IDENTITIES if i.table == name]
        rollup_names = [r.name for r in declared if r.child == name]
        try:
            available = set(files.file(name).schema_arrow.names)
        except UnreadableTable as exc:
            broken.update(dict.fromkeys(rollup_names, exc))
            out[name] = (_Structure(files, program, layout, n_prs).not_run(exc) + _Domains(layout).not_run(exc)
                         + (_Refs(files, program, layout).not_run(exc) if layout.refs else [])
                         + _Identities(name, identities, set(), {}, {}, config).not_run(exc))
            continue
        accumulators: list[_Accumulator] = [_Structure(files, program, layout, n_prs), _Domains(layout)]
        if layout.refs:
            accumulators.append(_Refs(files, program, layout))
        children = [r for r in declared if r.child == name]
        rollups = _Rollups(files, name, children, config, available) if children else None
        identity_pass = _Identities(name, identities, available, rolled, broken, config,
                                    (files.parent(name) or (None, None))[1])
        accumulators += [a for a in (rollups, identity_pass) if a is not None]
        columns = sorted(set().union(*(a.columns for a in accumulators)) & available)
        try:
            for offset, batch in files.chunks(name, columns):
                chunk = Chunk(files, name, offset, batch)
                for accumulator in accumulators:
                    accumulator.feed(chunk)
        except UnreadableTable as exc:
            for accumulator in accumulators:
                accumulator.error = accumulator.error or exc
        if rollups is not None:
            try:
                rolled.update(rollups.start() if rollups.error is None else {})
            except CHECK_ERRORS as exc:
                rollups.error = exc
            if rollups.error is not None:
                broken.update(dict.fromkeys(rollup_names, rollups.error))
        out[name] = [c for a in accumulators for c in a.checks()]
    return out
