"""YAML parsed by libyaml's C parser where PyYAML was built with it: the same safe loader, faster.

Every command reads the engine's and the model's defaults; the pure-Python
parser spends a quarter of a second on them.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import yaml

from causalsynth.errors import ConfigError, one_line, yaml_problem

_LOADER = getattr(yaml, "CSafeLoader", yaml.SafeLoader)


def safe_load(text: str) -> Any:
    """``yaml.safe_load``, by the C parser when available."""
    return yaml.load(text, Loader=_LOADER)


def load_file(path: Path, label: str) -> Any:
    """The YAML file at ``path``; a ``ConfigError`` starting with ``label`` says why it cannot be read:
    a file that cannot be opened, is not UTF-8, is not YAML, or holds a value YAML cannot build."""
    try:
        text = path.read_text(encoding="utf-8")
    except OSError as exc:
        raise ConfigError(f"{label}: cannot read it: {exc.strerror}") from None
    except UnicodeDecodeError as exc:
        raise ConfigError(f"{label}: not UTF-8 text (byte {exc.start})") from None
    try:
        return safe_load(text)
    except yaml.YAMLError as exc:
        raise ConfigError(f"{label}: not valid YAML: {yaml_problem(exc)}") from None
    except ValueError as exc:  # a value YAML recognises but cannot build: a date that is not one
        raise ConfigError(f"{label}: {one_line(exc)}") from None
