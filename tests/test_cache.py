"""What a process keeps for the next: the traced structure and the compiled sampler, loaded untraced."""

from __future__ import annotations

import hashlib
import json
import pickle
import shutil
import subprocess
import sys
from pathlib import Path

import jax
import numpy as np
import pyarrow as pa
import pytest
from conftest import CI_BUILDS, SMALL_BLOCKS

from causalsynth.config.loading import load_config
from causalsynth.engine import cache, identity
from causalsynth.engine.program import Column, Program
from causalsynth.engine.sampling import block_key, with_intercepts
from causalsynth.engine.tabulate import _column_array, _strings


@pytest.fixture
def own_cache(tmp_path, monkeypatch):
    """A cache directory of the test's own."""
    monkeypatch.setattr(cache, "DIRECTORY", tmp_path)
    return tmp_path


def block_args(program: Program, seed: int = 3):
    params = with_intercepts(program.config.params, {c.name: 0.1 for c in program.model.CALIBRATION})
    return block_key(seed, 0), params, program.interventions()


def test_params_keep_their_tree_when_jax_maps_their_leaves(small_config):
    """JAX maps a tree to other leaf types (argument info, shapes) and expects its structure back."""
    params = small_config.params
    mapped = jax.tree.map(lambda leaf: "not a float", params)
    assert jax.tree.structure(mapped) == jax.tree.structure(params)
    assert len(jax.tree.leaves(mapped)) == len(jax.tree.leaves(params)) > 100


# A process of its own, as every command is: it counts the model's traces and the calibration's
# evaluations, and prints a checksum of one block. The caches know no model: these processes run the
# small ci_builds plug-in.
PLUGIN = CI_BUILDS / "ci_builds.yaml"
PROCESS = """
import hashlib, json, sys
import jax, numpy as np
from causalsynth.engine import cache
from causalsynth.engine import sampling
from causalsynth.config.loading import load_config
from causalsynth.engine.program import Program
cache.enable(sys.argv[1])
traced, evaluations = [], []
trace, means = Program._trace, sampling.block_means
Program._trace = lambda self, *a, **k: traced.append(1) or trace(self, *a, **k)
sampling.block_means = lambda *a, **k: evaluations.append(1) or means(*a, **k)
program = Program(load_config(sys.argv[2], overrides=sys.argv[3:]))
intercepts = sampling.calibrate(program)
args = (sampling.block_key(3, 0), sampling.with_intercepts(program.config.params, intercepts),
        program.interventions())
out = jax.device_get(program.sample_block(*args))
digest = hashlib.sha256(b"".join(np.ascontiguousarray(out[k]).tobytes() for k in sorted(out))).hexdigest()
print(json.dumps({"traced": len(traced), "evaluations": len(evaluations), "intercepts": intercepts,
                  "block": digest, "sampler": program.sample_block.digest(*args)}))
"""


def run_process(directory, *overrides) -> dict:
    done = subprocess.run([sys.executable, "-c", PROCESS, str(directory), str(PLUGIN), SMALL_BLOCKS, *overrides],
                          capture_output=True, text=True, check=True)
    return json.loads(done.stdout.splitlines()[-1])


@pytest.fixture(scope="module")
def first_run(tmp_path_factory) -> tuple[Path, dict]:
    """A first process on an empty cache: its directory, and what it printed."""
    directory = tmp_path_factory.mktemp("first-run")
    return directory, run_process(directory)


@pytest.mark.slow
def test_a_later_process_loads_the_structure_sampler_and_intercepts_untraced(first_run, tmp_path):
    shutil.copytree(first_run[0], tmp_path, dirs_exist_ok=True)
    first = first_run[1]
    assert first["traced"] >= 2 and first["evaluations"] > 1  # traced, compiled and solved
    assert {p.name for p in tmp_path.iterdir()} >= {"sampler", "structure", "calibration"}

    later = run_process(tmp_path)
    assert later["traced"] == 0 and later["evaluations"] == 0  # all loaded; intercepts checked by provenance
    assert later["block"] == first["block"] and later["intercepts"] == first["intercepts"]
    assert later["sampler"] == first["sampler"] is not None

    # a changed prior (a float) is an argument: the same structure and executable serve it, untraced
    moved = run_process(tmp_path, "pull_request.log_lines_mean=4.5")
    assert moved["traced"] == 0 and moved["sampler"] == first["sampler"]
    assert moved["evaluations"] > 1 and moved["block"] != first["block"]  # its own calibration, other data
    assert len(list((tmp_path / "sampler").iterdir())) == 1


# Keeps, under the sampler's own entry, what serializing an executable that JAX loaded from its own
# persistent cache gives: an executable without its kernels (run twice: the first fills JAX's cache).
WITHOUT_KERNELS = """
import sys
from pathlib import Path
import jax
from jax.experimental import serialize_executable
from causalsynth.engine import cache, identity
from causalsynth.engine import sampling
from causalsynth.config.loading import load_config
from causalsynth.engine.program import Program
jax.config.update("jax_compilation_cache_dir", sys.argv[2])
jax.config.update("jax_persistent_cache_min_compile_time_secs", 0)
jax.config.update("jax_persistent_cache_min_entry_size_bytes", 0)
cache.enable(sys.argv[1])
program = Program(load_config(sys.argv[3], overrides=sys.argv[4:]))
params = sampling.with_intercepts(program.config.params, {c.name: 0.0 for c in program.model.CALIBRATION})
args = (sampling.block_key(3, 0), params, program.interventions())
executable, _, out_tree = serialize_executable.serialize(program.sample_block._jitted.lower(*args).compile())
cache.store_object("sampler", program.sample_block._entry_identity(identity.signature(args)),
                   {"executable": executable, "out_tree": out_tree})
"""


@pytest.mark.slow
def test_a_kept_executable_without_its_kernels_is_compiled_afresh(first_run, tmp_path):
    fresh = first_run[1]
    for _ in range(2):
        subprocess.run([sys.executable, "-c", WITHOUT_KERNELS, str(tmp_path / "ours"), str(tmp_path / "jax"),
                        str(PLUGIN), SMALL_BLOCKS], capture_output=True, text=True, check=True)
    (entry,) = (tmp_path / "ours" / "sampler").iterdir()
    broken = hashlib.sha256(pickle.loads(entry.read_bytes()[32:])["executable"]).hexdigest()

    replaced = run_process(tmp_path / "ours")  # its first run fails: compiled afresh, and kept
    assert replaced["block"] == fresh["block"] and replaced["intercepts"] == fresh["intercepts"]
    assert replaced["sampler"] not in (broken, None)
    assert [p.name for p in (tmp_path / "ours" / "sampler").iterdir()] == [entry.name]  # the same entry, replaced
    assert run_process(tmp_path / "ours")["traced"] == 0


# A fresh process on a warm cache, as a second command is: a dataset with a prior set anew, and its
# twins under a variant that sets a site (do) and one that shifts priors. Prints the entries it compiled
# and the shipped model's traces it made.
WARM = """
import json, sys, tempfile
from causalsynth.config.loading import load_config
from causalsynth.engine import cache, compiled
from causalsynth.engine.interventions import load_variant
from causalsynth.engine.program import Program
from causalsynth.jobs.sample import sample_dataset, sample_twin
cache.enable(sys.argv[1])
made, traced = [], []
compile_, trace = compiled.CachedJit._compile, Program._trace
compiled.CachedJit._compile = lambda self, *a: made.append(self._kind) or compile_(self, *a)
Program._trace = lambda self, *a, **k: traced.append(1) or trace(self, *a, **k)
out = tempfile.mkdtemp()
sample_dataset(config=load_config(overrides=sys.argv[2:]), n_prs=200, seed=4, to=out + "/factual")
for variant in ("no_regressions", "peak_load"):
    sample_twin(out + "/factual", load_variant(variant), to=out + "/" + variant)
print(json.dumps({"compiled": made, "traced": len(traced)}))
"""


@pytest.mark.slow
def test_a_new_prior_or_a_variant_compiles_nothing_in_a_fresh_process(tmp_path, small_config):
    """Only a change of the model's source or of its shapes compiles: a prior set anew, a hard
    intervention and a shifted prior all run the sampler kept by an earlier process."""
    from causalsynth.jobs.sample import sample_dataset

    sample_dataset(config=small_config, n_prs=200, seed=4, to=tmp_path / "earlier")  # the cache holds its sampler
    done = subprocess.run([sys.executable, "-c", WARM, str(cache.DIRECTORY), SMALL_BLOCKS, "regression.rate=0.33"],
                          capture_output=True, text=True, check=True)
    assert json.loads(done.stdout.splitlines()[-1]) == {"compiled": [], "traced": 0}


@pytest.mark.slow
def test_intercepts_kept_by_another_executable_are_evaluated_once(first_run, tmp_path):
    """The sampler's runs are deterministic, so intercepts kept with the loaded executable's digest are
    what evaluating them again would give; any other entry is checked by one evaluation."""
    shutil.copytree(first_run[0], tmp_path, dirs_exist_ok=True)
    solved = first_run[1]
    (entry,) = (tmp_path / "calibration").iterdir()
    kept = pickle.loads(entry.read_bytes()[32:])
    assert kept == {"intercepts": solved["intercepts"], "sampler": solved["sampler"]}
    data = pickle.dumps(kept | {"sampler": "another executable"})
    entry.write_bytes(hashlib.sha256(data).digest() + data)
    checked = run_process(tmp_path)
    assert checked["evaluations"] == 1 and checked["intercepts"] == solved["intercepts"]


def test_a_changed_structure_or_machine_is_another_entry(own_cache, small_config):
    program = Program(small_config)
    args = block_args(program)
    key = identity.signature(args)
    assert identity.signature(block_args(Program(small_config.with_overrides(["pull_request.added_logit_mean=0.2"])))) \
        == key  # floats count by type only
    longer = Program(small_config.with_overrides(["calendar.window_days=300"]))  # an int: structure
    assert identity.signature(block_args(longer)) != key
    entry = cache.model_identity(program.model) | identity.machine_identity()
    assert {"source", "package", "jax", "jaxlib", "device", "cpu", "xla_flags"} <= entry.keys()


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


@pytest.mark.slow
def test_the_sampler_run_last_is_loaded_ahead_and_serves_only_its_own_signature(monkeypatch, tmp_path,
                                                                                small_config):
    """A command starts ``load_ahead`` before its imports: the executable this machine ran last is
    deserialized on a thread and serves the next call of its signature; a call of other shapes loads
    its own, and becomes the one run last."""
    from causalsynth.engine import compiled

    # A cache of the test's own around the session's compiled samplers: the pointer to the one run last
    # is this test's alone, whatever the other test processes (pytest-xdist's workers) run meanwhile.
    (cache.DIRECTORY / "sampler").mkdir(parents=True, exist_ok=True)
    (tmp_path / "sampler").symlink_to(cache.DIRECTORY / "sampler", target_is_directory=True)
    monkeypatch.setattr(cache, "DIRECTORY", tmp_path)
    monkeypatch.setattr(compiled, "_LOADED", {})
    program = Program(small_config)
    args = block_args(program)
    first = jax.device_get(program.sample_block(*args))  # loaded here: the pointer names its entry

    monkeypatch.setattr(compiled, "_LOADED", {})  # as a new process finds it
    monkeypatch.setattr(compiled, "_AHEAD", {})
    loads = []
    load = compiled.CachedJit._load_or_compile
    monkeypatch.setattr(compiled.CachedJit, "_load_or_compile", lambda self, *a: loads.append(1) or load(self, *a))
    thread = compiled.load_ahead("sampler")
    assert thread is not None and thread.name == "causalsynth-load-sampler"
    assert compiled.load_ahead("sampler") is None  # once: already on its way
    thread.join()
    again = jax.device_get(Program(small_config).sample_block(*args))
    assert loads == [] and all(np.array_equal(again[k], first[k]) for k in first)  # loaded ahead, same values

    other = Program(load_config())  # the default's blocks: other shapes, so an executable of its own
    jax.device_get(other.sample_block(*block_args(other)))
    assert loads == [1]
    pointer = cache.load_object("last", {"kind": "sampler"} | identity.machine_identity())
    assert pointer["entry"] == other.sample_block._entry_identity(identity.signature(block_args(other)))


def test_nothing_is_loaded_ahead_without_a_cache_or_a_sampler_run_before(monkeypatch, own_cache):
    from causalsynth.engine import compiled

    assert compiled.load_ahead("sampler") is None  # an empty cache
    monkeypatch.setattr(cache, "DIRECTORY", None)
    assert compiled.load_ahead("sampler") is None


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


@pytest.mark.parametrize("edited", ["spec/modeling.py", "config/loading.py", "engine/program.py"])
def test_an_edit_anywhere_in_the_package_is_another_key(tmp_path, edited):
    """A trace runs the primitives (spec/), the config (config/) and the engine alike: the caches' key
    holds the whole package's source, so an edit to any of it never reads what the code before kept."""
    import shutil

    import causalsynth
    from causalsynth.config.plugins import source_digest

    copy = tmp_path / "causalsynth"
    shutil.copytree(Path(causalsynth.__file__).parent, copy, ignore=shutil.ignore_patterns("__pycache__"))
    assert source_digest(copy) == identity.package_digest()
    with open(copy / edited, "a") as f:
        f.write("\n# an edit\n")
    assert source_digest(copy) != identity.package_digest()
