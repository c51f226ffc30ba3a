"""The limits on a job's size and seeds, checked once at the edge."""

from __future__ import annotations

from causalsynth.config.loading import MAX_SEED
from causalsynth.errors import ConfigError

# About 166 billion rows: past any dataset one job writes, and within every index the engine keeps.
MAX_PRS = 10**9


def check_size(n_prs: int, seed: int) -> None:
    """Refuse ``--n-prs`` outside [1, MAX_PRS] or a seed outside [0, 2**32 - 1] before any work."""
    if not 1 <= n_prs <= MAX_PRS:
        raise ConfigError(f"--n-prs: must be a positive number of pull requests, at most {MAX_PRS:,}, "
                          f"got {n_prs:,}")
    check_seed(seed, "--seed")


def check_seed(seed: int, option: str) -> None:
    if not 0 <= seed <= MAX_SEED:
        raise ConfigError(f"{option}: must be a whole number in [0, {MAX_SEED}], got {seed}")

