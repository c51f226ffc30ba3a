"""The package's layout is its architecture: rules over the real import graph of src/causalsynth
(docs/guides/architecture.md), each shown to fail when a planted import breaks it."""

from __future__ import annotations

import ast
import shutil
from pathlib import Path

import networkx as nx
import pytest

SRC = Path(__file__).resolve().parents[1] / "src"
# engine/ is what a sampled block depends on: it must not reach the jobs that run it, the format they
# write, the checks that read it, or the command line.
ENGINE_MAY_NOT = ("causalsynth.jobs", "causalsynth.dataset", "causalsynth.validate", "causalsynth.cli")
VALIDATE_MAY_NOT = ("causalsynth.jobs", "causalsynth.cli")
SHIPPED_MODELS = "causalsynth.models"
# The caches are the engine's own: the command line turns them on, a job hands their directory to its
# workers, and everything else keeps results through Program.compiled and Program.kept.
CACHES, CACHE_USERS = "causalsynth.engine.cache", ("causalsynth.engine", "causalsynth.jobs", "causalsynth.cli")
# Opening a Parquet file to read it (pyarrow's readers, or a Location's .parquet): only dataset/ does;
# writing is the sinks' and the exports'.
PARQUET_READS = {"parquet", "ParquetFile", "read_table", "read_parquet", "ParquetDataset", "read_metadata", "read_schema"}
# The shipped model's tables: the engine reads a model's tables from its declarations, never by name.
SHIPPED_TABLES = {"pull_requests", "system_runs", "service_metrics", "ecommerce_flows", "flow_steps",
                  "service_timeseries", "traces", "trace_spans", "trace_logs"}


def module_name(root: Path, path: Path) -> str:
    parts = path.relative_to(root).with_suffix("").parts
    return ".".join(parts[:-1] if parts[-1] == "__init__" else parts)


def import_graph(root: Path) -> tuple[nx.DiGraph, dict[str, list[str]], dict[str, list[str]]]:
    """Module -> module edges of every import (function-level ones included), each module's Parquet
    reads, and each module's strings that name a table of the shipped model."""
    files = {module_name(root, p): p for p in (root / "causalsynth").rglob("*.py")}
    graph, reads, tables = nx.DiGraph(), {}, {}
    for name, path in files.items():
        graph.add_node(name)
        tree = ast.parse(path.read_text(), str(path))
        package = name if path.name == "__init__.py" else name.rpartition(".")[0]
        for node in ast.walk(tree):
            targets = []
            if isinstance(node, ast.Import):
                targets = [a.name for a in node.names]
            elif isinstance(node, ast.ImportFrom):
                base = node.module or ""
                if node.level:
                    up = package.split(".")[: len(package.split(".")) - node.level + 1]
                    base = ".".join(up + ([node.module] if node.module else []))
                # `from causalsynth.engine import cache` imports the module causalsynth.engine.cache
                targets = [f"{base}.{a.name}" if f"{base}.{a.name}" in files else base for a in node.names]
            elif isinstance(node, ast.Attribute) and node.attr in PARQUET_READS:
                reads.setdefault(name, []).append(f"line {node.lineno}: .{node.attr}")
            elif isinstance(node, ast.Constant) and node.value in SHIPPED_TABLES:
                tables.setdefault(name, []).append(f"line {node.lineno}: {node.value!r}")
            for target in targets:
                if target.startswith("causalsynth") and target != name:
                    graph.add_edge(name, target)
    return graph, reads, tables


def violations(root: Path) -> list[str]:
    graph, reads, tables = import_graph(root)
    inside = graph.subgraph(n for n in graph if not n.startswith(SHIPPED_MODELS))
    found = [f"cycle: {' -> '.join(c)}" for c in nx.simple_cycles(inside)]
    for a, b in graph.edges:
        if b.startswith(SHIPPED_MODELS) and not a.startswith(SHIPPED_MODELS):
            found.append(f"{a} imports the shipped model {b}")
        if a.startswith("causalsynth.engine") and b.startswith(ENGINE_MAY_NOT):
            found.append(f"{a} (engine) imports {b}")
        if a.startswith("causalsynth.validate") and b.startswith(VALIDATE_MAY_NOT):
            found.append(f"{a} (validate) imports {b}")
        if b == CACHES and not a.startswith(CACHE_USERS):
            found.append(f"{a} uses the engine's caches {b}")
        if b.startswith("causalsynth.cli") and not a.startswith("causalsynth.cli"):
            found.append(f"{a} imports the command line {b}")
    found += [f"{m} reads Parquet itself ({', '.join(r)}), not through causalsynth.dataset"
              for m, r in reads.items() if not m.startswith("causalsynth.dataset")]
    found += [f"{m} spells a table of the shipped model ({', '.join(t)})"
              for m, t in tables.items() if not m.startswith(SHIPPED_MODELS)]
    return found


def test_the_import_graph_keeps_the_rules():
    graph, _, _ = import_graph(SRC)
    assert len(graph) > 40 and graph.has_edge("causalsynth.jobs.sample", "causalsynth.engine.world")
    assert violations(SRC) == []


@pytest.mark.parametrize("module, planted, rule", [
    ("engine/sampling.py", "from causalsynth.jobs.sample import sample_dataset", "(engine) imports causalsynth.jobs"),
    ("engine/tabulate.py", "from causalsynth.dataset import manifest", "(engine) imports causalsynth.dataset"),
    ("validate/checks.py", "from causalsynth.jobs import blocks", "(validate) imports causalsynth.jobs"),
    ("tasks/rca.py", "from causalsynth.models.delivery_commerce import telemetry", "imports the shipped model"),
    ("spec/params.py", "from causalsynth.engine.program import Program", "cycle:"),
    ("tasks/ml.py", "import pyarrow.parquet as pq\npq.read_table('x')", "reads Parquet itself"),
    ("tasks/rca.py", "ds.location.parquet('x').read()", "reads Parquet itself"),
    ("jobs/load.py", "from causalsynth.cli.console import err", "imports the command line"),
    ("tasks/rca.py", "ds.read('system_runs')", "spells a table of the shipped model"),
    ("causal/graph.py", "from causalsynth.engine import cache", "uses the engine's caches"),
])
def test_a_planted_import_breaks_its_rule(tmp_path, module, planted, rule):
    shutil.copytree(SRC / "causalsynth", tmp_path / "causalsynth")
    path = tmp_path / "causalsynth" / module
    path.write_text(path.read_text() + f"\n\ndef _planted():\n    {planted.replace(chr(10), chr(10) + '    ')}\n")
    found = violations(tmp_path)
    assert any(rule in v for v in found), found


def test_every_package_is_installed():
    """A non-editable install holds only the packages pyproject.toml lists: each folder of the layout."""
    import tomllib

    listed = set(tomllib.loads((SRC.parent / "pyproject.toml").read_text())["tool"]["setuptools"]["packages"])
    found = {module_name(SRC, p.parent / "__init__.py") for p in (SRC / "causalsynth").rglob("__init__.py")}
    assert found <= listed, sorted(found - listed)


def test_the_shipped_tables_are_the_shipped_models():
    """The names the rule above looks for are the shipped model's tables, all of them."""
    from causalsynth.config.loading import load_config

    assert {t.name for t in load_config().model.TABLES} == SHIPPED_TABLES
