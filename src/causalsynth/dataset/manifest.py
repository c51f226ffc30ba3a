"""A dataset's manifest: its format, the checks every reader makes of it, migration of older
versions, and reading the config, parts and schemas it names.

A dataset is a directory (local, or an fsspec URL such as ``s3://bucket/x``)
holding ``manifest.json`` and one directory of Parquet part files per table,
one part per block of PRs: ``flow_steps/part-000003.parquet`` holds block 3's
steps. pyarrow, pandas, Polars, DuckDB, Spark and Dask read each table
directory as one table; the manifest lists every part with its row range and
SHA-256. Datasets of format version 1 (one file per table) are still read.
"""

from __future__ import annotations

import json
from pathlib import Path, PurePosixPath
from typing import TYPE_CHECKING, Any

import pyarrow as pa

from causalsynth.config import plugins
from causalsynth.config.loading import Config, load_config
from causalsynth.dataset.location import Location, locate, unreadable
from causalsynth.errors import ConfigError, UnreadableDataset, one_line

if TYPE_CHECKING:
    import pyarrow.parquet as pq

MANIFEST = "manifest.json"
FORMAT = "causalsynth-dataset"
FORMAT_VERSION = 2

# What a manifest must hold for the code that reads it: key -> (type, what it is).
MANIFEST_KEYS: dict[str, tuple[type | tuple[type, ...], str]] = {
    "model": (dict, "an object with name and version"),
    "seed": (int, "an integer"),
    "n_prs": (int, "an integer"),
    "config": (dict, "an object (the resolved config)"),
    "intervention": (dict, "an object with name, do and set"),
    "calibration": (dict, "an object with intercepts"),
    "tables": (dict, "an object: table name -> its entry"),
}

_COMMON_TABLE_KEYS: dict[str, tuple[type | tuple[type, ...], str]] = {
    "rows": (int, "an integer"),
    "key": (str, "a column name"),
    "parent": ((dict, type(None)), "an object with table and key, or null"),
    "schema": (list, "a list of columns"),
}

# Each table's entry, by format version: version 1 has one file per table, version 2 a list of parts.
TABLE_KEYS: dict[int, dict[str, tuple[type | tuple[type, ...], str]]] = {
    1: {"file": ((str, type(None)), "a file name or null"), **_COMMON_TABLE_KEYS,
        "sha256": ((str, type(None)), "a hex digest or null")},
    2: {**_COMMON_TABLE_KEYS, "parts": ((list, type(None)), "a list of parts or null")},
}

PART_KEYS: dict[str, tuple[type | tuple[type, ...], str]] = {
    "file": (str, "a file name"),
    "first_row": (int, "an integer"),
    "rows": (int, "an integer"),
    "sha256": (str, "a hex digest"),
}


def _schema_json(schema: pa.Schema, layout) -> list[dict[str, Any]]:
    """Each column's name and Arrow type, with the levels of categorical ones."""
    levels_of = {c.name: list(c.levels) for c in layout.columns if c.levels}
    return [{"name": f.name, "type": str(f.type)} | ({"levels": levels_of[f.name]} if f.name in levels_of else {})
            for f in schema]


def manifest_bytes(manifest: dict[str, Any]) -> bytes:
    return (json.dumps(manifest, indent=2) + "\n").encode()


INNER_KEYS = {"model": ("name", "version"), "intervention": ("name", "do", "set"), "calibration": ("intercepts",)}
INTERVENTION_KEYS = ("name", "description", "do", "set")


def _json_kind(value: Any) -> str:
    return {dict: "an object", list: "a list", str: "a string", bool: "a boolean", int: "an integer",
            float: "a number", type(None): "null"}.get(type(value), type(value).__name__)


def _typed(value: Any, kind: type | tuple[type, ...]) -> bool:
    kinds = kind if isinstance(kind, tuple) else (kind,)
    return isinstance(value, kinds) and not (isinstance(value, bool) and bool not in kinds)


def _entry_problems(where: str, entry: Any, keys: dict[str, tuple[type | tuple[type, ...], str]]) -> list[str]:
    if not isinstance(entry, dict):
        return [f"{where}: expected an object, got {_json_kind(entry)}"]
    lacking = [k for k in keys if k not in entry]
    if lacking:
        return [f"{where}: missing key{'s' * (len(lacking) > 1)} {', '.join(lacking)}"]
    return [f"{where}.{key}: expected {what}, got {_json_kind(entry[key])}"
            for key, (kind, what) in keys.items() if not _typed(entry[key], kind)]


def _manifest_problems(manifest: Any) -> list[str]:
    """What keeps ``manifest`` from being read as a dataset's manifest (empty: nothing)."""
    if not isinstance(manifest, dict):
        return [f"expected a JSON object (a causalsynth manifest), got {_json_kind(manifest)}"]
    if manifest.get("format", FORMAT) != FORMAT:
        return [f"format: {manifest['format']!r} is not a causalsynth dataset ({FORMAT!r})"]
    version = manifest.get("format_version", 1)
    if not _typed(version, int) or version < 1:
        return [f"format_version: expected a positive integer, got {version!r}"]
    if version > FORMAT_VERSION:
        return [f"format_version {version}: written by a newer causalsynth; this one reads versions 1 to "
                f"{FORMAT_VERSION}"]
    missing = [k for k in MANIFEST_KEYS if k not in manifest]
    if missing:
        return [f"missing key{'s' * (len(missing) > 1)} {', '.join(missing)}"]
    problems = [f"{key}: expected {what}, got {_json_kind(manifest[key])}"
                for key, (kind, what) in MANIFEST_KEYS.items() if not _typed(manifest[key], kind)]
    if problems:
        return problems
    if not 0 <= manifest["seed"] < 2**32:
        problems.append(f"seed: expected an integer in [0, {2**32 - 1}], got {manifest['seed']}")
    if manifest["n_prs"] < 1:
        problems.append(f"n_prs: expected a positive integer, got {manifest['n_prs']}")
    if "headlines" in manifest and not (isinstance(manifest["headlines"], list)
                                        and all(isinstance(h, dict) for h in manifest["headlines"])):
        problems.append(f"headlines: expected a list of objects, got {_json_kind(manifest['headlines'])}")
    for key, inner in INNER_KEYS.items():
        lacking = [k for k in inner if k not in manifest[key]]
        if lacking:
            problems.append(f"{key}: missing key{'s' * (len(lacking) > 1)} {', '.join(lacking)}")
    intervention = manifest["intervention"]
    unknown = [k for k in intervention if k not in INTERVENTION_KEYS]
    if unknown:
        problems.append(f"intervention: unknown key{'s' * (len(unknown) > 1)} {', '.join(map(str, unknown))}; "
                        f"allowed: {', '.join(INTERVENTION_KEYS)}")
    for key in ("do", "set"):
        if key in intervention and not isinstance(intervention[key], dict):
            problems.append(f"intervention.{key}: expected an object, got {_json_kind(intervention[key])}")
    intercepts = manifest["calibration"].get("intercepts")
    if not isinstance(intercepts, dict):
        problems.append(f"calibration.intercepts: expected an object, got {_json_kind(intercepts)}")
    elif bad := [k for k, v in intercepts.items() if not _typed(v, (int, float))]:
        problems.append(f"calibration.intercepts.{bad[0]}: expected a number, got {_json_kind(intercepts[bad[0]])}")
    if not manifest["tables"]:
        problems.append("tables: no tables")
    for name, entry in manifest["tables"].items():
        where = f"tables.{name}"
        found = _entry_problems(where, entry, TABLE_KEYS[version])
        problems += found
        if found:
            continue
        if not any(isinstance(c, dict) and c.get("name") == entry["key"] for c in entry["schema"]):
            problems.append(f"{where}.key: {entry['key']!r} is none of its schema's columns")
        parent = entry["parent"]
        if isinstance(parent, dict) and not {"table", "key"} <= set(parent):
            problems.append(f"{where}.parent: expected an object with table and key")
        elif isinstance(parent, dict) and parent["table"] not in manifest["tables"]:
            problems.append(f"{where}.parent: no table {parent['table']!r} in the manifest")
        if version == 1:
            problems += _path_problems(f"{where}.file", entry["file"], None) if entry["file"] else []
            continue
        parts = entry["parts"] or []
        for i, part in enumerate(parts):
            problems += _entry_problems(f"{where}.parts[{i}]", part, PART_KEYS)
        if not problems:
            problems += _parts_problems(where, name, entry["rows"], parts)
    return problems


def _path_problems(where: str, file: str, table: str | None) -> list[str]:
    """A part's file must be a plain relative path inside its table's directory (format version 1: inside
    the dataset, ``table`` None): nothing outside the dataset is ever read."""
    path = PurePosixPath(file)
    outside = path.is_absolute() or "\\" in file or ".." in path.parts or not path.parts
    if outside or (table is not None and (len(path.parts) < 2 or path.parts[0] != table)):
        return [f"{where}: {file!r} is not a file inside the dataset" + (f"'s {table}/ directory" if table else "")]
    return []


def _parts_problems(where: str, table: str, rows: int, parts: list[dict[str, Any]]) -> list[str]:
    """The parts of one table: each file once, inside the table's directory, row ranges end to end from 0."""
    problems = [p for i, part in enumerate(parts) for p in _path_problems(f"{where}.parts[{i}].file",
                                                                           part["file"], table)]
    files = [part["file"] for part in parts]
    twice = sorted({f for f in files if files.count(f) > 1})
    if twice:
        problems.append(f"{where}.parts: {', '.join(twice)} listed more than once")
    start = 0
    for i, part in enumerate(parts):
        if part["rows"] < 0 or part["first_row"] != start:
            problems.append(f"{where}.parts[{i}]: rows {part['first_row']:,} to {part['first_row'] + part['rows']:,} "
                            f"{'overlap' if part['first_row'] < start else 'leave a gap after'} the rows before "
                            f"(which end at {start:,})")
            break
        start += part["rows"]
    else:
        if start != rows:
            problems.append(f"{where}: its parts hold {start:,} rows; the table's rows say {rows:,}")
    return problems


def _as_current(manifest: dict[str, Any]) -> dict[str, Any]:
    """A checked manifest in the current format: a version-1 table's one file becomes its one part."""
    if manifest.get("format_version", 1) >= 2:
        return manifest
    tables = {}
    for name, entry in manifest["tables"].items():
        entry = dict(entry)
        file, digest = entry.pop("file"), entry.pop("sha256")
        entry["parts"] = None if file is None else [{"file": file, "first_row": 0, "rows": entry["rows"],
                                                     "sha256": digest}]
        tables[name] = entry
    return manifest | {"tables": tables}


def read_manifest(directory: str | Path) -> dict[str, Any]:
    """The manifest of the dataset at ``directory`` (a path or URL), checked for what the code reads.

    Raises ``UnreadableDataset`` (one line naming the file and what is wrong)
    when the directory is missing or not a directory, the manifest is missing,
    unreadable, not JSON, not an object, or lacks a key the code reads. A
    version-1 manifest is returned in the current format.
    """
    location = locate(directory)
    return parse_manifest(location, manifest_bytes_at(location))


def manifest_bytes_at(location: Location) -> bytes:
    """The manifest file's bytes, as written (what a load or a twin records the SHA-256 of)."""
    try:
        if not location.exists():
            raise UnreadableDataset(f"{location.url}: not a causalsynth dataset (no such directory)")
        if not location.is_dir():
            raise UnreadableDataset(f"{location.url}: not a causalsynth dataset (not a directory)")
        return location.read_bytes(MANIFEST)
    except FileNotFoundError:
        raise UnreadableDataset(f"{location.url}: not a causalsynth dataset (no {MANIFEST})") from None
    except IsADirectoryError:
        raise UnreadableDataset(f"{location.show(MANIFEST)}: cannot be read: is a directory") from None
    except OSError as exc:
        raise UnreadableDataset(f"{location.show(MANIFEST)}: cannot be read: {exc.strerror or one_line(exc)}") from None
    except UnreadableDataset:
        raise
    except Exception as exc:  # noqa: BLE001 - a store's own errors (unreachable, no credentials) are not OSError
        raise UnreadableDataset(f"{location.show(MANIFEST)}: cannot be read: {one_line(exc)}") from None


def parse_manifest(location: Location, data: bytes) -> dict[str, Any]:
    """``data`` as a checked manifest of the dataset at ``location``, in the current format."""
    try:
        manifest = json.loads(data)
    except UnicodeDecodeError:
        raise UnreadableDataset(f"{location.show(MANIFEST)}: not valid JSON: not UTF-8 text") from None
    except json.JSONDecodeError as exc:
        raise UnreadableDataset(f"{location.show(MANIFEST)}: not valid JSON: {exc.msg} at line {exc.lineno}, "
                                f"column {exc.colno}") from None
    except RecursionError:
        raise UnreadableDataset(f"{location.show(MANIFEST)}: not a manifest: nested too deeply") from None
    problems = _manifest_problems(manifest)
    if problems:
        raise UnreadableDataset(f"{location.show(MANIFEST)}: " + "; ".join(problems))
    return _as_current(manifest)


def dataset_config(directory: str | Path, manifest: dict[str, Any]) -> Config:
    """The dataset's resolved config, validated; a bad one is the manifest's fault.

    A plug-in model is loaded only where the user named it (``plugins.trusted_model``):
    reading a dataset never imports the code its manifest names."""
    data = manifest["config"]
    try:
        spec = data.get("model") if isinstance(data, dict) else None
        if isinstance(spec, str) and plugins.is_path(spec):
            data = data | {"model": plugins.trusted_model(spec, manifest["model"].get("sha256"))}
        config = load_config(data=data)
    except ConfigError as exc:
        raise UnreadableDataset(f"{locate(directory).show(MANIFEST)}: {exc}") from None
    solved, names = set(manifest["calibration"]["intercepts"]), {c.name for c in config.model.CALIBRATION}
    if solved != names:
        raise UnreadableDataset(f"{locate(directory).show(MANIFEST)}: calibration.intercepts: expected one per "
                                f"calibrated rate of model {config.model.NAME} ({', '.join(sorted(names))}), got "
                                f"{', '.join(sorted(solved)) or 'none'}")
    return config


def table_parts(location: Location, manifest: dict[str, Any]) -> dict[str, list[dict[str, Any]]]:
    """Each table's parts (manifest entries), after checking that each is there and its footer can be read.

    Raises ``UnreadableDataset`` naming the file: a table written to a
    database only, a missing part, or one that is not readable Parquet
    (truncated, overwritten), or whose footer holds other rows or columns
    than the manifest lists (cut, or replaced by another file). A part
    whose values changed is found by its SHA-256 (``validate``, ``load``).
    """
    out = {}
    for name, entry in manifest["tables"].items():
        if entry["parts"] is None:
            raise UnreadableDataset(f"{location.url}: table {name} has no files (the dataset went to a "
                                    f"database only)")
        columns = [c.get("name") for c in entry["schema"]]
        for part in entry["parts"]:
            if not location.is_file(part["file"]):
                what = "not a file" if location.exists(part["file"]) else "missing"
                raise UnreadableDataset(f"{location.show(part['file'])}: {what} (the manifest lists it as part "
                                        f"of table {name})")
            footer = _footer(location, part["file"])
            if footer.metadata.num_rows != part["rows"] or footer.schema_arrow.names != columns:
                found = (f"{footer.metadata.num_rows:,} rows where the manifest lists {part['rows']:,}"
                         if footer.metadata.num_rows != part["rows"] else f"other columns than table {name}'s")
                raise UnreadableDataset(f"{location.show(part['file'])}: changed since it was written: it holds "
                                        f"{found}")
        out[name] = entry["parts"]
    return out


def _footer(location: Location, relative: str) -> pq.ParquetFile:
    """A Parquet file's footer; ``UnreadableDataset`` when it cannot be read."""
    try:
        return location.parquet(relative)
    except (OSError, pa.ArrowException) as exc:
        raise unreadable(location, relative, exc) from None


def read_schema(location: Location, relative: str) -> pa.Schema:
    """The Arrow schema in a Parquet file's footer; ``UnreadableDataset`` when it cannot be read."""
    return _footer(location, relative).schema_arrow

