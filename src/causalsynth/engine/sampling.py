"""Keyed block sampling and intercept calibration.

Randomness is positional: the key of block ``b`` is ``fold_in(key(seed), b)``
and a block always holds ``block_prs`` PRs, so a dataset is the same whatever
order blocks run in, and the first N PRs of any larger dataset are the N-PR
dataset (the last block is sampled whole and its surplus dropped).
"""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass

import jax
import numpy as np

from causalsynth.engine import cache
from causalsynth.engine.program import Program
from causalsynth.errors import ConfigError
from causalsynth.spec.params import Params

CALIBRATION_TOLERANCE = 1e-4  # on the mean probability
CALIBRATION_MAX_ROUNDS = 25


def block_key(seed: int, index: int) -> jax.Array:
    """``fold_in(key(seed), index)``: the key of block ``index`` of ``seed``.

    Computed on the host: JAX's own ops compile three small programs in every process (0.14 s, beside
    the sampler's load), where these few integer operations are the same bits (tests/test_determinism.py).
    """
    return jax.random.wrap_key_data(block_key_data(seed, index), impl="threefry2x32")


def block_key_data(seed: int, index: int) -> np.ndarray:
    """The two uint32 words of ``block_key(seed, index)`` (a seed in ``[0, 2**32)``)."""
    words = np.array([0, seed], np.uint32)  # key(seed): a seed's high word is 0 in 32-bit JAX
    return _threefry2x32(words, np.array([0, index], np.uint32))  # fold_in: threefry of [0, index]


def _threefry2x32(key: np.ndarray, count: np.ndarray) -> np.ndarray:
    """Threefry-2x32 (20 rounds) of the two words ``count`` under ``key``, as ``jax.random`` computes it."""
    def rounds(x, rotations):
        for r in rotations:
            x0 = x[0] + x[1]
            x = [x0, x0 ^ ((x[1] << np.uint32(r)) | (x[1] >> np.uint32(32 - r)))]
        return x

    ks = [key[0], key[1], key[0] ^ key[1] ^ np.uint32(0x1BD11BDA)]
    with np.errstate(over="ignore"):
        x = [count[0] + ks[0], count[1] + ks[1]]
        for i in range(5):
            x = rounds(x, (13, 15, 26, 6) if i % 2 == 0 else (17, 29, 16, 24))
            x = [x[0] + ks[(i + 1) % 3], x[1] + ks[(i + 2) % 3] + np.uint32(i + 1)]
    return np.array(x, np.uint32)


@dataclass(frozen=True)
class Block:
    """One block's site values on the host; ``n_prs`` of its PRs are kept."""

    index: int
    n_prs: int
    values: dict[str, np.ndarray]


def sample_blocks(program: Program, params: Params, seed: int, n_prs: int,
                  indices: list[int] | None = None, do: dict[str, float] | None = None,
                  at_once: int = 1) -> Iterator[Block]:
    """Blocks covering the first ``n_prs`` PRs, in ``indices`` order (default: ascending).

    ``do`` maps sites to encoded intervened values (see ``Program.interventions``).
    ``at_once`` blocks are sampled by one call (``Program.sample_blocks_at_once``;
    a short last group is filled up with blocks past the end, whose values are
    dropped, so every call has the same shapes): an accelerator is then busy
    with enough work per call.

    The next call is dispatched before the current one's values are copied to
    the host, so device sampling overlaps host-side tabulation and writing.
    """
    size = program.block_prs
    n_blocks = -(-n_prs // size)
    order = list(range(n_blocks)) if indices is None else list(indices)
    switches = program.interventions(do)
    groups = [order[i:i + at_once] for i in range(0, len(order), at_once)]

    def launch(group: list[int]):
        if at_once == 1:
            return program.sample_block(block_key(seed, group[0]), params, switches)
        padded = group + list(range(n_blocks, n_blocks + at_once - len(group)))
        keys = jax.random.wrap_key_data(np.stack([block_key_data(seed, i) for i in padded]), impl="threefry2x32")
        return program.sample_blocks_at_once(at_once)(keys, params, switches)

    pending = None
    for group in groups + [None]:
        launched = None if group is None else (group, launch(group))
        if pending is not None:
            done, out = pending
            values = jax.device_get(out)
            for j, index in enumerate(done):
                kept = min(size, n_prs - index * size)
                yield Block(index, kept, values if at_once == 1 else {site: v[j] for site, v in values.items()})
        pending = launched


def sampler_args(program: Program, seed: int = 0) -> tuple:
    """Arguments of the block sampler's signature (block 0 of ``seed``, the intercepts at 0, the factual
    world): what names its executable, whatever the values a job then passes."""
    zero = {c.name: 0.0 for c in program.model.CALIBRATION}
    return block_key(seed, 0), with_intercepts(program.config.params, zero), program.interventions()


def block_means(program: Program, params: Params, sites: list[str], seed: int, n_blocks: int) -> np.ndarray:
    """The mean of each of ``sites`` over blocks 0..n_blocks-1 of ``seed``, in the factual world.

    Computed by the block sampler itself, which every job compiles anyway: a
    calibration needs no second compiled function, and checking a cached
    solution costs one block.
    """
    switches = program.interventions()
    per_block = []
    for b in range(n_blocks):
        out = program.sample_block(block_key(seed, b), params, switches)
        per_block.append([np.asarray(jax.device_get(out[site]), np.float64).mean() for site in sites])
    return np.mean(per_block, axis=0)


def _logit(p):
    p = np.clip(p, 1e-9, 1 - 1e-9)
    return np.log(p) - np.log1p(-p)


def with_intercepts(params: Params, intercepts: dict[str, float]) -> Params:
    """``params`` with the calibrated intercepts the model reads as ``p.intercepts``."""
    return params.with_leaves({f"intercepts.{name}": np.float32(v) for name, v in intercepts.items()})


def calibrate(program: Program) -> dict[str, float]:
    """Solve the model's calibrated intercepts on prior-predictive blocks.

    For each ``Calibration(name, site, target)``, ``p.intercepts[name]`` is
    set so the mean of ``site`` (a probability) over the calibration blocks
    equals ``target``. Means of probabilities, not of 0/1 draws, so the
    solution is smooth and exact up to the block's sampling error. All
    intercepts move together by the secant method on the logit scale; the
    calibration key is fixed by ``sampling.calibration_seed``, so the solved
    values depend on the config alone, never on the dataset's seed. The
    sample is ``sampling.calibration_prs`` PRs in whole blocks, so smaller
    blocks do not make the solution noisier. A solution in the cache
    (``causalsynth.engine.cache``) for the same config, model and package is reused
    as it is when the executable that checked it is the one loaded now (its
    runs are deterministic: evaluating again would give the same means), and
    otherwise once one evaluation confirms it still solves the equations.

    Returns ``{name: intercept}``.
    """
    cals = program.model.CALIBRATION
    cfg = program.config
    seed = int(cfg.sampling["calibration_seed"])
    n_blocks = -(-int(cfg.sampling["calibration_prs"]) // program.block_prs)
    targets = np.array([float(cfg.get(c.target)) for c in cals])
    sites = [c.site for c in cals]
    base = program.config.params

    def residual(x):
        params = with_intercepts(base, {c.name: v for c, v in zip(cals, x)})
        means = block_means(program, params, sites, seed, n_blocks)
        return _logit(means) - _logit(targets), means

    made_by = program.sample_block.digest(*sampler_args(program, seed))
    cached = cache.load_object("calibration", cache.config_identity(program))
    try:
        x = np.array([float(cached["intercepts"][c.name]) for c in cals])
        if made_by is not None and cached["sampler"] == made_by:  # solved by this very executable
            return {c.name: float(v) for c, v in zip(cals, x)}
        means = block_means(program, with_intercepts(base, {c.name: v for c, v in zip(cals, x)}), sites, seed,
                            n_blocks)
        if np.all(np.abs(means - targets) < CALIBRATION_TOLERANCE):  # verified: still a solution
            return _kept(program, cals, x, made_by)
    except (KeyError, TypeError, ValueError):
        pass  # none, or not this config's: solve afresh
    x_prev = _logit(targets)
    f_prev, means = residual(x_prev)
    x = x_prev - f_prev
    for _ in range(CALIBRATION_MAX_ROUNDS):
        f, means = residual(x)
        if np.all(np.abs(means - targets) < CALIBRATION_TOLERANCE):
            break
        slope = np.where(np.abs(x - x_prev) > 1e-9, (f - f_prev) / np.where(x == x_prev, 1, x - x_prev), 1.0)
        slope = np.where(np.abs(slope) < 1e-3, 1.0, slope)
        x_prev, f_prev = x, f
        x = x - f / slope
    else:
        i = int(np.argmax(np.abs(means - targets)))
        raise ConfigError(f"{cals[i].target}: {targets[i]:g} is out of reach of its mechanism: solving "
                          f"{cals[i].name}'s intercept got no closer than {means[i]:.4g}; choose a rate the "
                          f"mechanism can produce, or change its coefficients")
    return _kept(program, cals, x, made_by)


def _kept(program: Program, cals, x: np.ndarray, made_by: str | None) -> dict[str, float]:
    """The intercepts ``x`` by name, kept in the cache with the executable that checked them."""
    solved = {c.name: float(v) for c, v in zip(cals, x)}
    cache.store_object("calibration", cache.config_identity(program), {"intercepts": solved, "sampler": made_by})
    return solved
