"""Tolerances from standard errors, for tests that compare a statistic of a real sample with its target.

A fixed band (``abs(rate - 0.2) < 0.02``) is too wide on a large sample, where it lets a model
biased by a point or two pass, and too narrow on a small one. Here every tolerance is ``Z``
standard errors of the statistic on the sample at hand. ``Z = 4``: a correct model fails one
such check with probability 6e-5 (two-sided normal tail), so the hundred-odd checks of the suite
together would fail by chance about once in 150 runs on fresh seeds (the suite's seeds are
fixed, so a pass stays a pass); while a 20 % rate off by one point is 4 standard errors out from
n ≈ 25,000 units on, and on the 20,000-PR sample's 100,000 runs so is a 10 % rate off by half a
point.

Three kinds of standard error:

- a share of ``n`` independent draws with probability ``p``: ``sqrt(p (1 - p) / n)``;
- a realised binary outcome against the model's own probability of it on the same rows
  (``bernoulli_se``): the outcomes are independent draws given their probabilities, so
  ``sqrt(sum p_i (1 - p_i)) / n``, whatever varies the probabilities (a PR's regression shared
  by its runs included): tight, it tests the draw and nothing else;
- a mean over rows that share a PR (``cluster_se``): rows of one PR are not independent, so the
  variance is that of the per-PR sums, with the number of PRs as the effective sample size.
"""

from __future__ import annotations

import math

import numpy as np
import pandas as pd

Z = 4.0


def share_se(p: float, n: int) -> float:
    """Standard error of the share of ``n`` independent draws that each hit with probability ``p``."""
    return math.sqrt(p * (1.0 - p) / n)


def bernoulli_se(probabilities) -> float:
    """Standard error of mean(outcome - probability) for independent draws given their probabilities."""
    p = np.asarray(probabilities, np.float64)
    return math.sqrt(float(np.sum(p * (1.0 - p)))) / len(p)


def cluster_se(values, clusters) -> float:
    """Standard error of the mean of ``values`` when rows of one cluster (a PR) may be correlated.

    The cluster-robust (sandwich) estimate: the spread of each cluster's summed deviations from
    the overall mean, over the number of rows, with the small-sample factor G / (G - 1)."""
    v = pd.Series(np.asarray(values, np.float64))
    deviation = (v - v.mean()).groupby(np.asarray(clusters)).sum()
    g = len(deviation)
    return math.sqrt(g / (g - 1) * float(np.sum(deviation.to_numpy() ** 2))) / len(v)


def assert_within(observed: float, expected: float, se: float, what: str = "", z: float = Z,
                  slack: float = 0.0) -> None:
    """``|observed - expected| <= z se + slack``, with the numbers in the message when it fails.

    ``slack`` is an error that is not sampling noise, such as a solver's tolerance."""
    assert se > 0, (what, se)
    gap = abs(observed - expected)
    assert gap <= z * se + slack, (f"{what}: observed {observed:.6g}, expected {expected:.6g}, off by {gap:.3g} "
                                   f"= {gap / se:.1f} standard errors of {se:.3g} (allowed {z:g}"
                                   + (f" and {slack:g}" if slack else "") + ")")


def assert_share(observed: float, expected: float, n: int, what: str = "", z: float = Z) -> None:
    """A share of ``n`` independent draws against its probability ``expected``."""
    assert_within(observed, expected, share_se(expected, n), what, z)
