"""One result of `causalsynth validate`."""

from __future__ import annotations

from dataclasses import dataclass


@dataclass(frozen=True)
class Check:
    """A check, what it expects, what it found, and whether the dataset passes it.

    ``applicable`` is False for a check that has nothing to hold the data to
    (an empty population, a column an intervention fixed, a column the model
    does not bound): it passes, and says why instead of showing a number.
    """

    check: str
    expected: str
    observed: str
    passed: bool
    value: float | None = None   # marginals: the realised share ...
    target: float | None = None  # ... and its target, for plotting
    applicable: bool = True

    def __post_init__(self):
        object.__setattr__(self, "passed", bool(self.passed))  # numpy booleans are not JSON

    @property
    def verdict(self) -> str:
        return "FAIL" if not self.passed else "pass" if self.applicable else "n/a"


def not_applicable(check: str, expected: str, why: str) -> Check:
    return Check(check, expected, why, True, applicable=False)


def not_run(check: str, expected: str, why: Exception | str) -> Check:
    """A check that could not run (its table is unreadable, a column is missing): a failure."""
    return Check(check, expected, f"not run: {why}", False)
