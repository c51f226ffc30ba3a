"""Results derived from a config alone, kept across runs: the solved calibration intercepts and the
model's causal graph.

Each entry is keyed by everything it depends on (the resolved config, the
model's name, version and source files, the package version), so a changed
config, an edited model (even without a new version) or another release
never reads another's entry. The CLI sets ``DIRECTORY`` beside JAX's
compilation cache; with it None (the library's default) nothing is kept. A
cache is never worth a failed run: an entry that cannot be read is treated as
absent, one that cannot be written is skipped, and the caller verifies what
it reads before using it.
"""

from __future__ import annotations

import functools
import hashlib
import json
import os
from pathlib import Path
from typing import Any

DIRECTORY: Path | None = None


def default_directory() -> Path:
    return Path(os.environ.get("CAUSALSYNTH_CACHE_DIR") or Path.home() / ".cache" / "causalsynth" / "jax")


def enable(directory: str | Path | None = None) -> Path:
    """Keep compiled samplers (JAX's persistent compilation cache) and config-derived entries in
    ``directory`` (default: ``$CAUSALSYNTH_CACHE_DIR`` or ``~/.cache/causalsynth/jax``); return it.

    Called by the CLI, and by each worker of a cluster before its first block.
    """
    import jax

    directory = Path(directory) if directory is not None else default_directory()
    jax.config.update("jax_compilation_cache_dir", str(directory))
    jax.config.update("jax_persistent_cache_min_compile_time_secs", 0.5)
    global DIRECTORY
    DIRECTORY = directory
    return directory


def _path(kind: str, program) -> Path | None:
    if DIRECTORY is None:
        return None
    identity = {"config": program.config.data, "model": [program.model.NAME, program.model.VERSION],
                "source": model_digest(program.model), "package": package_version()}
    key = hashlib.sha256(json.dumps(identity, sort_keys=True, default=str).encode()).hexdigest()
    return Path(DIRECTORY) / kind / f"{key}.json"


def package_version() -> str:
    """This installation's version ("0+unknown" when run from a tree that is not installed)."""
    from importlib import metadata

    try:
        return metadata.version("causalsynth")
    except metadata.PackageNotFoundError:
        return "0+unknown"


@functools.cache
def model_digest(model) -> str:
    """SHA-256 of a model's Python source: a researcher's edit changes it."""
    from causalsynth.plugins import source_files

    digest = hashlib.sha256()
    for name, path in source_files(model):
        digest.update(name.encode() + b"\0" + path.read_bytes())
    return digest.hexdigest()


def load(kind: str, program) -> Any | None:
    """The ``kind`` entry for ``program``'s config, or None (no cache, no entry, or unreadable)."""
    path = _path(kind, program)
    try:
        return None if path is None else json.loads(path.read_text())
    except (OSError, ValueError):
        return None


def store(kind: str, program, value: Any) -> None:
    """Write the entry whole (a temporary file renamed into place) or not at all."""
    path = _path(kind, program)
    if path is None:
        return
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
        partial = path.with_suffix(f".{os.getpid()}.tmp")
        partial.write_text(json.dumps(value))
        partial.replace(path)
    except OSError:
        pass
