"""The model's causal graph, read off the program by provenance tracking.

Each site's parents are the sites its distribution (or, for a deterministic
site, its value) is computed from; each site's config parents are the priors
it reads. Nothing is kept by hand: the graph is a JAX abstract interpretation
of the model (NumPyro's ``eval_provenance``, the machinery behind its
``render_model``), extended to deterministic sites and to config values.
"""

from __future__ import annotations

import json
from collections import defaultdict
from dataclasses import dataclass
from functools import cached_property

import jax
from numpyro import handlers
from numpyro.ops.provenance import eval_provenance

from causalsynth.engine.program import TRACING, Program
from causalsynth.errors import MissingTool, one_line

CONFIG = "config:"
TRACE_PRS = 2  # plate sizes do not change the graph; a tiny one is cheapest


class _substitute_deterministic(handlers.substitute):
    """Feed a deterministic site's value from ``data`` and keep its computed value as an arg,
    so that its provenance is its own inputs and its children depend on it, not on them."""

    def process_message(self, msg):
        if msg["type"] == "deterministic":
            msg["args"] = (msg["value"],)
            msg["value"] = self.data.get(msg["name"])


def _adjacency(pairs) -> dict[str, set[str]]:
    out: dict[str, set[str]] = defaultdict(set)
    for a, b in pairs:
        out[a].add(b)
    return out


def _reach(start, neighbours: dict[str, set[str]]) -> set[str]:
    """``start`` and every node reachable from it."""
    seen, stack = set(), list(start)
    while stack:
        node = stack.pop()
        if node not in seen:
            seen.add(node)
            stack.extend(neighbours.get(node, ()))
    return seen


@dataclass(frozen=True)
class Graph:
    """Sites, their kinds and tables, and the edges between them."""

    nodes: dict[str, dict]
    edges: tuple[tuple[str, str], ...]
    config_parents: dict[str, tuple[str, ...]]

    @cached_property
    def children(self) -> dict[str, set[str]]:
        return _adjacency(self.edges)

    @cached_property
    def parents(self) -> dict[str, set[str]]:
        return _adjacency((child, parent) for parent, child in self.edges)

    def descendants(self, sites) -> set[str]:
        """The sites themselves and everything downstream of them."""
        return _reach(sites, self.children)

    def ancestors(self, site: str) -> set[str]:
        """Everything upstream of the site."""
        return _reach(self.parents.get(site, ()), self.parents)

    def reading(self, paths) -> set[str]:
        """Sites that read any of the config ``paths`` (or a path below one of them)."""
        paths = tuple(paths)
        return {site for site, deps in self.config_parents.items()
                if any(d == p or d.startswith(p + ".") for d in deps for p in paths)}

    # --- views ----------------------------------------------------------------
    def contracted(self, shown: set[str]) -> set[tuple[str, str]]:
        """Edges between ``shown`` sites: a → b when some path from a to b passes only
        through sites not shown."""
        edges = set()
        for node in shown:
            stack, seen = list(self.parents.get(node, ())), set()
            while stack:
                parent = stack.pop()
                if parent in seen:
                    continue
                seen.add(parent)
                if parent in shown:
                    edges.add((parent, node))
                else:
                    stack.extend(self.parents.get(parent, ()))
        return edges

    def stage_view(self, shown) -> Graph:
        """The graph of the ``shown`` sites alone, in their tables (stages): noise, scaffolding
        and every other site hidden. An edge means "causes, directly or through sites not shown"."""
        shown = set(shown)
        order = [n for n in self.nodes if n in shown]
        return Graph(nodes={n: self.nodes[n] for n in order}, edges=tuple(sorted(self.contracted(set(order)))),
                     config_parents={n: self.config_parents.get(n, ()) for n in order})

    # --- renderings ----------------------------------------------------------
    def to_json(self) -> dict:
        return {"nodes": [{"site": n, **a} for n, a in self.nodes.items()],
                "edges": [list(e) for e in self.edges]}

    def to_dot(self, highlight=frozenset(), labels: str = "site") -> str:
        """Graphviz DOT: one cluster per table; ``highlight`` (an intervened site and its
        descendants) filled. ``labels`` is "site" (qualified names) or "column" (short)."""
        by_table: dict[str, list[str]] = defaultdict(list)
        for name, attrs in self.nodes.items():
            by_table[attrs["table"] or "not a column"].append(name)
        lines = ["digraph causalsynth {", "  rankdir=LR; newrank=true; nodesep=0.12; ranksep=0.25;",
                 '  node [shape=box, style="rounded,filled", fillcolor=white, fontname="Helvetica", fontsize=11,'
                 ' height=0.3, margin="0.08,0.03"];',
                 '  edge [color="#8a8a8a", arrowsize=0.6];',
                 '  graph [fontname="Helvetica", fontsize=12, style="rounded", color="#c8c8c8"];']
        for i, (table, names) in enumerate(by_table.items()):
            lines.append(f'  subgraph cluster_{i} {{ label="{table}"; labeljust=l;')
            for name in names:
                attrs = self.nodes[name]
                label = (attrs["column"] or name) if labels == "column" else name
                style = []
                if not attrs["public"]:
                    style.append('style="dashed,rounded", fontcolor=gray40')
                if name in highlight:
                    style.append('fillcolor="#fde2b8", color="#d9822b", penwidth=1.6')
                lines.append(f'    "{name}" [label="{label}"{", " if style else ""}{", ".join(style)}];')
            lines.append("  }")
        for a, b in self.edges:
            hot = ' [color="#d9822b", penwidth=1.4]' if a in highlight and b in highlight else ""
            lines.append(f'  "{a}" -> "{b}"{hot};')
        lines.append("}")
        return "\n".join(lines) + "\n"

    def render(self, fmt: str, highlight=frozenset(), labels: str = "site") -> bytes:
        if fmt == "json":
            return (json.dumps(self.to_json(), indent=2) + "\n").encode()
        dot = self.to_dot(highlight, labels)
        if fmt == "dot":
            return dot.encode()
        if fmt in ("svg", "png"):
            return graphviz(dot, fmt)
        raise ValueError(fmt)


GRAPHVIZ_HELP = ("Graphviz's dot program is not installed: install Graphviz (Debian/Ubuntu: apt-get install "
                 "graphviz; macOS: brew install graphviz; conda: conda install graphviz)")


def graphviz_program() -> str | None:
    """The path of Graphviz's ``dot`` program, or None where it is not installed."""
    import shutil

    return shutil.which("dot")


def graphviz(dot: str, fmt: str) -> bytes:
    """``dot`` laid out and drawn by Graphviz's ``dot`` program, as SVG or PNG."""
    import subprocess

    program = graphviz_program()
    if program is None:
        raise MissingTool(GRAPHVIZ_HELP)
    result = subprocess.run([program, f"-T{fmt}"], input=dot.encode(), capture_output=True, timeout=120)
    if result.returncode != 0:
        raise MissingTool(f"Graphviz's dot failed: {one_line(result.stderr.decode(errors='replace'))}")
    return result.stdout


def story_sites(program: Program) -> set[str]:
    """The sites a reader of the model cares about: the columns its marginals, causal signatures
    and report plots name (what ``validate`` and ``report`` hold the data to)."""
    site = {(t.table.name, c.name): c.site for t in program.tables for c in t.columns}
    model = program.model
    refs = [m.column for m in model.MARGINALS] + [f"{p.table}.{p.column}" for p in model.REPORT]
    refs += [ref for sig in model.SIGNATURES for ref in (sig.column, sig.by if "." in sig.by
                                                          else f"{sig.column.partition('.')[0]}.{sig.by}")]
    found = (site.get(tuple(ref.partition("=")[0].split(".", 1))) for ref in refs)
    return {s for s in found if s is not None}


def model_graph(program: Program) -> Graph:
    """The site-level causal graph of ``program``'s model (no sampling, no compilation).

    Derived once per config, model and package (``Program.kept``): a kept graph is used when
    its sites are exactly the program's."""
    return program.kept("graph", lambda: _derive_graph(program),
                        lambda kept: isinstance(kept, Graph) and set(kept.nodes) == set(program.sites))


def _derive_graph(program: Program) -> Graph:
    model = program.model.model
    params = program.initial_params()
    param_leaves = params.leaves()

    def site_values():
        with TRACING:
            trace = handlers.trace(handlers.seed(model, 0)).get_trace(params, TRACE_PRS)
        return {n: s["value"] for n, s in trace.items() if s["type"] in ("sample", "deterministic")}

    values = jax.eval_shape(site_values)

    def provenance(**inputs):
        p = params.with_leaves({k[len(CONFIG):]: v for k, v in inputs.items() if k.startswith(CONFIG)})
        data = {k: v for k, v in inputs.items() if not k.startswith(CONFIG)}
        with TRACING, handlers.trace() as trace, handlers.seed(rng_seed=0):
            with handlers.substitute(data=data), _substitute_deterministic(data=data):
                model(p, TRACE_PRS)
        return {name: site["fn"].log_prob(site["value"]) if site["type"] == "sample" else site["args"][0]
                for name, site in trace.items() if site["type"] in ("sample", "deterministic")}

    deps = eval_provenance(provenance, **values, **{CONFIG + k: v for k, v in param_leaves.items()})
    edges = [(parent, name) for name in values for parent in values
             if parent != name and parent in deps[name]]
    columns = {c.site: (t.table.name, c) for t in program.tables for c in t.columns}
    # A timestamp is stored as an offset from another (and whole days of a third):
    # its table value depends on those too.
    edges += [(base, site) for site, (_, c) in columns.items() for base in (c.since, c.days) if base]
    nodes = {}
    for name in values:
        site = program.sites[name]
        table, column = columns.get(name, (None, None))
        nodes[name] = {"kind": site.kind, "public": site.is_public, "table": table,
                       "column": column.name if column else None}
    config_parents = {name: tuple(sorted(k[len(CONFIG):] for k in deps[name] if k.startswith(CONFIG)))
                      for name in values}
    return Graph(nodes=nodes, edges=tuple(dict.fromkeys(edges)), config_parents=config_parents)
