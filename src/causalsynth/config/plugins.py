"""Model programs are plug-ins: a config's ``model`` names the one its priors feed.

``model`` is either the name of a model shipped in ``models/`` (such as
``delivery_commerce``) or the path of a researcher's own: a Python file or a
package directory, relative to the config file that names it. The engine
reads nothing from a model but the names below, so a new scenario is one
file (``NAME``, ``VERSION``, ``TABLES``, ``model``) and its priors in YAML
(``DEFAULTS``); the rest it may leave out.

A plug-in is code, so it runs only where the user named it: in their own config
(a file they pass, a ``--set model=``) or on the command line (``--model``),
which registers it here (``trust``). A dataset's manifest records its model's
name, version and source SHA-256; reading a dataset loads a plug-in only when
the user named it, and only when its source is the one recorded
(``trusted_model``). A shipped model is one of ``models/``, by name.
"""

from __future__ import annotations

import functools
import hashlib
import importlib
import importlib.util
import pkgutil
import sys
import traceback
from pathlib import Path
from types import ModuleType
from typing import Any

import yaml

from causalsynth.config import yamltext
from causalsynth.errors import ConfigError, yaml_problem

BUILT_IN = "causalsynth.models"
# What the engine needs of every model: its identity, its tables and its NumPyro program.
REQUIRED = ("NAME", "VERSION", "TABLES", "model")
# What it may leave out, and what that means: nothing calibrated, checked, plotted or
# learnt beyond the generic checks; no cross-key rules; no incidents; no priors of its own;
# nothing its config implies beyond what it says (``expand``: config data → the data the model reads).
OPTIONAL: dict[str, Any] = {
    "CALIBRATION": (), "MARGINALS": (), "GAPS": (), "IDENTITIES": (), "ROLLUPS": (), "SHAPES": (), "SIGNATURES": (),
    "REPORT": (), "TASKS": (), "RCA_METHODS": {}, "INCIDENTS": None, "OPTIONS": (), "DESCRIPTIONS": {},
    "DEFAULTS": None,
    "validate": lambda params: [],
    "expand": lambda data: data,
}


def is_path(spec: str) -> bool:
    """Whether ``spec`` names a file or directory rather than a shipped model."""
    return spec.endswith(".py") or "/" in spec or "\\" in spec or spec.startswith(".")


def resolve(spec: str, base: Path) -> str:
    """``spec`` as the config records it: a path made absolute against ``base``, a name as is."""
    return str((base / Path(spec).expanduser()).resolve()) if is_path(spec) else spec


# The plug-in files and package directories the user named in this process.
_TRUSTED: set[str] = set()


def trust(path: str | Path) -> str:
    """Record that the user named the plug-in at ``path``; return it resolved.

    Raises ``ConfigError`` when ``path`` is not a Python file or a package directory."""
    resolved = str(Path(path).expanduser().resolve())
    if not Path(resolved).is_file() and not (Path(resolved) / "__init__.py").is_file():
        raise ConfigError(f"model: {path} is not a Python file or a package directory")
    _TRUSTED.add(resolved)
    return resolved


def source_digest(path: str | Path) -> str:
    """SHA-256 of a model's Python source (a file, or a package directory's files), read, not imported."""
    digest = hashlib.sha256()
    for name, file in _files(Path(path)):
        digest.update(name.encode() + b"\0" + file.read_bytes())
    return digest.hexdigest()


def trusted_model(spec: str, recorded: str | None) -> str:
    """The plug-in to load for a dataset whose manifest names ``spec`` with source SHA-256 ``recorded``.

    ``spec`` itself where the user named it, or another path the user named whose
    source is the recorded one (the dataset moved). Raises ``ConfigError`` where the
    user named none, or where the one they named is not the recorded source."""
    recorded = recorded if isinstance(recorded, str) else None
    if recorded is None and spec in _TRUSTED:
        return spec
    digests = {path: source_digest(path) for path in sorted(_TRUSTED)}
    match = [p for p in ([spec] if spec in digests else []) + list(digests) if digests[p] == recorded]
    if match:
        return match[0]
    others = "".join(f"; {path} (named here) has SHA-256 {digest[:12]}…"
                     for path, digest in list(digests.items())[-2:])
    raise ConfigError(f"sampled from the plug-in model {spec}: reading a dataset never imports the code it "
                      f"names; name the model yourself with --model PATH" + ("" if recorded is None else
                      f" (its source has SHA-256 {recorded[:12]}…{others})"))


def built_in() -> list[str]:
    package = importlib.import_module(BUILT_IN)
    return sorted(m.name for m in pkgutil.iter_modules(package.__path__))


@functools.cache
def load(spec: str) -> ModuleType:
    """The model program ``spec`` names (resolved), checked for what the engine needs.

    Raises ``ConfigError`` naming the model and what is wrong: no such model,
    a file that fails to import (with its line), a missing required name.
    """
    module = _import_file(Path(spec)) if is_path(spec) else _import_built_in(spec)
    missing = [name for name in REQUIRED if not hasattr(module, name)]
    if missing:
        raise ConfigError(f"model {spec}: a model program defines {', '.join(REQUIRED)}; "
                          f"missing: {', '.join(missing)}")
    for name, value in OPTIONAL.items():
        if not hasattr(module, name):
            setattr(module, name, value)
    return module


def _import_built_in(name: str) -> ModuleType:
    if not name.isidentifier():  # a dotted or odd name would import something else than a shipped model
        raise ConfigError(f"model: {name!r} is neither a shipped model ({', '.join(built_in())}) nor a path "
                          f"to a model file")
    try:
        return importlib.import_module(f"{BUILT_IN}.{name}")
    except ModuleNotFoundError as exc:
        if exc.name != f"{BUILT_IN}.{name}":
            raise
        raise ConfigError(f"model: no model program named {name!r} in models/ (shipped: "
                          f"{', '.join(built_in())}); a model of your own is a path to its .py file") from None


def _import_file(path: Path) -> ModuleType:
    entry = path / "__init__.py" if path.is_dir() else path
    if not entry.is_file():
        raise ConfigError(f"model: {path} is not a Python file or a package directory")
    # One module name per path, so two plug-ins with the same file name do not collide.
    name = f"{BUILT_IN}._plugin_{path.stem}_{hashlib.sha256(str(path).encode()).hexdigest()[:8]}"
    spec = importlib.util.spec_from_file_location(
        name, entry, submodule_search_locations=[str(path)] if path.is_dir() else None)
    module = importlib.util.module_from_spec(spec)
    sys.modules[name] = module
    try:
        spec.loader.exec_module(module)
    except Exception as exc:
        del sys.modules[name]
        where = [f for f in traceback.extract_tb(exc.__traceback__) if f.filename.startswith(str(path))]
        line = f" (line {where[-1].lineno})" if where else ""
        raise ConfigError(f"model {path}: importing it failed{line}: {type(exc).__name__}: {exc}") from None
    return module


def defaults(module: ModuleType) -> dict[str, Any]:
    """The model's default priors: its ``DEFAULTS`` YAML (relative to the module's file), or none."""
    if module.DEFAULTS is None:
        return {}
    path = module.DEFAULTS
    if isinstance(path, (str, Path)):
        path = Path(module.__file__).parent / path
    try:
        data = yamltext.safe_load(path.read_text())
    except OSError as exc:
        raise ConfigError(f"model {module.NAME}: cannot read its DEFAULTS {path}: {exc.strerror}") from None
    except yaml.YAMLError as exc:
        raise ConfigError(f"model {module.NAME}: its DEFAULTS {path} is not valid YAML: {yaml_problem(exc)}") \
            from None
    if not isinstance(data, dict):
        raise ConfigError(f"model {module.NAME}: its DEFAULTS {path} must be a mapping of sections")
    return data


def source_files(module: ModuleType) -> list[tuple[str, Path]]:
    """The model's Python source, as (name, path): its package's files, or its one file."""
    return _files(module_root(module))


def module_root(module: ModuleType) -> Path:
    """What a model's source is: its package directory, or its one file."""
    path = Path(module.__file__)
    return path.parent if hasattr(module, "__path__") else path


def _files(path: Path) -> list[tuple[str, Path]]:
    if path.is_file():
        return [(path.name, path)]
    return [(str(p.relative_to(path)), p) for p in sorted(path.rglob("*.py"))]
