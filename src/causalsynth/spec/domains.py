"""The set a column's values lie in, read from its site's NumPyro support.

A sampled site's distribution states its support (``LogNormal``: positive;
``Categorical``: integers 0..K-1); a computed site declares one
(``modeling.derived``). ``causalsynth validate`` counts the rows outside it.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
from numpyro.distributions import constraints


@dataclass(frozen=True)
class Domain:
    """An interval of numbers, closed unless ``*_open``, of integers when ``integer``."""

    low: float | None = None
    high: float | None = None
    low_open: bool = False
    high_open: bool = False
    integer: bool = False

    def describe(self) -> str:
        kind = "integers" if self.integer else "numbers"
        if self.low is not None and self.high is not None:
            return (f"{kind} in {'(' if self.low_open else '['}{self.low:g}, "
                    f"{self.high:g}{')' if self.high_open else ']'}")
        if self.low is not None:
            return f"{kind} {'>' if self.low_open else '≥'} {self.low:g}"
        return f"{kind} {'<' if self.high_open else '≤'} {self.high:g}"

    def outside(self, values: np.ndarray) -> np.ndarray:
        """Which values lie outside (NaN always does)."""
        inside = ~np.isnan(values) if values.dtype.kind == "f" else np.ones(len(values), bool)
        if self.low is not None:
            inside &= (values > self.low) if self.low_open else (values >= self.low)
        if self.high is not None:
            inside &= (values < self.high) if self.high_open else (values <= self.high)
        return ~inside


def _bound(value) -> float | None:
    """A constraint's bound as a number; None when absent or not a constant (a traced parameter)."""
    if value is None:
        return None
    try:
        array = np.asarray(value)
    except Exception:  # a JAX tracer: the bound depends on parameters, not a fixed set  # noqa: BLE001
        return None
    return float(array) if array.ndim == 0 and np.isfinite(array) else None


def domain_of(support: constraints.Constraint | None) -> Domain | None:
    """The interval a NumPyro constraint describes; None for the whole line or an unknown set."""
    if support is None:
        return None
    low, high = _bound(getattr(support, "lower_bound", None)), _bound(getattr(support, "upper_bound", None))
    if isinstance(support, constraints._IntegerInterval):
        domain = Domain(low, high, integer=True)
    elif isinstance(support, constraints._IntegerGreaterThan):
        domain = Domain(low, integer=True)
    elif isinstance(support, constraints._OpenInterval):
        domain = Domain(low, high, low_open=True, high_open=True)
    elif isinstance(support, constraints._Interval):
        domain = Domain(low, high)
    elif isinstance(support, constraints._GreaterThanEq):
        domain = Domain(low)
    elif isinstance(support, constraints._GreaterThan):
        domain = Domain(low, low_open=True)
    else:
        return None
    return None if domain.low is None and domain.high is None else domain
