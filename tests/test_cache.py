"""What a process keeps for the next: the traced structure and the compiled sampler, loaded untraced."""

from __future__ import annotations

import jax
import numpy as np
import pyarrow as pa
import pytest

from causalsynth import cache
from causalsynth.program import Column, Program
from causalsynth.sampling import block_key, with_intercepts
from causalsynth.tabulate import _column_array, _strings


@pytest.fixture
def own_cache(tmp_path, monkeypatch):
    """The CLI's arrangement: our cache directory, and JAX's own persistent cache off."""
    monkeypatch.setattr(cache, "DIRECTORY", tmp_path)
    configured = jax.config.jax_compilation_cache_dir
    jax.config.update("jax_compilation_cache_dir", None)
    yield tmp_path
    jax.config.update("jax_compilation_cache_dir", configured)


def block_args(program: Program, seed: int = 3):
    params = with_intercepts(program.config.params, {c.name: 0.1 for c in program.model.CALIBRATION})
    return block_key(seed, 0), params, program.interventions()


def untraced(monkeypatch):
    def refuse(*args, **kwargs):
        raise AssertionError("the model was traced")

    monkeypatch.setattr(Program, "_trace", refuse)


def test_params_keep_their_tree_when_jax_maps_their_leaves(small_config):
    """JAX maps a tree to other leaf types (argument info, shapes) and expects its structure back."""
    params = small_config.params
    mapped = jax.tree.map(lambda leaf: "not a float", params)
    assert jax.tree.structure(mapped) == jax.tree.structure(params)
    assert len(jax.tree.leaves(mapped)) == len(jax.tree.leaves(params)) > 100


def test_a_later_process_loads_the_structure_and_sampler_untraced(own_cache, small_config, monkeypatch):
    first = Program(small_config)
    expected = jax.device_get(first.sample_block(*block_args(first)))
    assert len(list((own_cache / "sampler").iterdir())) == 1
    assert len(list((own_cache / "structure").iterdir())) == 1

    untraced(monkeypatch)
    later = Program(small_config)  # structure from the cache
    assert later.tables == first.tables and later.sites == first.sites
    loaded = jax.device_get(later.sample_block(*block_args(later)))
    assert loaded.keys() == expected.keys()
    assert all(np.array_equal(loaded[k], expected[k]) for k in expected)

    # a changed prior (a float) is an argument: the same executable serves it, untraced
    moved = Program(small_config.with_overrides(["pull_request.added_logit_mean=0.2"]))
    other = jax.device_get(moved.sample_block(*block_args(moved)))
    assert not np.array_equal(other["lines_added"], expected["lines_added"])
    assert len(list((own_cache / "sampler").iterdir())) == 1


def test_intercepts_solved_by_the_loaded_executable_are_reused_unevaluated(own_cache, small_config, monkeypatch):
    """Its runs are deterministic, so evaluating again would give the same means; any other entry is
    checked by one evaluation."""
    from causalsynth import sampling

    evaluations = []
    solve = sampling.block_means
    monkeypatch.setattr(sampling, "block_means", lambda *a, **k: evaluations.append(1) or solve(*a, **k))
    solved = sampling.calibrate(Program(small_config))
    assert len(evaluations) > 1
    evaluations.clear()
    later = Program(small_config)
    assert sampling.calibrate(later) == solved and evaluations == []
    identity = cache.config_identity(later)
    entry = cache.load_object("calibration", identity)
    assert entry["sampler"] == later.sample_block.digest(*block_args(later))
    cache.store_object("calibration", identity, entry | {"sampler": "another executable"})
    assert sampling.calibrate(Program(small_config)) == solved and len(evaluations) == 1


def test_a_changed_structure_or_machine_is_another_entry(own_cache, small_config):
    program = Program(small_config)
    args = block_args(program)
    key = cache.signature(args)
    assert cache.signature(block_args(Program(small_config.with_overrides(["pull_request.added_logit_mean=0.2"])))) \
        == key  # floats count by type only
    longer = Program(small_config.with_overrides(["calendar.window_days=300"]))  # an int: structure
    assert cache.signature(block_args(longer)) != key
    identity = cache.model_identity(program.model) | cache.machine_identity()
    assert {"source", "package", "jax", "jaxlib", "device", "cpu", "xla_flags"} <= identity.keys()


def test_a_damaged_entry_is_absent(own_cache):
    identity = {"what": "a test entry"}
    cache.store_object("structure", identity, {"value": [1, 2, 3]})
    assert cache.load_object("structure", identity) == {"value": [1, 2, 3]}
    (entry,) = (own_cache / "structure").iterdir()
    data = bytearray(entry.read_bytes())
    data[-1] ^= 0xFF
    entry.write_bytes(bytes(data))
    assert cache.load_object("structure", identity) is None
    entry.write_bytes(bytes(data[:10]))  # truncated
    assert cache.load_object("structure", identity) is None


@pytest.mark.parametrize("kind, values", [
    ("bool", np.array([True, False, True, True, False, False, False, False, True])),
    ("int", np.array([3, -1, 2**30], dtype=np.int64)),
    ("float", np.array([0.5, -1e30, np.inf], dtype=np.float64)),
    ("timestamp", np.array([0, 1_735_689_600_123], dtype=np.int64)),
    ("category", np.array([2, 0, 1, 1], dtype=np.int32)),
])
def test_columns_built_over_numpy_buffers_are_what_pa_array_builds(kind, values):
    levels = ("low", "médium", "high") if kind == "category" else ()
    ours = _column_array(Column("c", "c", kind, levels), values)
    ours.validate(full=True)
    if kind == "category":
        expected = pa.DictionaryArray.from_arrays(pa.array(values.astype(np.int8)), pa.array(levels))
    else:
        types = {"bool": pa.bool_(), "int": pa.int32(), "float": pa.float32(), "timestamp": pa.timestamp("ms", "UTC")}
        expected = pa.array(values, types[kind], safe=False)
    assert ours.equals(expected) and ours.type == expected.type


def test_strings_built_over_numpy_buffers():
    values = np.char.mod("PR-%06d", np.arange(1, 4))
    assert _strings(values).to_pylist() == ["PR-000001", "PR-000002", "PR-000003"]
    assert _strings(("", "é", "ab")).to_pylist() == ["", "é", "ab"]
