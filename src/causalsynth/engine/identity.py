"""What made a dataset's bytes: the package's version and source, the model's source, the machine,
and the signature of a compiled function's arguments.

The manifest records these (``jobs.sample``), a cluster's workers are held to
the client's (``jobs.blocks.versions``), and the caches key their entries by
them (``engine.cache``); the digests and the machine are computed once per
process.
"""

from __future__ import annotations

import functools
import hashlib
import os
from pathlib import Path
from typing import Any


def signature(args: Any) -> str:
    """The tree and abstract types of ``args``: what a trace of a function of them depends on.

    Static values (strings, ints, tuples inside ``Params``) are part of the tree;
    floats count only by type, so changing a prior keeps the signature.
    """
    import jax

    leaves, tree = jax.tree.flatten(args)
    text = str(tree) + "|" + ",".join(str(jax.typeof(leaf)) for leaf in leaves)
    return hashlib.sha256(text.encode()).hexdigest()


@functools.cache
def machine_identity() -> dict:
    """What a compiled executable depends on beyond its program: JAX, the device, the CPU, XLA's flags."""
    import jax
    import jaxlib

    device = jax.devices()[0]
    try:
        flags = next(line for line in Path("/proc/cpuinfo").read_text().splitlines() if line.startswith("flags"))
    except (OSError, StopIteration):
        import platform

        flags = platform.processor() or platform.machine()
    return {"jax": jax.__version__, "jaxlib": jaxlib.__version__, "platform": device.platform,
            "device": device.device_kind, "platform_version": device.client.platform_version,
            "cpu": hashlib.sha256(flags.encode()).hexdigest(), "xla_flags": os.environ.get("XLA_FLAGS", ""),
            "jax_config": sorted((k, repr(v)) for k, v in jax.config.values.items() if "cache" not in k)}


def package_version() -> str:
    """This installation's version ("0+unknown" when run from a tree that is not installed)."""
    from importlib import metadata

    try:
        return metadata.version("causalsynth")
    except metadata.PackageNotFoundError:
        return "0+unknown"


@functools.cache
def package_digest() -> str:
    """SHA-256 of causalsynth's Python source, every package of it: a trace runs the primitives of
    ``spec``, the config of ``config`` and the engine alike, so an edit to any of them is other code."""
    from causalsynth.config.plugins import source_digest

    return source_digest(Path(__file__).parents[1])


@functools.cache
def model_digest(model) -> str:
    """SHA-256 of a model's Python source: a researcher's edit changes it."""
    from causalsynth.config.plugins import module_root, source_digest

    return source_digest(module_root(model))
