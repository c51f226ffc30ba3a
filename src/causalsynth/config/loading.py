"""Load, merge, override and validate a model config, once, at the edge.

The engine's ``configs/engine.yaml`` joined with the model's own defaults (its
``DEFAULTS`` file: ``configs/default.yaml`` for the shipped model) are both the
defaults and the schema: a user file (``--config``) or an override (``--set
dotted.key=value``) may only name keys that exist there, and each value must
have the default's type. The value rules (probabilities, shares, positive
scales) are read from key names, as the header of ``engine.yaml`` documents,
and so are the relations
between keys (a ``min_X`` below its ``max_X``, ``*_thresholds`` in
decreasing order). Every problem found is reported in one message of one
line, each problem naming its YAML path.
"""

from __future__ import annotations

import difflib
import fnmatch
import functools
import math
import re
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from datetime import date
from importlib import resources
from pathlib import Path
from types import ModuleType
from typing import Any

import yaml

from causalsynth.config import plugins, yamltext
from causalsynth.errors import ConfigError
from causalsynth.spec.params import Params

# Top-level sections that steer the engine rather than feed the model.
ENGINE_KEYS = ("version", "model", "sampling", "ml", "quality")
PROBABILITY_KEYS = ("rate", "*_rate", "*_probability", "*_share", "*_success", "*_usage",
                    "accuracy", "balanced_accuracy", "precision", "recall", "f1", "roc_auc", "pr_auc",
                    "completeness", "*_distance")
PROBABILITY_PARENTS = ("*_thresholds", "*_loss", "tolerances")
POSITIVE_KEYS = ("*_sd", "*_ms", "*_rps", "*_days", "*_hours", "*_lines", "*_rows", "*_s", "*concentration")
POSITIVE_PARENTS = ("*_scale", "*_factor", "*_count", "shape", "sampling")
SHARES_TOLERANCE = 1e-6
# Seeds are 32-bit: JAX keys wrap larger ones (2**32 would give the data of seed 0).
MAX_SEED = 2**32 - 1


@dataclass(frozen=True)
class Config:
    """A validated configuration.

    ``data`` is the resolved plain config (what the manifest records);
    ``params`` is what the model reads: the model sections as a pytree.
    """

    data: dict[str, Any]
    model: ModuleType

    @functools.cached_property
    def expanded(self) -> dict[str, Any]:
        """``data`` with what it implies written out by the model (``expand``: a generated service
        graph's services in every per-service mapping): what the model and the tasks read."""
        return self.model.expand(self.data)

    def with_overrides(self, overrides: Iterable[str], source: str = "--set") -> Config:
        """This config with ``dotted.key=value`` overrides applied and validated.

        ``source`` names where the overrides came from in error messages. With none, this config
        itself: it was validated when it was made.
        """
        overrides = list(overrides)
        return load_config(data=self.data, overrides=overrides, source=source) if overrides else self

    @property
    def params(self) -> Params:
        """The model sections, plus ``sampling.start`` (static: the model's calendar counts from it)."""
        model = {k: v for k, v in self.expanded.items() if k not in ENGINE_KEYS}
        return Params(_frozen(model | {"sampling": {"start": self.data["sampling"]["start"]}}))

    @property
    def sampling(self) -> Mapping[str, Any]:
        return self.data["sampling"]

    def get(self, path: str) -> Any:
        node: Any = self.expanded
        for part in path.split("."):
            node = node[part]
        return node


def engine_defaults() -> dict[str, Any]:
    return yamltext.safe_load(resources.files("causalsynth.configs").joinpath("engine.yaml").read_text())


def _union(base: Mapping[str, Any], over: Mapping[str, Any]) -> dict[str, Any]:
    """``base`` with ``over``'s keys added and its values in place of base's, section by section."""
    out = dict(base)
    for key, value in over.items():
        both = isinstance(out.get(key), Mapping) and isinstance(value, Mapping)
        out[key] = _union(out[key], value) if both else value
    return out


def _model_spec(given: Any, overrides: Iterable[str], base: Path, default: str, own: bool) -> str:
    """The model a config names: its last ``--set model=``, else its own ``model``, else ``default``.

    A plug-in named by the user (``own``: their config file; or a ``--set``) is trusted to run
    (``plugins.trust``); one named by other data (a manifest) is not."""
    spec = default
    if isinstance(given, Mapping) and isinstance(given.get("model"), str):
        spec = given["model"]
    for item in overrides:
        key, sep, raw = item.partition("=")
        if sep and key.strip() == "model":
            spec, base, own = raw.strip(), Path.cwd(), True
    spec = plugins.resolve(spec, base)
    if own and plugins.is_path(spec):
        plugins.trust(spec)
    return spec


def load_config(
    path: str | Path | None = None,
    overrides: Iterable[str] = (),
    *,
    data: Mapping[str, Any] | None = None,
    source: str = "--set",
) -> Config:
    """The default config, with ``path``'s values (or ``data``'s) and then ``overrides`` applied.

    ``overrides`` are ``"dotted.key=value"`` strings; values are YAML scalars.
    ``data`` is a resolved config, such as a manifest's. Raises
    ``ConfigError`` naming every unknown key and every invalid value;
    ``source`` names the overrides' origin there (``--set``, a variant).
    """
    errors: list[str] = []
    given = _read_yaml(Path(path)) if path is not None else data
    engine = engine_defaults()
    spec = _model_spec(given, overrides, Path(path).parent if path is not None else Path.cwd(), engine["model"],
                       own=path is not None)
    model = plugins.load(spec)
    defaults = _union(engine, plugins.defaults(model)) | {"model": spec}
    data = defaults if given is None else _merge(defaults, given, "", errors)
    for item in overrides:
        data = _apply_override(defaults, data, item, errors, source)
    data["model"] = spec  # resolved: a model file's path made absolute, as the manifest records it
    if not errors:
        errors.extend(_check_values(data, ""))
    if not errors:
        errors.extend(_check_relations(data, ""))
    config = Config(data=data, model=model)
    if not errors:
        try:
            errors.extend(model.validate(Params(_frozen(config.expanded))))
        except ValueError as exc:  # what the config implies cannot be built: the model's message names the key
            errors.append(str(exc))
    if errors:
        raise ConfigError("invalid configuration: " + "; ".join(errors))
    return config


def _read_yaml(path: Path) -> Any:
    return yamltext.load_file(path, f"config file {path}") or {}


def _closest(key: str, known: Iterable[str]) -> str:
    match = difflib.get_close_matches(key, list(known), n=1, cutoff=0.5)
    return f" (did you mean {match[0]!r}?)" if match else ""


def _all_paths(tree: Mapping, prefix: str = "") -> list[str]:
    out = []
    for k, v in tree.items():
        out.append(prefix + k)
        if isinstance(v, Mapping):
            out.extend(_all_paths(v, prefix + k + "."))
    return out


def _merge(default: Any, given: Any, path: str, errors: list[str]) -> Any:
    """``given`` over ``default``; only keys the default has, with its types."""
    if isinstance(default, Mapping):
        if not isinstance(given, Mapping):
            errors.append(f"{path or '<root>'}: expected a mapping of {sorted(default)}, got {given!r}")
            return default
        merged = dict(default)
        for key, value in given.items():
            key = str(key)
            where = f"{path}.{key}" if path else key
            if key not in default:
                errors.append(f"{where}: unknown key{_closest(key, default)}; "
                              f"allowed here: {', '.join(map(str, default))}")
                continue
            merged[key] = _merge(default[key], value, where, errors)
        return merged
    return _coerce(default, given, path, errors)


def _coerce(default: Any, given: Any, path: str, errors: list[str]) -> Any:
    if isinstance(default, bool):
        if isinstance(given, bool):
            return given
        errors.append(f"{path}: expected true or false, got {given!r}")
        return default
    if isinstance(given, bool):  # YAML's true/false are not numbers (Python's bool is an int)
        kinds = {float: "a number", int: "a whole number", str: "a string", list: "a list"}
        expected = kinds.get(type(default), "a value")
        errors.append(f"{path}: expected {expected}, got {str(given).lower()}")
        return default
    if isinstance(default, float):
        if isinstance(given, (int, float)):
            return float(given)
        errors.append(f"{path}: expected a number, got {given!r}")
    elif isinstance(default, int):
        if isinstance(given, int):
            return given
        errors.append(f"{path}: expected a whole number, got {given!r}")
    elif isinstance(default, str):
        if isinstance(given, str):
            return given
        if isinstance(given, date):  # an unquoted YAML date or time: the string it was written as
            return given.isoformat()
        errors.append(f"{path}: expected a string, got {given!r}")
    elif isinstance(default, list):
        if isinstance(given, list):
            return given
        errors.append(f"{path}: expected a list, got {given!r}")
    return default


def _apply_override(defaults: dict, data: dict, item: str, errors: list[str], source: str = "--set") -> dict:
    key, sep, raw = item.partition("=")
    key = key.strip()
    if not sep or not key:
        errors.append(f"{source} {item!r}: expected dotted.key=value, e.g. regression.rate=0.35")
        return data
    parts = key.split(".")
    node = defaults
    for i, part in enumerate(parts):
        if not isinstance(node, Mapping) or part not in node:
            where = ".".join(parts[: i + 1])
            known = _all_paths(defaults)
            errors.append(f"{source} {key}: unknown key {where!r}{_closest(key, known)}")
            return data
        node = node[part]
    if isinstance(node, Mapping):
        errors.append(f"{source} {key}: is a section; set one of its keys: "
                      f"{', '.join(f'{key}.{k}' for k in node)}")
        return data
    try:
        value = yamltext.safe_load(raw)
    except (yaml.YAMLError, ValueError):  # ValueError: a date YAML recognises but cannot build (2026-13-45)
        value = raw
    if isinstance(node, str) and not isinstance(value, str):
        value = raw.strip()  # a string key takes the text as written (a date, a number, a level name)
    nested: Any = value
    for part in reversed(parts):
        nested = {part: nested}
    return _merge(data, nested, "", errors)


def _globs(patterns: tuple[str, ...]) -> re.Pattern:
    """One compiled pattern for shell-style ``patterns``: a config holds thousands of keys, and each
    is held to every rule (``fnmatch``, one pattern at a time, took 4.4 ms a config; this 0.6 ms)."""
    return re.compile("|".join(f"(?:{fnmatch.translate(p)})" for p in patterns))


_PROBABILITY, _POSITIVE = _globs(PROBABILITY_KEYS), _globs(POSITIVE_KEYS)
_PROBABILITY_PARENT, _POSITIVE_PARENT = _globs(PROBABILITY_PARENTS), _globs(POSITIVE_PARENTS)


def _check_values(node: Any, path: str, probabilities: bool = False, positives: bool = False,
                  in_shares: bool = False) -> list[str]:
    """The value rules of the engine.yaml header. ``probabilities`` and ``positives``: a section at or
    above this node is named for that rule; ``in_shares``: the parent is a ``shares`` mapping."""
    errors: list[str] = []
    name = path.rsplit(".", 1)[-1]
    probabilities = probabilities or bool(name and _PROBABILITY_PARENT.match(name))
    positives = positives or bool(name and _POSITIVE_PARENT.match(name))
    if isinstance(node, Mapping):
        if name == "shares":
            total = sum(v for v in node.values() if isinstance(v, (int, float)))
            if not math.isclose(total, 1.0, abs_tol=SHARES_TOLERANCE):
                errors.append(f"{path}: shares must sum to 1, got {total:.6g} "
                              f"({', '.join(f'{k}={v}' for k, v in node.items())})")
        for key, value in node.items():
            errors.extend(_check_values(value, f"{path}.{key}" if path else str(key), probabilities, positives,
                                        name == "shares"))
        return errors
    if not isinstance(node, (int, float)) or isinstance(node, bool):
        return errors
    if not math.isfinite(node):
        return [f"{path}: must be a finite number, got {node}"]
    if name == "shares" or in_shares or _PROBABILITY.match(name) or probabilities:
        if not 0.0 <= node <= 1.0:
            errors.append(f"{path}: must be a probability in [0, 1], got {node}")
    elif name.endswith("_seed"):
        if not 0 <= node <= MAX_SEED:
            errors.append(f"{path}: must be a seed in [0, {MAX_SEED}], got {node}")
    elif _POSITIVE.match(name) or positives:
        if not node > 0:
            errors.append(f"{path}: must be > 0, got {node}")
    return errors


def _check_relations(node: Any, path: str) -> list[str]:
    """Constraints between keys, read from their names like the value rules:

    - ``min_X`` and ``max_X`` side by side (numbers, or mappings with the same
      keys): every minimum below its maximum;
    - a ``*_thresholds`` mapping lists its levels from the highest band down,
      each value the score at or above which the level applies: strictly
      decreasing, and the last (the lowest band, which takes every score
      below the one above it) is 0.
    """
    if not isinstance(node, Mapping):
        return []
    errors: list[str] = []
    at = (lambda key: f"{path}.{key}" if path else str(key))  # noqa: E731
    for key, low in node.items():
        key = str(key)
        high_key = "max_" + key[4:]
        if not key.startswith("min_") or high_key not in node:
            continue
        high = node[high_key]
        pairs = ([(f".{k}", low[k], high[k]) for k in low if k in high]
                 if isinstance(low, Mapping) and isinstance(high, Mapping) else [("", low, high)])
        for suffix, a, b in pairs:
            if _is_number(a) and _is_number(b) and not a < b:
                errors.append(f"{at(key)}{suffix} ({a:g}) must be below {at(high_key)}{suffix} ({b:g}): "
                              f"the range is [{key}, {high_key})")
    if path.rsplit(".", 1)[-1].endswith("_thresholds") and all(_is_number(v) for v in node.values()):
        levels, values = list(node), list(node.values())
        for (a, va), (b, vb) in zip(zip(levels, values), zip(levels[1:], values[1:])):
            if not va > vb:
                errors.append(f"{path}: must decrease from the highest band to the lowest, but "
                              f"{a} ({va:g}) is not above {b} ({vb:g})")
        if values and values[-1] != 0:
            errors.append(f"{at(levels[-1])}: the lowest band takes every score below the next one up, "
                          f"so its threshold must be 0, got {values[-1]:g}")
    for key, value in node.items():
        errors.extend(_check_relations(value, at(key)))
    return errors


def _is_number(value: Any) -> bool:
    return isinstance(value, (int, float)) and not isinstance(value, bool)


def _frozen(value: Any) -> Any:
    """Lists become tuples so that static structure is hashable."""
    if isinstance(value, Mapping):
        return {k: _frozen(v) for k, v in value.items()}
    if isinstance(value, list):
        return tuple(_frozen(v) for v in value)
    return value
