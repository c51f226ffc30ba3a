"""The model's structure, seen through NumPyro's trace, and the tables' data contract (docs/guides/tables.md)."""

from __future__ import annotations

import jax
import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq
import pytest
from conftest import part_path
from numpyro import handlers

from causalsynth.config.loading import load_config
from causalsynth.engine import cache
from causalsynth.engine.compiled import CachedJit
from causalsynth.engine.program import Program

CONTRACT = {
    "pull_requests": {
        "pr_id": "int64", "pr_number": "string", "size_class": "dictionary", "lines_added": "int",
        "lines_deleted": "int", "files_changed": "int", "cyclomatic_complexity": "float",
        "test_coverage": "float", "risk_score": "float", "has_security_vulnerability": "bool",
        "is_breaking_change": "bool", "has_performance_regression": "bool",
        "performance_impact_score": "float", "regression_severity": "dictionary"},
    "system_runs": {
        "run_id": "int64", "pr_id": "int64", "run_status": "dictionary", "is_anomalous": "bool",
        "anomaly_type": "dictionary", "response_time_ms": "float", "p95_response_time_ms": "float",
        "throughput_rps": "float", "success_rate": "float", "error_rate": "float", "cpu_usage": "float",
        "memory_usage": "float", "started_at": "timestamp"},
    "service_metrics": {
        "service_metric_id": "int64", "run_id": "int64", "service_name": "dictionary",
        "response_time_ms": "float", "error_rate": "float", "health_score": "float",
        "health_status": "dictionary", "is_failing": "bool"},
    "ecommerce_flows": {
        "flow_id": "int64", "run_id": "int64", "user_segment": "dictionary", "device_type": "dictionary",
        "region": "dictionary", "cart_value": "float", "converted": "bool",
        "conversion_probability": "float", "abandonment_reason": "dictionary"},
    "flow_steps": {
        "step_id": "int64", "flow_id": "int64", "step_index": "int", "step_type": "dictionary",
        "service_name": "dictionary", "latency_ms": "float", "success": "bool", "retry_attempt": "int"},
}
LEVELS = {
    ("pull_requests", "size_class"): ["SMALL", "MEDIUM", "LARGE"],
    ("pull_requests", "regression_severity"): ["NONE", "LOW", "MEDIUM", "HIGH"],
    ("system_runs", "run_status"): ["SUCCESS", "FAILED"],
    ("system_runs", "anomaly_type"): ["NONE", "PERFORMANCE", "ERROR_RATE", "RESOURCE_USAGE", "BEHAVIOR"],
    ("service_metrics", "service_name"): ["gateway", "user", "product", "order", "notification"],
    ("service_metrics", "health_status"): ["HEALTHY", "DEGRADED", "UNHEALTHY"],
    ("ecommerce_flows", "user_segment"): ["NEW", "RETURNING", "VIP"],
    ("ecommerce_flows", "device_type"): ["MOBILE", "DESKTOP", "TABLET"],
    ("ecommerce_flows", "region"): ["US", "EU", "ASIA", "OTHER"],
    ("ecommerce_flows", "abandonment_reason"): ["NONE", "PAYMENT", "INVENTORY", "SHIPPING", "USER_EXIT",
                                                "TECHNICAL_ERROR"],
    ("flow_steps", "step_type"): ["PRODUCT_BROWSE", "ADD_TO_CART", "CHECKOUT", "PAYMENT", "ORDER_CONFIRMATION"],
}


def _type_family(t: pa.DataType) -> str:
    for family, test in (("dictionary", pa.types.is_dictionary), ("timestamp", pa.types.is_timestamp),
                         ("bool", pa.types.is_boolean), ("string", pa.types.is_string),
                         ("float", pa.types.is_floating)):
        if test(t):
            return family
    return "int64" if t == pa.int64() else "int" if pa.types.is_integer(t) else str(t)


@pytest.mark.parametrize("table", CONTRACT)
def test_data_contract(dataset_20k, table):
    schema = pq.read_schema(part_path(dataset_20k, table))
    for column, family in CONTRACT[table].items():
        assert column in schema.names, column
        actual = _type_family(schema.field(column).type)
        assert actual == family or (family, actual) == ("int", "int64"), (column, actual)


@pytest.mark.parametrize("table, column", LEVELS)
def test_category_levels(tables_20k, table, column):
    assert set(tables_20k[table][column].unique()) <= set(LEVELS[table, column])


def test_tables_follow_plate_nests(default_config):
    program = Program(default_config)
    block = default_config.sampling["block_prs"]
    grids = {t.table.name: t.grid for t in program.tables}
    assert grids == {
        "pull_requests": (block, 1, 1, 1),
        "system_runs": (block, 5, 1, 1),
        "service_metrics": (block, 5, 5, 1),
        "ecommerce_flows": (block, 5, 3, 1),
        "flow_steps": (block, 5, 3, 24),  # 12 browse views + 4 steps x 3 attempts
    }
    assert program.table("flow_steps").mask_site == "_present"
    assert all(t.mask_site is None for t in program.tables if t.table.name != "flow_steps")


def test_site_shapes_in_a_trace(default_config, key):
    program = Program(default_config)
    shapes, plates = {}, {}

    def trace(key, params):  # abstract: shapes and plates, nothing computed
        for name, site in handlers.trace(handlers.seed(default_config.model.model, key)).get_trace(params, 7).items():
            if site["type"] in ("sample", "deterministic"):
                shapes[name] = site["value"].shape
                plates[name] = [f.name for f in site["cond_indep_stack"]]
        return 0

    jax.eval_shape(trace, key, program.initial_params())
    assert shapes["has_performance_regression"] == (7, 1, 1, 1)
    assert shapes["response_time_ms"] == (7, 5, 1, 1)
    assert shapes["services.response_time_ms"] == (7, 5, 5, 1)
    assert shapes["device_type"] == (7, 5, 3, 1)
    assert shapes["latency_ms"] == (7, 5, 3, 24)
    assert plates["latency_ms"] == ["steps", "flows", "runs", "prs"]


def test_sampler_with_every_switch_off_is_the_plain_model(key):
    config = load_config(overrides=["sampling.block_prs=4"])
    program = Program(config)
    params = program.initial_params()
    ours = program.sample_block(key, params, program.interventions())

    def plain(key, params):
        trace = handlers.trace(handlers.seed(config.model.model, key)).get_trace(params, 4)
        return {site: trace[site]["value"] for site in ours}

    # Compiled as the engine compiles, and kept in the tests' cache under the model's source: a later
    # run loads it (the plain model compiles in about 5 s).
    reference = CachedJit(plain, "test-plain-model", cache.model_identity(config.model) | {"block_prs": 4})
    theirs = reference(jax.random.clone(key), params)  # the same noise
    for site, value in ours.items():
        np.testing.assert_allclose(np.asarray(value), np.asarray(theirs[site]), rtol=1e-5, atol=1e-6, err_msg=site)


def test_the_suite_runs_jax_strict(key):
    """A PRNG key consumed twice, or a NaN or an infinity out of a compiled function, fails the test that
    does it (conftest's ``STRICT_JAX``)."""
    import jax.numpy as jnp

    with pytest.raises(jax.errors.KeyReuseError):
        jax.jit(lambda k: jax.random.normal(k) + jax.random.normal(k))(key)
    with pytest.raises(FloatingPointError):
        jax.jit(jnp.sqrt)(-1.0)
    with pytest.raises(FloatingPointError):
        jax.jit(jnp.log)(0.0)
