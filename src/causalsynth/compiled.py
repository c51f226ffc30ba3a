"""A jitted function whose compiled executables outlive the process.

JAX's persistent compilation cache saves the XLA compile, but every process
still traces and lowers the function to find its entry: for the block sampler
about a second, paid by every command and by every worker of a cluster. Here
the executable itself is kept, serialized by JAX, keyed by the function's
identity, its arguments' signature and the machine (``cache.machine_identity``),
and loaded without tracing.

With no cache directory it is plain ``jax.jit``; so it is where the caller has
configured JAX's persistent cache itself: an executable loaded from that
cache serializes without its kernels, so the two do not mix, and a new entry
is kept only after it has been loaded back and run.
"""

from __future__ import annotations

import hashlib
import threading
from collections.abc import Callable
from typing import Any

import jax

from causalsynth import cache


class CachedJit:
    """``jax.jit(fn)``, whose executables are kept as ``kind`` entries for ``identity``."""

    def __init__(self, fn: Callable, kind: str, identity: dict):
        self._jitted = jax.jit(fn)
        self._kind = kind
        self._identity = identity
        self._loaded: dict[str, Callable] = {}
        self._lock = threading.Lock()

    def __call__(self, *args: Any) -> Any:
        if not self._keeps():
            return self._jitted(*args)
        return self._executable(args, cache.signature(args))[0](*args)

    def digest(self, *args: Any) -> str | None:
        """SHA-256 of the kept executable for ``args``; None where none is kept.

        Its runs are deterministic, so a result recorded with this digest is
        what running it again would give. A kept entry is hashed, not loaded:
        a cluster's client, which samples nothing, never loads it.
        """
        if not self._keeps():
            return None
        key = cache.signature(args)
        found = self._loaded.get(key)
        if found is not None:
            return found[1]
        entry = cache.load_object(self._kind, self._entry_identity(key))
        if entry is not None:
            return hashlib.sha256(entry["executable"]).hexdigest()
        return self._executable(args, key)[1]

    def _keeps(self) -> bool:
        return cache.DIRECTORY is not None and not _jax_cache_configured()

    def _entry_identity(self, key: str) -> dict:
        return self._identity | cache.machine_identity() | {"signature": key}

    def _executable(self, args: tuple, key: str) -> tuple[Callable, str | None]:
        found = self._loaded.get(key)
        if found is None:
            with self._lock:  # a cluster worker's threads load it once
                found = self._loaded.get(key) or self._load_or_compile(args, key)
                self._loaded[key] = found
        return found

    def _load_or_compile(self, args: tuple, key: str) -> tuple[Callable, str | None]:
        from jax.experimental import serialize_executable

        identity = self._entry_identity(key)
        entry = cache.load_object(self._kind, identity)
        if entry is not None:
            try:
                loaded = serialize_executable.deserialize_and_load(
                    entry["executable"], jax.tree.structure((args, {})), entry["out_tree"])
                return loaded, hashlib.sha256(entry["executable"]).hexdigest()
            except Exception:  # intact but not loadable by this runtime: compile afresh
                pass
        compiled = self._jitted.lower(*args).compile()
        try:
            executable, _, out_tree = serialize_executable.serialize(compiled)
            # Kept only once it has been loaded back and run: an executable JAX itself loaded from a
            # cache (here, or earlier in this process) serializes without its kernels.
            loaded = serialize_executable.deserialize_and_load(executable, jax.tree.structure((args, {})), out_tree)
            jax.block_until_ready(loaded(*args))
        except (ValueError, NotImplementedError, jax.errors.JaxRuntimeError):  # this process only
            return compiled, None
        cache.store_object(self._kind, identity, {"executable": executable, "out_tree": out_tree})
        return loaded, hashlib.sha256(executable).hexdigest()


def _jax_cache_configured() -> bool:
    return bool(jax.config.jax_compilation_cache_dir and jax.config.jax_enable_compilation_cache)
