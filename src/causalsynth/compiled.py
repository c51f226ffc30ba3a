"""A jitted function whose compiled executables outlive the process.

JAX's persistent compilation cache saves the XLA compile, but every process
still traces and lowers the function to find its entry: for the block sampler
about a second, paid by every command and by every worker of a cluster. Here
the executable itself is kept, serialized by JAX, keyed by the function's
identity, its arguments' signature and the machine (``cache.machine_identity``),
and loaded without tracing.

With no cache directory it is plain ``jax.jit``; so it is where the caller has
configured JAX's persistent cache itself: an executable compiled with that
cache on serializes without its kernels, so the two do not mix.
"""

from __future__ import annotations

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
        if cache.DIRECTORY is None or _jax_cache_configured():
            return self._jitted(*args)
        key = cache.signature(args)
        fn = self._loaded.get(key)
        if fn is None:
            with self._lock:  # a cluster worker's threads load it once
                fn = self._loaded.get(key) or self._load_or_compile(args, key)
                self._loaded[key] = fn
        return fn(*args)

    def _load_or_compile(self, args: tuple, key: str) -> Callable:
        from jax.experimental import serialize_executable

        identity = self._identity | cache.machine_identity() | {"signature": key}
        entry = cache.load_object(self._kind, identity)
        if entry is not None:
            try:
                return serialize_executable.deserialize_and_load(
                    entry["executable"], jax.tree.structure((args, {})), entry["out_tree"])
            except Exception:  # intact but not loadable by this runtime: compile afresh
                pass
        compiled = self._jitted.lower(*args).compile()
        try:
            executable, _, out_tree = serialize_executable.serialize(compiled)
        except (ValueError, NotImplementedError):  # a backend that cannot serialize: this process only
            return compiled
        cache.store_object(self._kind, identity, {"executable": executable, "out_tree": out_tree})
        return compiled


def _jax_cache_configured() -> bool:
    return bool(jax.config.jax_compilation_cache_dir and jax.config.jax_enable_compilation_cache)
