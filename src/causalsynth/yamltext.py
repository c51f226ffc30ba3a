"""YAML parsed by libyaml's C parser where PyYAML was built with it: the same safe loader, faster.

Every command reads the engine's and the model's defaults; the pure-Python
parser spends a quarter of a second on them.
"""

from __future__ import annotations

from typing import Any

import yaml

_LOADER = getattr(yaml, "CSafeLoader", yaml.SafeLoader)


def safe_load(text: str) -> Any:
    """``yaml.safe_load``, by the C parser when available."""
    return yaml.load(text, Loader=_LOADER)
