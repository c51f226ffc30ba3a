"""A jitted function whose compiled executables outlive the process.

JAX's persistent compilation cache saves the XLA compile, but every process
still traces and lowers the function to find its entry: for the block sampler
about a second, paid by every command and by every worker of a cluster. Here
the executable itself is kept, serialized by JAX, keyed by the function's
identity, its arguments' signature and the machine (``identity.machine_identity``),
and loaded without tracing.

With no cache directory it is plain ``jax.jit``; so it is where the caller has
configured JAX's persistent cache itself: an executable loaded from that
cache serializes without its kernels, so the two do not mix. A kept entry's
first run in a process is awaited, and one that fails there is compiled afresh.

A command that will run a sampler starts ``load_ahead`` first: the executable
this machine ran last is deserialized on a thread of its own while the
command imports and loads its config, and serves the command when its entry is
the one asked for.
"""

from __future__ import annotations

import hashlib
import json
import threading
from collections.abc import Callable
from concurrent.futures import Future
from dataclasses import dataclass
from typing import Any

import jax

from causalsynth.engine import cache
from causalsynth.engine.identity import machine_identity, signature


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


# Every executable loaded or compiled in this process, by its entry's identity: a program made again
# for the same model and shapes (a twin after its factual, validate after sample, a notebook's next
# call) runs the one already here instead of loading it again (0.7 s for the shipped model's sampler).
_LOADED: dict[str, _Executable] = {}
_LOADING = threading.RLock()  # a cluster worker's threads load an executable once
_AHEAD: dict[str, Future] = {}  # executables ``load_ahead`` is loading, by the same names


class CachedJit:
    """``jax.jit(fn)``, whose executables are kept as ``kind`` entries for ``identity``."""

    def __init__(self, fn: Callable, kind: str, identity: dict):
        self._jitted = jax.jit(fn, compiler_options=compiler_options())
        self._kind = kind
        self._identity = identity

    def __call__(self, *args: Any) -> Any:
        if not self._keeps():
            return self._jitted(*args)
        entry = self._entry_identity(signature(args))
        found = self._executable(args, entry)
        if found.proven:
            return found.run(*args)
        with _LOADING:  # its first run: awaited, so that an entry kept without its kernels is replaced
            found = _LOADED[_name(entry)]
            if found.proven:
                return found.run(*args)
            try:
                out = jax.block_until_ready(found.run(*args))
            except jax.errors.JaxRuntimeError:
                found = self._compile(args, entry)
                out = found.run(*args)
            _LOADED[_name(entry)] = _Executable(found.run, found.digest, proven=True)
            return out

    def digest(self, *args: Any) -> str | None:
        """SHA-256 of the kept executable for ``args``; None where none is kept.

        Its runs are deterministic, so a result recorded with this digest is
        what running it again would give. A kept entry is hashed, not loaded:
        a cluster's client, which samples nothing, never loads it.
        """
        if not self._keeps():
            return None
        entry = self._entry_identity(signature(args))
        found = _LOADED.get(_name(entry))
        if found is not None:
            return found.digest
        kept = cache.load_object(self._kind, entry)
        if kept is not None:
            return hashlib.sha256(kept["executable"]).hexdigest()
        return self._executable(args, entry).digest

    def _keeps(self) -> bool:
        return cache.DIRECTORY is not None and not _jax_cache_configured()

    def _entry_identity(self, key: str) -> dict:
        return self._identity | machine_identity() | {"signature": key}

    def _executable(self, args: tuple, entry: dict) -> _Executable:
        name = _name(entry)
        found = _LOADED.get(name)
        if found is None and name in _AHEAD:
            _AHEAD[name].result()  # being loaded ahead: wait for it (a failed load leaves it absent)
            found = _LOADED.get(name)
        if found is None:
            with _LOADING:
                found = _LOADED.get(name)
                if found is None:
                    found = _LOADED[name] = self._load_or_compile(args, entry)
                    cache.store_object("last", _last(self._kind), {"kind": self._kind, "entry": entry})
        return found

    def _load_or_compile(self, args: tuple, entry: dict) -> _Executable:
        kept = cache.load_object(self._kind, entry)
        if kept is not None:
            try:
                return _deserialized(kept, jax.tree.structure((args, {})))
            except Exception:  # intact but not loadable by this runtime: compile afresh
                pass
        return self._compile(args, entry)

    def _compile(self, args: tuple, entry: dict) -> _Executable:
        """Compile, and keep the executable (compiled here, never loaded from JAX's cache: see ``_keeps``)."""
        from jax.experimental import serialize_executable

        compiled = self._jitted.lower(*args).compile()
        try:
            executable, _, out_tree = serialize_executable.serialize(compiled)
        except (ValueError, NotImplementedError):  # not serializable here: this process only
            return _Executable(compiled, None, proven=True)
        cache.store_object(self._kind, entry, {"executable": executable, "out_tree": out_tree,
                                               "in_tree": jax.tree.structure((args, {}))})
        return _Executable(compiled, hashlib.sha256(executable).hexdigest(), proven=True)


def _deserialized(kept: dict, in_tree) -> _Executable:
    from jax.experimental import serialize_executable

    loaded = serialize_executable.deserialize_and_load(kept["executable"], in_tree, kept["out_tree"])
    return _Executable(loaded, hashlib.sha256(kept["executable"]).hexdigest(), proven=False)


def _last(kind: str) -> dict:
    """The identity of the pointer to the ``kind`` executable this machine loaded or compiled last."""
    return {"kind": kind} | machine_identity()


def load_ahead(kind: str) -> threading.Thread | None:
    """Start loading, on a daemon thread, the ``kind`` executable this machine ran last; return the
    thread (None: nothing kept, or nothing to keep it in).

    Deserializing the block sampler takes 0.5-0.7 s and releases the GIL, so
    a command that starts this before its imports and config has the
    executable when its first block needs it. A ``CachedJit`` finds it by its
    entry's identity, so what is loaded ahead serves only a call of that very
    signature, and a call that needs it while it loads waits for it instead
    of loading it twice. A command that needs another executable (other
    shapes) loads that one at once, as it would have; the one loaded ahead is
    then unused.
    """
    if cache.DIRECTORY is None or _jax_cache_configured():
        return None
    pointer = cache.load_object("last", _last(kind))
    if not isinstance(pointer, dict) or pointer.get("kind") != kind or not isinstance(pointer.get("entry"), dict):
        return None
    name = _name(pointer["entry"])
    if name in _LOADED or name in _AHEAD:
        return None
    # Read and unpickled here: whatever the entry's pickle imports, the thread imports nothing while this
    # one goes on importing (two threads importing at once can deadlock on the modules' locks).
    kept = cache.load_object(kind, pointer["entry"])
    if not isinstance(kept, dict) or "in_tree" not in kept:  # absent, or kept before the tree was
        return None
    from jax.experimental import serialize_executable  # noqa: F401 - for the same reason

    done = _AHEAD[name] = Future()
    thread = threading.Thread(target=_load_kept, args=(name, kept, done), daemon=True,
                              name=f"causalsynth-load-{kind}")
    thread.start()
    return thread


def _load_kept(name: str, kept: dict, done: Future) -> None:
    try:
        _LOADED[name] = _deserialized(kept, kept["in_tree"])
    except Exception:  # not loadable by this runtime: the call that needs it compiles it afresh
        pass
    finally:
        done.set_result(None)


def _name(entry: dict) -> str:
    """An entry's identity as one string: what ``_LOADED`` knows it by."""
    return json.dumps(entry, sort_keys=True, default=str)


def _jax_cache_configured() -> bool:
    return bool(jax.config.jax_compilation_cache_dir and jax.config.jax_enable_compilation_cache)
