"""An immutable config tree that JAX sees as a pytree of its numbers.

A model reads its priors as ``p.pull_request.size_class.shares`` and never
needs to know which values are traced. The rule is simple and data-driven:
floats (and arrays) are leaves, so changing a prior or a solved intercept
reuses the one compiled block function; strings, ints, booleans and tuples are
static structure (level names, plate sizes, service names), part of the
treedef, so changing them compiles anew, as a change of shape must.
"""

from __future__ import annotations

from collections.abc import Iterator, Mapping
from typing import Any

import jax
import numpy as np


def _is_leaf(value: Any) -> bool:
    return isinstance(value, (float, np.ndarray, jax.Array, np.floating))


@jax.tree_util.register_pytree_node_class
class Params(Mapping):
    """A frozen nested mapping with attribute access; floats are pytree leaves."""

    __slots__ = ("_data", "_dynamic")

    def __init__(self, data: Mapping[str, Any]):
        object.__setattr__(
            self,
            "_data",
            {k: Params(v) if isinstance(v, Mapping) and not isinstance(v, Params) else v
             for k, v in data.items()},
        )
        object.__setattr__(self, "_dynamic", None)

    # Mapping protocol -----------------------------------------------------
    def __getitem__(self, key: str) -> Any:
        return self._data[key]

    def __iter__(self) -> Iterator[str]:
        return iter(self._data)

    def __len__(self) -> int:
        return len(self._data)

    def __getattr__(self, key: str) -> Any:
        try:
            return self._data[key]
        except KeyError:
            raise AttributeError(key) from None

    def __setattr__(self, key: str, value: Any) -> None:
        raise AttributeError("Params is immutable; use .replace(path, value)")

    def __repr__(self) -> str:
        return f"Params({self._data!r})"

    def __reduce__(self):  # pickled by its data: a cluster's workers receive a dataset's parameters
        return Params, (self._data,)

    # Pytree protocol ------------------------------------------------------
    def tree_flatten(self):
        # A rebuilt tree keeps its leaf positions whatever they now hold: JAX maps
        # trees to other leaf types (shapes, argument info) and expects the same
        # structure back.
        dynamic = self._dynamic
        if dynamic is None:
            dynamic = tuple(k for k, v in self._data.items() if isinstance(v, Params) or _is_leaf(v))
        static = tuple((k, v) for k, v in self._data.items() if k not in dynamic)
        return tuple(self._data[k] for k in dynamic), (tuple(self._data), dynamic, static)

    @classmethod
    def tree_unflatten(cls, aux, children):
        order, dynamic, static = aux
        values = dict(zip(dynamic, children)) | dict(static)
        obj = object.__new__(cls)
        object.__setattr__(obj, "_data", {k: values[k] for k in order})
        object.__setattr__(obj, "_dynamic", dynamic)
        return obj

    # Helpers --------------------------------------------------------------
    def replace(self, path: str, value: Any) -> Params:
        """A copy with the value at dotted ``path`` set (created if absent)."""
        head, _, rest = path.partition(".")
        data = dict(self._data)
        if rest:
            child = data.get(head, Params({}))
            data[head] = child.replace(rest, value)
        else:
            data[head] = value
        return Params(data)

    def leaves(self, prefix: str = "") -> dict[str, Any]:
        """The pytree leaves (floats and arrays) by dotted path."""
        out: dict[str, Any] = {}
        for k, v in self._data.items():
            if isinstance(v, Params):
                out |= v.leaves(f"{prefix}{k}.")
            elif _is_leaf(v):
                out[f"{prefix}{k}"] = v
        return out

    def with_leaves(self, values: dict[str, Any]) -> Params:
        """A copy with the leaves at the given dotted paths replaced."""
        out = self
        for path, value in values.items():
            out = out.replace(path, value)
        return out
