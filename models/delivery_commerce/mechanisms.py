"""Pure functions of the mechanisms that more than one stage (or the posterior) needs."""

from __future__ import annotations

import jax.numpy as jnp
import numpy as np

from causalsynth.spec.params import Params

USAGE_COLUMNS = ("cpu_usage", "memory_usage", "disk_usage")
# How a run's requests end: the order of the request-split vector.
REQUEST_OUTCOMES = ("success", "timeout", "server", "client")


def vec(mapping, names=None) -> jnp.ndarray:
    """Values of a config mapping as a float vector, in ``names`` order."""
    names = tuple(mapping) if names is None else names
    return jnp.stack([jnp.asarray(mapping[n], jnp.float32) for n in names])


def inverse_cdf(u, probs):
    """The category (index into the last axis of ``probs``) that a uniform ``u`` falls in.

    The same distribution as a categorical draw, by comparison with the
    cumulative probabilities: far cheaper on many categories than the
    Gumbel-max draw numpyro's Categorical makes.
    """
    edges = jnp.cumsum(probs, axis=-1)[..., :-1] / jnp.sum(probs, axis=-1, keepdims=True)
    return jnp.sum(u[..., None] >= edges, axis=-1).astype(jnp.int32)


def cycle(hour, peak, amplitude):
    """A daily cycle: ``amplitude`` x cos(2 pi (hour - peak) / 24), highest at ``peak``."""
    return amplitude * jnp.cos(2.0 * jnp.pi * (hour - peak) / 24.0)


def dependency_matrix(p: Params, services: tuple[str, ...]) -> np.ndarray:
    """``A[i, j] = 1`` when service ``i`` calls service ``j`` (static structure)."""
    a = np.zeros((len(services), len(services)), np.float32)
    for caller, callees in p.service.depends_on.items():
        for callee in callees:
            a[services.index(caller), services.index(callee)] = 1.0
    return a


def hops(depends: np.ndarray) -> np.ndarray:
    """``H[j, s]``: hops from service ``j`` up to its caller ``s`` (0 for ``j`` itself; more than there
    are services where ``s`` does not reach ``j``): when a fault at ``j`` reaches ``s``."""
    n = len(depends)
    out = np.full((n, n), 10 * n, np.int32)
    np.fill_diagonal(out, 0)
    frontier = np.eye(n, dtype=bool)
    for step in range(1, n):
        # frontier[j, s]: s is `step` calls up from j, when s calls a service of j's last frontier
        frontier = (frontier[:, None, :] & depends.astype(bool)[None, :, :]).any(-1)
        newly = frontier & (out > step)
        out[newly] = step
    return out


def reach(distance, share, n_services: int):
    """How much of a fault a service ``distance`` hops up the calls from it feels (``hops``): 1 at the
    faulty service, ``share ** hops`` at a caller, 0 where the fault does not reach (``distance`` of
    ``n_services`` or more). The shortest path, the strongest, not a sum over paths: a caller reached
    by two paths does not feel more than the faulty service (``share <= 1``). The one weight the
    snapshot's regression, the series' injected faults and the mechanism-aware method all use."""
    distance = jnp.asarray(distance)
    return jnp.where(distance < n_services, share ** jnp.minimum(distance, n_services).astype(jnp.float32), 0.0)


def exposure(depends, is_primary, share):
    """How much of a regression each service feels, ``(..., S, 1)`` from its primary service's
    indicator ``(..., S, 1)``: ``reach`` from there. A sum of the indicator times each candidate's
    reach, not a matrix product, so the weights stay exact where matrix products round."""
    felt = reach(hops(np.asarray(depends)), share, len(depends))                     # (S, S)
    return jnp.sum(jnp.asarray(is_primary, jnp.float32)[..., 0][..., None] * felt, axis=-2)[..., None]


def degradation_factors(effects, run_error_rate, degradation) -> dict:
    """What a regression of effect ``degradation`` (scale times exposure) multiplies a service's
    latency, error rate and request rate by. Each is a monotone function of the degradation alone,
    the same at every service: so no caller's jump exceeds its root's, whatever its base rates. The
    error rate rises by the factor the run's does (``effects.error_rate_increase`` is the run's
    absolute rise at scale 1, over ``run_error_rate``), not by an absolute amount that would be a
    larger jump at a service with fewer errors."""
    latency = 1.0 + effects.response_time_increase * degradation
    return {"latency": latency, "errors": 1.0 + effects.error_rate_increase / run_error_rate * degradation,
            "requests": 1.0 / latency}


def over_services(matrix, x):
    """``matrix @ x`` along the services axis (-2) of a ``(..., S, 1)`` array."""
    return jnp.einsum("ij,...jk->...ik", matrix, x)


def per_step(x, step_service):
    """A service-level ``(..., S, 1)`` array as one value per funnel step ``(..., 1, J)``."""
    return jnp.swapaxes(jnp.take(x, step_service, axis=-2), -1, -2)


def run_metric_means(p: Params, load, scale, kind, score, background=0.0) -> dict:
    """Where a run's metrics are centred, given its load, regression, anomaly and background load.

    ``scale`` is the regression's effect scale (0 without one), ``kind`` the
    anomaly type index (0: none) and ``score`` its intensity: each anomaly
    moves the metric it is named after, in proportion to its score.
    ``background`` is log extra load that is not shopper traffic (the hidden
    team workload). Shared by the model and by ``anomaly_posterior``, which
    inverts it. Returns log-medians (response time, throughput, the three
    usages on a last axis), the mean request split (``REQUEST_OUTCOMES``
    on a last axis: success, timeout and error shares sum to 1 by
    construction) and ``clean_rt``, the median response time of a clean run
    at this load (the yardstick service latencies are coupled to).
    """
    rn, fx, an = p.run, p.regression.effects, p.run.anomaly
    perf_a, error_a, resource_a, behavior_a = ((kind == i) * score for i in range(1, 5))
    error = jnp.clip(rn.error_rate + fx.error_rate_increase * scale + an.error_rate_increase * error_a,
                     1e-4, 0.6)
    timeout = jnp.clip(rn.timeout_rate + fx.timeout_rate_increase * scale + an.timeout_rate_increase * perf_a,
                       1e-4, 0.3)
    categories = vec(rn.error_category.shares)
    split = jnp.concatenate([(1.0 - error - timeout)[..., None], timeout[..., None],
                             error[..., None] * categories], axis=-1)
    clean_rt = rn.response_time_ms * load ** rn.load_latency_elasticity
    return {
        "clean_rt": clean_rt,
        "log_rt": jnp.log(clean_rt * (1.0 + fx.response_time_increase * scale)
                          * (1.0 + an.response_time_increase * perf_a)) + background,
        "split": split,
        "log_tput": jnp.log(rn.throughput_rps * load * (1.0 - an.behavior_throughput_decrease * behavior_a)
                            / jnp.sqrt(1.0 + fx.response_time_increase * scale)),
        "log_usage": jnp.log(jnp.stack([rn.cpu_usage, rn.memory_usage, rn.disk_usage])
                             * (jnp.sqrt(load) * (1.0 + fx.resource_usage_increase * scale)
                                * (1.0 + an.resource_usage_increase * resource_a) * jnp.exp(background))[..., None]),
    }
