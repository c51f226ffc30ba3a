"""Same seed and config, same bytes; positional keys make prefixes and block order irrelevant."""

from __future__ import annotations

from pathlib import Path

import pandas as pd
import pyarrow as pa
import pytest
from conftest import CI_BUILDS, TABLES, read_tables, sha256
from typer.testing import CliRunner

from causalsynth.cli import app
from causalsynth.config.loading import load_config
from causalsynth.dataset.manifest import read_manifest
from causalsynth.engine.program import Program
from causalsynth.engine.sampling import calibrate, sample_blocks, with_intercepts
from causalsynth.engine.tabulate import schemas, start_epoch_ms, tabulate
from causalsynth.jobs.sample import Run, sample_dataset


def checksums(directory):
    return {name: [p["sha256"] for p in t["parts"]] for name, t in read_manifest(directory)["tables"].items()}


@pytest.mark.parametrize("seed", [0, 1, 7, 123_456, 2**31 - 1, 2**31, 2**32 - 1])
def test_block_keys_are_jax_fold_in_of_the_seeds_key(seed):
    """A block's key is computed on the host: the same bits as JAX's ``fold_in(key(seed), index)``,
    for every seed ``--seed`` takes and block indices up to the largest."""
    import jax
    import numpy as np

    from causalsynth.engine.sampling import block_key

    for index in (0, 1, 2, 9, 1_000, 2**20 + 3, 2**31 - 1, 2**32 - 1):
        ours, theirs = block_key(seed, index), jax.random.fold_in(jax.random.key(seed), index)
        assert ours.dtype == theirs.dtype
        assert np.array_equal(jax.random.key_data(ours), jax.random.key_data(theirs)), (seed, index)


def test_same_seed_same_bytes_other_seed_other_data(tmp_path, small_config):
    for name, seed in (("a", 5), ("b", 5), ("c", 6)):
        sample_dataset(config=small_config, n_prs=2_500, seed=seed, to=tmp_path / name)
    a, b, c = (checksums(tmp_path / n) for n in "abc")
    assert a == b
    assert (tmp_path / "a" / "manifest.json").read_bytes() == (tmp_path / "b" / "manifest.json").read_bytes()
    assert all(a[t] != c[t] for t in TABLES)
    # the recorded checksums are those of the files
    parts = read_manifest(tmp_path / "a")["tables"]
    assert all(sha256(tmp_path / "a" / p["file"]) == p["sha256"] for t in TABLES for p in parts[t]["parts"])


def test_blocks_sampled_several_at_once_give_the_same_bytes(tmp_path, small_config):
    """Three blocks a call (the last call filled up past the end): each block's values are those it has
    alone, on the CPU to the bit, so the dataset is the same file for file; and the CLI takes the option."""
    sample_dataset(config=small_config, n_prs=4_500, seed=5, to=tmp_path / "one")
    sample_dataset(config=small_config, n_prs=4_500, seed=5, to=tmp_path / "three", run=Run(at_once=3))
    assert checksums(tmp_path / "one") == checksums(tmp_path / "three")
    assert len(checksums(tmp_path / "one")["pull_requests"]) == 5
    assert (tmp_path / "one" / "manifest.json").read_bytes() == (tmp_path / "three" / "manifest.json").read_bytes()
    refused = CliRunner().invoke(app, ["sample", "--n-prs", "10", "--out", str(tmp_path / "none"),
                                       "--blocks-at-once", "0"])
    assert refused.exit_code == 2 and "--blocks-at-once" in refused.output and not (tmp_path / "none").exists()


def test_first_n_prs_of_a_larger_dataset_are_the_n_pr_dataset(tmp_path, small_config):
    sample_dataset(config=small_config, n_prs=1_500, seed=9, to=tmp_path / "small")
    sample_dataset(config=small_config, n_prs=3_200, seed=9, to=tmp_path / "large")
    small, large = read_tables(tmp_path / "small"), read_tables(tmp_path / "large")
    keep = {"pull_requests": set(small["pull_requests"].pr_id)}
    parents = {"system_runs": ("pull_requests", "pr_id"), "service_metrics": ("system_runs", "run_id"),
               "ecommerce_flows": ("system_runs", "run_id"), "flow_steps": ("ecommerce_flows", "flow_id")}
    keys = {"pull_requests": "pr_id", "system_runs": "run_id", "service_metrics": "service_metric_id",
            "ecommerce_flows": "flow_id", "flow_steps": "step_id"}
    for table in TABLES:
        parent, fk = parents.get(table, ("pull_requests", "pr_id"))
        frame = large[table]
        frame = frame[frame[fk].isin(keep[parent])]
        frame = frame.reset_index(drop=True)
        keep[table] = set(frame[keys[table]])
        pd.testing.assert_frame_equal(frame, small[table].reset_index(drop=True), check_exact=True)
    assert len(large["pull_requests"]) == 3_200


def test_block_order_does_not_change_the_data(small_config):
    program = Program(small_config)
    params = with_intercepts(small_config.params, calibrate(program))
    sch, start = schemas(program), start_epoch_ms(small_config.sampling["start"])

    def tables(indices):
        blocks = sorted(sample_blocks(program, params, 4, 2_500, indices), key=lambda b: b.index)
        batches = [tabulate(program, b, start, sch) for b in blocks]
        return {t: pa.Table.from_batches([b[t] for b in batches]) for t in sch}

    forward, backward = tables([0, 1, 2]), tables([2, 0, 1])
    assert all(forward[t].equals(backward[t]) for t in sch)


def test_cached_intercepts_are_verified_then_reused(monkeypatch):
    """A solution kept by this very executable is reused as it is; one kept by another costs one
    evaluation and gives the same intercepts; a stale one is solved again. The calibration knows no
    model: run on the small ci_builds plug-in."""
    from causalsynth.engine import cache, sampling

    plugin = load_config(CI_BUILDS / "ci_builds.yaml", overrides=["sampling.block_prs=500", "sampling.calibration_prs=500"])
    program = Program(plugin.with_overrides(["bug.rate=0.27"]))  # an entry of its own
    other = Program(plugin.with_overrides(["bug.rate=0.3"]))
    entry = cache._path("calibration", cache.config_identity(program))
    for kept in (entry, cache._path("calibration", cache.config_identity(other))):
        kept.unlink(missing_ok=True)  # an earlier run's
    evaluations = []
    solve = sampling.block_means
    monkeypatch.setattr(sampling, "block_means", lambda *a, **k: evaluations.append(1) or solve(*a, **k))
    first = calibrate(program)
    solving = len(evaluations)
    assert solving > 1 and entry.is_file()
    assert calibrate(program) == first and len(evaluations) == solving
    cache.store_object("calibration", cache.config_identity(program), {"intercepts": first, "sampler": None})
    assert calibrate(program) == first and len(evaluations) == solving + 1
    stale = {"intercepts": {name: value + 0.5 for name, value in first.items()}, "sampler": None}
    cache.store_object("calibration", cache.config_identity(program), stale)
    assert calibrate(program) == first and len(evaluations) == 2 * solving + 2
    entry.write_bytes(entry.read_bytes()[:-3])  # damaged
    assert calibrate(program) == first and len(evaluations) == 3 * solving + 2
    assert calibrate(other)["bug"] != first["bug"]  # another config, another entry
    assert cache._path("calibration", cache.config_identity(other)).is_file()


def test_the_cached_graph_is_the_derived_one(tmp_path, small_config, monkeypatch):
    from causalsynth.causal import graph
    from causalsynth.engine import cache

    program = Program(small_config)
    derived = graph._derive_graph(program)
    monkeypatch.setattr(cache, "DIRECTORY", tmp_path)
    graph.model_graph(program)  # derived, and kept
    monkeypatch.setattr(graph, "_derive_graph", lambda program: pytest.fail("derived again"))
    cached = graph.model_graph(program)
    assert cached.edges == derived.edges and cached.nodes == derived.nodes
    assert cached.config_parents == derived.config_parents
    assert cached.descendants({"has_performance_regression"}) == derived.descendants({"has_performance_regression"})


def test_calibration_depends_on_the_config_not_the_seed(tmp_path, small_config):
    sample_dataset(config=small_config, n_prs=100, seed=1, to=tmp_path / "one")
    sample_dataset(config=small_config, n_prs=100, seed=2, to=tmp_path / "two")
    one, two = read_manifest(tmp_path / "one"), read_manifest(tmp_path / "two")
    assert one["calibration"] == two["calibration"]


def test_an_edited_model_never_reads_the_entries_of_its_previous_source(tmp_path, small_config, monkeypatch):
    """Cached intercepts and graphs are keyed by the model's source files, not only its version."""
    import shutil
    import types

    from causalsynth.engine import cache, identity

    source = Path(small_config.model.__file__).parent
    shutil.copytree(source, tmp_path / "model")
    copy = types.ModuleType("copy_of_the_model")
    copy.__file__ = str(tmp_path / "model" / "__init__.py")
    copy.__path__ = [str(tmp_path / "model")]  # a package, as the shipped model is
    before = identity.model_digest(copy)
    assert before == identity.model_digest(small_config.model)
    with open(tmp_path / "model" / "story.py", "a") as f:
        f.write("\n# an edit\n")
    identity.model_digest.cache_clear()
    assert identity.model_digest(copy) != before
    monkeypatch.setattr(cache, "DIRECTORY", tmp_path / "cache")
    program = Program(small_config)
    key = cache._path("graph", cache.config_identity(program))
    monkeypatch.setattr(identity, "model_digest", lambda model: "edited")
    assert cache._path("graph", cache.config_identity(program)) != key



def test_models_traced_in_two_threads_at_once_are_what_one_thread_traces(small_config, key):
    """NumPyro's handler stack is one per process: models are traced under a lock, so a Dask worker's
    threads (or a library user's) each get their own model's trace."""
    import hashlib
    import sys
    import threading

    import jax
    import numpy as np

    from causalsynth.causal import graph

    def run(results, i):
        try:
            program = Program(small_config)
            params = with_intercepts(program.config.params, {c.name: 0.1 for c in program.model.CALIBRATION})
            out = jax.device_get(program.sample_block(key, params, program.interventions()))
            block = hashlib.sha256(b"".join(np.ascontiguousarray(out[k]).tobytes() for k in sorted(out)))
            results[i] = (program.tables, graph._derive_graph(program).edges, block.hexdigest())
        except Exception as exc:  # a trace under the other's handlers fails, or gives other values
            results[i] = repr(exc)

    alone: dict = {}
    run(alone, 0)
    interval = sys.getswitchinterval()
    sys.setswitchinterval(1e-5)  # the threads switch often, as on a busy worker
    try:
        together: dict = {}
        threads = [threading.Thread(target=run, args=(together, i)) for i in range(2)]
        for thread in threads:
            thread.start()
        for thread in threads:
            thread.join()
    finally:
        sys.setswitchinterval(interval)
    assert together == {0: alone[0], 1: alone[0]}
