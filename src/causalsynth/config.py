"""Load, merge, override and validate a model config, once, at the edge.

The model's ``configs/default.yaml`` is both the defaults and the schema: a
user file (``--config``) or an override (``--set dotted.key=value``) may only
name keys that exist there, and each value must have the default's type. The
value rules (probabilities, shares, positive scales) are read from key names,
as the header of ``default.yaml`` documents. Every problem found is reported
in one message, each line naming its YAML path.
"""

from __future__ import annotations

import difflib
import importlib
import math
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from fnmatch import fnmatch
from importlib import resources
from pathlib import Path
from types import ModuleType
from typing import Any

import yaml

from causalsynth.errors import ConfigError
from causalsynth.params import Params

# Top-level sections that steer the engine rather than feed the model.
ENGINE_KEYS = ("version", "model", "sampling", "ml", "quality")

PROBABILITY_KEYS = ("rate", "*_rate", "*_probability", "*_share", "*_success", "*_usage",
                    "accuracy", "balanced_accuracy", "precision", "recall", "f1", "roc_auc", "pr_auc",
                    "completeness", "*_distance")
PROBABILITY_PARENTS = ("*_thresholds", "*_loss", "tolerances")
POSITIVE_KEYS = ("*_sd", "*_ms", "*_rps", "*_days", "*_hours", "*_lines", "*_s", "*concentration")
POSITIVE_PARENTS = ("*_scale", "*_factor", "*_count", "shape", "sampling")
SHARES_TOLERANCE = 1e-6


@dataclass(frozen=True)
class Config:
    """A validated configuration.

    ``data`` is the resolved plain config (what the manifest records);
    ``params`` is what the model reads: the model sections as a pytree.
    """

    data: dict[str, Any]
    model: ModuleType

    def with_overrides(self, overrides: Iterable[str]) -> Config:
        """This config with ``dotted.key=value`` overrides applied and validated."""
        return load_config(data=self.data, overrides=overrides)

    @property
    def params(self) -> Params:
        """The model sections, plus ``sampling.start`` (static: the model's calendar counts from it)."""
        model = {k: v for k, v in self.data.items() if k not in ENGINE_KEYS}
        return Params(_frozen(model | {"sampling": {"start": self.data["sampling"]["start"]}}))

    @property
    def sampling(self) -> Mapping[str, Any]:
        return self.data["sampling"]

    def get(self, path: str) -> Any:
        node: Any = self.data
        for part in path.split("."):
            node = node[part]
        return node


def default_config_text() -> str:
    return resources.files("causalsynth.configs").joinpath("default.yaml").read_text()


def load_config(
    path: str | Path | None = None,
    overrides: Iterable[str] = (),
    *,
    data: Mapping[str, Any] | None = None,
) -> Config:
    """The default config, with ``path``'s values (or ``data``'s) and then ``overrides`` applied.

    ``overrides`` are ``"dotted.key=value"`` strings; values are YAML scalars.
    ``data`` is a resolved config, such as a manifest's. Raises
    ``ConfigError`` naming every unknown key and every invalid value.
    """
    defaults = yaml.safe_load(default_config_text())
    errors: list[str] = []
    given = _read_yaml(Path(path)) if path is not None else data
    data = defaults if given is None else _merge(defaults, given, "", errors)
    for item in overrides:
        data = _apply_override(defaults, data, item, errors)
    if not errors:
        errors.extend(_check_values(data, ""))
    model = None
    if not errors:
        try:
            model = importlib.import_module(f"causalsynth.models.{data['model']}")
        except ModuleNotFoundError:
            errors.append(f"model: no model program named {data['model']!r} in models/")
    if not errors:
        errors.extend(model.validate(Params(_frozen(data))))
    if errors:
        raise ConfigError("invalid configuration:\n  " + "\n  ".join(errors))
    return Config(data=data, model=model)


def _read_yaml(path: Path) -> Any:
    try:
        text = path.read_text()
    except OSError as exc:
        raise ConfigError(f"cannot read config file {path}: {exc.strerror}") from None
    try:
        return yaml.safe_load(text) or {}
    except yaml.YAMLError as exc:
        raise ConfigError(f"config file {path} is not valid YAML: {exc}") from None


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
    if isinstance(default, bool) or isinstance(given, bool):
        if type(default) is not type(given):
            errors.append(f"{path}: expected {type(default).__name__}, got {given!r}")
            return default
        return given
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
        errors.append(f"{path}: expected a string, got {given!r}")
    elif isinstance(default, list):
        if isinstance(given, list):
            return given
        errors.append(f"{path}: expected a list, got {given!r}")
    return default


def _apply_override(defaults: dict, data: dict, item: str, errors: list[str]) -> dict:
    key, sep, raw = item.partition("=")
    key = key.strip()
    if not sep or not key:
        errors.append(f"--set {item!r}: expected dotted.key=value, e.g. regression.rate=0.35")
        return data
    parts = key.split(".")
    node = defaults
    for i, part in enumerate(parts):
        if not isinstance(node, Mapping) or part not in node:
            where = ".".join(parts[: i + 1])
            known = _all_paths(defaults)
            errors.append(f"--set {key}: unknown key {where!r}{_closest(key, known)}")
            return data
        node = node[part]
    if isinstance(node, Mapping):
        errors.append(f"--set {key}: is a section; set one of its keys: "
                      f"{', '.join(f'{key}.{k}' for k in node)}")
        return data
    try:
        value = yaml.safe_load(raw)
    except yaml.YAMLError:
        value = raw
    nested: Any = value
    for part in reversed(parts):
        nested = {part: nested}
    return _merge(data, nested, "", errors)


def _matches(name: str, patterns: tuple[str, ...]) -> bool:
    return any(fnmatch(name, p) for p in patterns)


def _check_values(node: Any, path: str, parents: tuple[str, ...] = ()) -> list[str]:
    """The value rules of the default.yaml header."""
    errors: list[str] = []
    name = path.rsplit(".", 1)[-1]
    if isinstance(node, Mapping):
        if name == "shares":
            total = sum(v for v in node.values() if isinstance(v, (int, float)))
            if not math.isclose(total, 1.0, abs_tol=SHARES_TOLERANCE):
                errors.append(f"{path}: shares must sum to 1, got {total:.6g} "
                              f"({', '.join(f'{k}={v}' for k, v in node.items())})")
        for key, value in node.items():
            errors.extend(_check_values(value, f"{path}.{key}" if path else str(key), parents + (name,)))
        return errors
    if not isinstance(node, (int, float)) or isinstance(node, bool):
        return errors
    if not math.isfinite(node):
        return [f"{path}: must be a finite number, got {node}"]
    in_parent = lambda pats: any(_matches(p, pats) for p in parents + (name,) if p)  # noqa: E731
    is_seed = name.endswith("_seed")
    if name == "shares" or parents[-1:] == ("shares",) or _matches(name, PROBABILITY_KEYS) \
            or in_parent(PROBABILITY_PARENTS):
        if not 0.0 <= node <= 1.0:
            errors.append(f"{path}: must be a probability in [0, 1], got {node}")
    elif is_seed:
        if node < 0:
            errors.append(f"{path}: must be >= 0, got {node}")
    elif _matches(name, POSITIVE_KEYS) or in_parent(POSITIVE_PARENTS):
        if not node > 0:
            errors.append(f"{path}: must be > 0, got {node}")
    return errors


def _frozen(value: Any) -> Any:
    """Lists become tuples so that static structure is hashable."""
    if isinstance(value, Mapping):
        return {k: _frozen(v) for k, v in value.items()}
    if isinstance(value, list):
        return tuple(_frozen(v) for v in value)
    return value
