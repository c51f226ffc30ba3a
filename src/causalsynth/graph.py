"""The model's causal graph, read off the program by provenance tracking.

Each site's parents are the sites its distribution (or, for a deterministic
site, its value) is computed from; each site's config parents are the priors
it reads. Nothing is kept by hand: the graph is a JAX abstract interpretation
of the model (NumPyro's ``eval_provenance``, the machinery behind its
``render_model``), extended to deterministic sites and to config values.
"""

from __future__ import annotations

import io
import json
from collections import defaultdict
from dataclasses import dataclass
from functools import cached_property

import jax
from numpyro import handlers
from numpyro.ops.provenance import eval_provenance

from causalsynth import cache
from causalsynth.program import Program

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

    # --- renderings ----------------------------------------------------------
    def to_json(self) -> dict:
        return {"nodes": [{"site": n, **a} for n, a in self.nodes.items()],
                "edges": [list(e) for e in self.edges]}

    def to_dot(self) -> str:
        by_table: dict[str, list[str]] = defaultdict(list)
        for name, attrs in self.nodes.items():
            by_table[attrs["table"] or "latent"].append(name)
        lines = ["digraph causalsynth {", "  rankdir=LR;", '  node [shape=box, fontsize=10];']
        for i, (table, names) in enumerate(by_table.items()):
            lines.append(f'  subgraph cluster_{i} {{ label="{table}";')
            for name in names:
                style = ', style=dashed, fontcolor=gray40' if not self.nodes[name]["public"] else (
                    ', style=rounded' if self.nodes[name]["kind"] == "deterministic" else '')
                lines.append(f'    "{name}" [label="{name}"{style}];')
            lines.append("  }")
        lines += [f'  "{a}" -> "{b}";' for a, b in self.edges]
        lines.append("}")
        return "\n".join(lines) + "\n"

    def to_png(self) -> bytes:
        """A layered drawing: columns by causal depth, colours by table."""
        import matplotlib

        matplotlib.use("Agg")
        import matplotlib.pyplot as plt

        depth: dict[str, int] = {}

        def level(site: str) -> int:
            if site not in depth:
                depth[site] = 1 + max((level(p) for p in self.parents.get(site, ())), default=-1)
            return depth[site]

        columns: dict[int, list[str]] = defaultdict(list)
        for name in self.nodes:
            columns[level(name)].append(name)
        pos = {name: (x, -y) for x, names in columns.items() for y, name in enumerate(names)}
        tables = sorted({a["table"] or "latent" for a in self.nodes.values()})
        colour = {t: plt.cm.tab10(i % 10) for i, t in enumerate(tables)}
        height = max(len(v) for v in columns.values())
        fig, ax = plt.subplots(figsize=(3.2 * len(columns), 0.28 * height + 1.5))
        for a, b in self.edges:
            (x0, y0), (x1, y1) = pos[a], pos[b]
            ax.annotate("", xy=(x1, y1), xytext=(x0, y0),
                        arrowprops=dict(arrowstyle="->", lw=0.3, color="0.6", shrinkA=4, shrinkB=4))
        for name, (x, y) in pos.items():
            table = self.nodes[name]["table"] or "latent"
            ax.text(x, y, name, ha="center", va="center", fontsize=6,
                    bbox=dict(boxstyle="round,pad=0.2", fc=colour[table], alpha=0.35, lw=0.3))
        for t in tables:
            ax.scatter([], [], color=colour[t], alpha=0.5, label=t)
        ax.legend(loc="upper right", fontsize=7, frameon=False)
        ax.set_xlim(-0.7, len(columns) - 0.3)
        ax.set_ylim(-height, 1)
        ax.axis("off")
        buf = io.BytesIO()
        fig.savefig(buf, format="png", dpi=120, bbox_inches="tight")
        plt.close(fig)
        return buf.getvalue()

    def render(self, fmt: str) -> bytes:
        if fmt == "json":
            return (json.dumps(self.to_json(), indent=2) + "\n").encode()
        if fmt == "dot":
            return self.to_dot().encode()
        if fmt == "png":
            return self.to_png()
        raise ValueError(fmt)


def model_graph(program: Program) -> Graph:
    """The site-level causal graph of ``program``'s model (no sampling, no compilation).

    Derived once per config, model and package (``causalsynth.cache``): a cached
    graph is used when its sites are exactly the program's."""
    cached = cache.load("graph", program)
    if cached is not None and set(cached.get("nodes", ())) == set(program.sites):
        return Graph(nodes=cached["nodes"], edges=tuple(tuple(e) for e in cached["edges"]),
                     config_parents={k: tuple(v) for k, v in cached["config_parents"].items()})
    graph = _derive_graph(program)
    cache.store("graph", program, {"nodes": graph.nodes, "edges": graph.edges, "config_parents":
                                   graph.config_parents})
    return graph


def _derive_graph(program: Program) -> Graph:
    model = program.model.model
    params = program.initial_params()
    param_leaves = params.leaves()

    def site_values():
        trace = handlers.trace(handlers.seed(model, 0)).get_trace(params, TRACE_PRS)
        return {n: s["value"] for n, s in trace.items() if s["type"] in ("sample", "deterministic")}

    values = jax.eval_shape(site_values)

    def provenance(**inputs):
        p = params.with_leaves({k[len(CONFIG):]: v for k, v in inputs.items() if k.startswith(CONFIG)})
        data = {k: v for k, v in inputs.items() if not k.startswith(CONFIG)}
        with handlers.trace() as trace, handlers.seed(rng_seed=0):
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
