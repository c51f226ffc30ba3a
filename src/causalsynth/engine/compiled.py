"""A jitted function whose compiled executables outlive the process.

JAX's persistent compilation cache saves the XLA compile, but every process
still traces and lowers the function to find its entry: for the block sampler
about a second, paid by every command and by every worker of a cluster. Here
the executable itself is kept, serialized by JAX, keyed by the function's
identity, its arguments' signature and the machine (``cache.machine_identity``),
and loaded without tracing.

With no cache directory it is plain ``jax.jit``; so it is where the caller has
configured JAX's persistent cache itself: an executable loaded from that
cache serializes without its kernels, so the two do not mix. A kept entry's
first run in a process is awaited, and one that fails there is compiled afresh.
"""

from __future__ import annotations

import hashlib
import threading
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import jax

from causalsynth.engine import cache


def compiler_options() -> dict[str, Any]:
    """XLA's options for the default backend.

    On CPU, LLVM's optimization level 1 instead of XLA's default 3: the block
    sampler compiles in about 60 % of the time and its kernels run as fast
    (``benchmarks/bench_sample.py``). A float rounding at a boundary can
    differ between levels (one PR in 50,000 of the default dataset), so every
    jit of a ``CachedJit``, kept or not, uses these options.
    """
    return {"xla_backend_optimization_level": 1} if jax.default_backend() == "cpu" else {}


@dataclass(frozen=True)
class _Executable:
    run: Callable
    digest: str | None  # SHA-256 of its kept entry (None: not kept)
    proven: bool        # has run in this process


class CachedJit:
    """``jax.jit(fn)``, whose executables are kept as ``kind`` entries for ``identity``."""

    def __init__(self, fn: Callable, kind: str, identity: dict):
        self._jitted = jax.jit(fn, compiler_options=compiler_options())
        self._kind = kind
        self._identity = identity
        self._loaded: dict[str, _Executable] = {}
        self._lock = threading.Lock()

    def __call__(self, *args: Any) -> Any:
        if not self._keeps():
            return self._jitted(*args)
        key = cache.signature(args)
        found = self._executable(args, key)
        if found.proven:
            return found.run(*args)
        with self._lock:  # its first run: awaited, so that an entry kept without its kernels is replaced
            found = self._loaded[key]
            if found.proven:
                return found.run(*args)
            try:
                out = jax.block_until_ready(found.run(*args))
            except jax.errors.JaxRuntimeError:
                found = self._compile(args, key)
                out = found.run(*args)
            self._loaded[key] = _Executable(found.run, found.digest, proven=True)
            return out

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
            return found.digest
        entry = cache.load_object(self._kind, self._entry_identity(key))
        if entry is not None:
            return hashlib.sha256(entry["executable"]).hexdigest()
        return self._executable(args, key).digest

    def _keeps(self) -> bool:
        return cache.DIRECTORY is not None and not _jax_cache_configured()

    def _entry_identity(self, key: str) -> dict:
        return self._identity | cache.machine_identity() | {"signature": key}

    def _executable(self, args: tuple, key: str) -> _Executable:
        found = self._loaded.get(key)
        if found is None:
            with self._lock:  # a cluster worker's threads load it once
                found = self._loaded.get(key) or self._load_or_compile(args, key)
                self._loaded[key] = found
        return found

    def _load_or_compile(self, args: tuple, key: str) -> _Executable:
        from jax.experimental import serialize_executable

        entry = cache.load_object(self._kind, self._entry_identity(key))
        if entry is not None:
            try:
                loaded = serialize_executable.deserialize_and_load(
                    entry["executable"], jax.tree.structure((args, {})), entry["out_tree"])
                return _Executable(loaded, hashlib.sha256(entry["executable"]).hexdigest(), proven=False)
            except Exception:  # intact but not loadable by this runtime: compile afresh
                pass
        return self._compile(args, key)

    def _compile(self, args: tuple, key: str) -> _Executable:
        """Compile, and keep the executable (compiled here, never loaded from JAX's cache: see ``_keeps``)."""
        from jax.experimental import serialize_executable

        compiled = self._jitted.lower(*args).compile()
        try:
            executable, _, out_tree = serialize_executable.serialize(compiled)
        except (ValueError, NotImplementedError):  # not serializable here: this process only
            return _Executable(compiled, None, proven=True)
        cache.store_object(self._kind, self._entry_identity(key), {"executable": executable, "out_tree": out_tree})
        return _Executable(compiled, hashlib.sha256(executable).hexdigest(), proven=True)


def _jax_cache_configured() -> bool:
    return bool(jax.config.jax_compilation_cache_dir and jax.config.jax_enable_compilation_cache)
