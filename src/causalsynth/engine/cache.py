"""Results derived from a config alone, kept across runs: the solved calibration intercepts, the
model's causal graph, its traced structure and its compiled block sampler (and, under ``last``,
which sampler this machine ran last: what a command loads ahead, ``compiled.load_ahead``).

Each entry is keyed by everything it depends on (the resolved config, the
model's name, version and source files, the package's version and source;
for traced and compiled entries, the arguments' tree and types instead of
the config's numbers, and the JAX installation and machine), so a changed
config, an edited model or package (even without a new version) or another
release never reads another's entry. Each is pickled behind its SHA-256. The
CLI sets ``DIRECTORY``; with it None (the library's default) nothing is
kept. A cache is never worth a failed run: an entry that cannot be read or
is not intact is treated as absent, one that cannot be written is skipped,
and the caller verifies what it reads before using it.
"""

from __future__ import annotations

import hashlib
import json
import os
from pathlib import Path
from typing import Any

from causalsynth.engine import identity

DIRECTORY: Path | None = None


def default_directory() -> Path:
    return Path(os.environ.get("CAUSALSYNTH_CACHE_DIR") or Path.home() / ".cache" / "causalsynth" / "jax")


def enable(directory: str | Path | None = None) -> Path:
    """Keep compiled samplers (``compiled.CachedJit``) and config-derived entries in ``directory``
    (default: ``$CAUSALSYNTH_CACHE_DIR`` or ``~/.cache/causalsynth/jax``); return it.

    Called by the CLI, and by each worker of a cluster before its first block.
    """
    directory = Path(directory) if directory is not None else default_directory()
    global DIRECTORY
    DIRECTORY = directory
    return directory


def _path(kind: str, identity: dict) -> Path | None:
    if DIRECTORY is None:
        return None
    key = hashlib.sha256(json.dumps(identity, sort_keys=True, default=str).encode()).hexdigest()
    return Path(DIRECTORY) / kind / f"{key}.pickle"


def model_identity(model) -> dict:
    """What a model's code is: its name, version, source, and the package that runs it (its version and
    its own source, so an edited installation never reads what the code before the edit kept)."""
    return {"model": [model.NAME, model.VERSION], "source": identity.model_digest(model),
            "package": identity.package_version(), "package_source": identity.package_digest()}


def config_identity(program) -> dict:
    """What a result derived from a config depends on: the model's code and the resolved config."""
    return model_identity(program.model) | {"config": program.config.data}


def load_object(kind: str, identity: dict) -> Any | None:
    """The pickled ``kind`` entry for ``identity``, or None (no cache, no entry, or not intact).

    The entry's SHA-256 is checked before it is unpickled: a truncated or
    damaged file (a full disk, a killed writer on a shared file system) is
    absent, never half-read.
    """
    import pickle

    path = _path(kind, identity)
    try:
        data = None if path is None else path.read_bytes()
    except OSError:
        return None
    if data is None or hashlib.sha256(data[32:]).digest() != data[:32]:
        return None
    try:
        return pickle.loads(data[32:])
    except Exception:  # pickled by another version of a class: absent
        return None


def store_object(kind: str, identity: dict, value: Any) -> None:
    """Pickle ``value`` as the ``kind`` entry for ``identity``, behind its SHA-256."""
    import pickle

    data = pickle.dumps(value, protocol=pickle.HIGHEST_PROTOCOL)
    _write(_path(kind, identity), hashlib.sha256(data).digest() + data)


def _write(path: Path | None, data: bytes) -> None:
    """Write an entry whole (a temporary file renamed into place) or not at all."""
    if path is None:
        return
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
        partial = path.with_suffix(f".{os.getpid()}.tmp")
        partial.write_bytes(data)
        partial.replace(path)
    except OSError:
        pass
