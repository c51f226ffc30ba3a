"""`causalsynth report`: one self-contained HTML file that reads top-down.

First the verdict and the headline rates against their targets; then the causal story (the
model's "effect" plots: a cause's effect on each stage, with the true effect where the second
dataset is a twin that intervened on it); then the causal graph, laid out by Graphviz, the
intervened site and its descendants highlighted in a twin's report; then the details (the other
plots, every marginal); last the checks, failures first and open, the full table folded.

Charts are Vega-Lite (``causalsynth.report.charts``): interactive offline, a static SVG without
JavaScript. With a comparison dataset (a counterfactual twin or a shifted variant) every chart
shows both. The file needs nothing else to open.
"""

from __future__ import annotations

import html
import math
from pathlib import Path

import numpy as np
import pandas as pd

from causalsynth.causal.graph import graphviz, model_graph, story_sites
from causalsynth.dataset.reading import Dataset
from causalsynth.dataset.staging import atomic_file
from causalsynth.errors import MissingTool
from causalsynth.report import charts
from causalsynth.spec.modeling import Plot
from causalsynth.validate.quality import Check, validate_dataset

STYLE = """
body { font-family: system-ui, sans-serif; margin: 1.2em auto; max-width: 1320px; color: #222; padding: 0 1em; }
h1 { font-size: 1.45em; margin: 0 0 .2em; } h2 { font-size: 1.15em; margin: 1.4em 0 .5em;
  border-bottom: 1px solid #ddd; } .meta { color: #555; font-size: .85em; margin: 0 0 .8em; }
.verdict { padding: .5em .9em; border-radius: 6px; font-weight: 600; margin: .3em 0; }
.verdict.ok { background: #e6f4ea; color: #176f2c; } .verdict.bad { background: #fde8e8; color: #b00020; }
table { border-collapse: collapse; font-size: .85em; } td, th { padding: 3px 9px; border-bottom: 1px solid #eee;
  text-align: left; } td.num { text-align: right; font-variant-numeric: tabular-nums; }
.pass { color: #176f2c; } .fail { color: #b00020; font-weight: bold; } .na { color: #777; }
.top { display: grid; grid-template-columns: minmax(300px, 1fr) 2fr; gap: 1.5em; align-items: start; }
.grid { display: grid; grid-template-columns: repeat(auto-fit, minmax(600px, 1fr)); gap: .8em 1.5em; }
figure { margin: 0; min-width: 0; overflow-x: auto; }
.top > *, .grid > * { min-width: 0; } figcaption { font-size: .82em; color: #444; margin-top: .2em; }
.graph svg { max-width: 100%; height: auto; } .note { background: #fff8e1; padding: .5em .8em; border-radius: 6px; }
details { margin: .4em 0; } summary { cursor: pointer; font-weight: 600; }
"""
CLASSES = {"pass": "pass", "FAIL": "fail", "n/a": "na"}
Z_95 = 1.959963984540054


class _Ids:
    def __init__(self):
        self.n = 0

    def __call__(self) -> str:
        self.n += 1
        return f"chart{self.n}"


# --- data for the charts ---------------------------------------------------------------------

def _frame(ds: Dataset, table: str, refs: list[str]) -> pd.DataFrame:
    return ds.frame(table, refs).rename(columns={r: r.replace(".", "_") for r in refs})


def _cause_frames(datasets: list[Dataset], plot: Plot) -> list[pd.DataFrame]:
    """Each dataset's rows of ``plot.table``: its key, ``plot.column`` as float and the cause as bool."""
    by = plot.by[0]
    frames = [_frame(ds, plot.table, [plot.column, by]) for ds in datasets]
    return [f.assign(**{plot.column: f[plot.column].astype(float), "cause": f[by.replace(".", "_")].astype(bool)})
            for f in frames]


def _group_means(frame: pd.DataFrame, plot: Plot, name: str) -> pd.DataFrame:
    rows = []
    for level, group in frame[plot.column].groupby(frame["cause"]):
        n, mean = len(group), float(group.mean())
        se = float(group.std(ddof=1) / math.sqrt(n)) if n > 1 else 0.0
        rows.append({"dataset": name, "level": str(level).lower(), "mean": mean, "low": mean - Z_95 * se,
                     "high": mean + Z_95 * se, "n": n})
    return pd.DataFrame(rows)


def _true_effect(factual: Dataset, twin: Dataset, frames: list[pd.DataFrame], plot: Plot) -> str | None:
    """The effect the twin measures, when it set the plot's cause: the mean, over the units whose
    factual cause differs from the twin's value, of factual minus twin outcome (same keys, same noise)."""
    by = plot.by[0]
    site = factual.site(*(by if "." in by else f"{plot.table}.{by}").split(".", 1))
    do = twin.manifest["intervention"]["do"]
    if site not in do:
        return None
    key = factual.program.table(plot.table).table.key
    a, b = (f.set_index(key)[[plot.column, "cause"]] for f in frames)
    joined = a[a["cause"] != bool(do[site])].join(b[[plot.column]].add_suffix("_twin"), how="inner")
    if joined.empty:
        return None
    diff = joined[plot.column] - joined[plot.column + "_twin"]
    value = not bool(do[site])
    return (f"true effect of {by} = {str(value).lower()} (from the twin, on the {len(joined):,} units "
            f"where it holds): {diff.mean():+.4g}")


def _histogram(frame: pd.DataFrame, plot: Plot, name: str, log_x: bool, edges: np.ndarray) -> pd.DataFrame:
    rows = []
    for level, group in frame[plot.column].groupby(frame["cause"]):
        counts, _ = np.histogram(group.to_numpy(), bins=edges)
        share = counts / max(len(group), 1)
        label = f"{plot.by[0].rpartition('.')[2]} = {str(level).lower()} (mean {group.mean():.4g})"
        rows += [{"dataset": name, "group": label, "start": float(s), "end": float(e), "density": float(d)}
                 for s, e, d in zip(edges[:-1], edges[1:], share)]
    return pd.DataFrame(rows)


def _bins(frames: list[pd.DataFrame], column: str) -> tuple[bool, np.ndarray]:
    """Shared bins, linear where the mass is: log-spaced only for a positive column with a long
    right tail (99th percentile over 20 times the median) and no long left one."""
    values = np.concatenate([f[column].to_numpy() for f in frames])
    p1, p50, p99 = np.quantile(values, [0.01, 0.5, 0.99])
    log_x = bool(p1 > 0 and p99 / p50 > 20 and p50 / p1 < 20)
    low, high = np.quantile(values, [0.001, 0.999])
    return log_x, (np.geomspace(low, high, 61) if log_x else np.linspace(low, high, 61))


def _shares(ds: Dataset, plot: Plot, name: str) -> pd.DataFrame:
    frame = _frame(ds, plot.table, [plot.column] + ([plot.among] if plot.among else []))
    if plot.among:
        frame = frame[frame[plot.among].astype(bool)]
    shares = frame[plot.column].astype(str).value_counts(normalize=True)
    return pd.DataFrame({"dataset": name, "level": shares.index, "share": shares.to_numpy()})


def _funnel(ds: Dataset, plot: Plot, name: str, by: str, levels: list[str]) -> pd.DataFrame:
    steps = _frame(ds, plot.table, [plot.column, plot.step])
    reached = steps.groupby([plot.column, plot.step], observed=True).size().unstack(fill_value=0) > 0
    reached = reached.reindex(columns=levels, fill_value=False)
    table, _, column = by.partition(".")
    units = _frame(ds, table, [column]).set_index(plot.column)[column]
    joined = reached.join(units)
    out = joined.groupby(column, observed=True)[levels].mean().stack().rename("share").reset_index()
    return out.rename(columns={column: "group", "level_1": "step", plot.step: "step"}).assign(dataset=name)


def _service_graph(ds: Dataset, plot: Plot) -> str:
    """Mean ``plot.column`` per node, drawn on the config's dependency graph by Graphviz."""
    means = _frame(ds, plot.table, [plot.node, plot.column]).groupby(plot.node, observed=True)[plot.column].mean()
    low, high = float(means.min()), float(means.max())
    lines = ["digraph services {", "  rankdir=LR;",
             '  node [shape=box, style="rounded,filled", fontname="Helvetica", fontsize=11];']
    for node, value in means.items():
        shade = 0.25 + 0.55 * (value - low) / max(high - low, 1e-9)  # HSV hue: red (low) to green (high)
        lines.append(f'  "{node}" [label="{node}\\n{value:.3f}", fillcolor="{shade * 0.45:.3f} 0.35 0.97", '
                     f'tooltip="mean {plot.column} of {node}: {value:.4f}"];')
    for caller, callees in ds.config.get(plot.edges).items():
        lines += [f'  "{caller}" -> "{callee}";' for callee in callees]
    return graphviz("\n".join(lines + ["}"]), "svg").decode()


# --- sections -------------------------------------------------------------------------------------

def _verdict(checks: list[Check], name: str) -> str:
    failed = [c for c in checks if not c.passed]
    if not failed:
        return f'<div class="verdict ok">{html.escape(name)}: valid, all {len(checks)} checks pass</div>'
    return (f'<div class="verdict bad">{html.escape(name)}: {len(failed)} of {len(checks)} checks fail '
            f'(first: {html.escape(failed[0].check)}; see <a href="#checks">the checks</a>)</div>')


def _headlines(datasets: list[Dataset], names: list[str], checks: list[list[Check]]) -> str:
    model = datasets[0].config.model
    rows = []
    for m in (m for m in model.MARGINALS if m.headline):
        cells = []
        for found in checks:
            check = next((c for c in found if c.check.startswith(f"marginal {m.column}")), None)
            observed = "" if check is None or check.value is None else f"{check.value:.2%}"
            verdict = "" if check is None else check.verdict
            cells.append(f"<td class='num'>{observed}</td><td class='{CLASSES.get(verdict, '')}'>{verdict}</td>")
        target = next((c.target for c in checks[0] if c.check.startswith(f"marginal {m.column}")
                       and c.target is not None), None)
        rows.append(f"<tr><td>{html.escape(m.headline)}</td>"
                    f"<td class='num'>{'' if target is None else f'{target:.2%}'}</td>{''.join(cells)}</tr>")
    heads = "".join(f"<th>{html.escape(n)}</th><th></th>" for n in names)
    return (f"<table id='headlines'><tr><th>rate</th><th>target</th>{heads}</tr>{''.join(rows)}</table>")


def _story(datasets: list[Dataset], names: list[str], ids: _Ids) -> list[str]:
    figures = []
    for plot in (p for p in datasets[0].config.model.REPORT if p.kind == "effect"):
        frames = _cause_frames(datasets, plot)
        frame = pd.concat([_group_means(f, plot, n) for f, n in zip(frames, names)])
        notes = []
        for n, part in zip(names, (frame[frame.dataset == n] for n in names)):
            by_level = part.set_index("level")["mean"]
            if {"true", "false"} <= set(by_level.index):
                notes.append(f"{n}: naive difference {by_level['true'] - by_level['false']:+.4g}")
        if len(datasets) > 1:
            truth = _true_effect(datasets[0], datasets[1], frames, plot)
            notes += [truth] if truth else []
        unit = f"{plot.table} rows"
        spec = charts.effect_bars(frame, plot.column, plot.by[0], unit)
        figures.append(charts.embed(spec, ids(), f"{plot.title}: mean {plot.column} by {plot.by[0]}, "
                                                 f"with 95 % intervals. " + "; ".join(notes)))
    return figures


def _graph(datasets: list[Dataset]) -> str:
    program = datasets[-1].program
    graph = model_graph(program)
    do = datasets[-1].manifest["intervention"]["do"]
    highlight = graph.descendants(set(do)) if do else set()
    caption = ("The model's causal story: the columns its checks and plots name, by table; an arrow means "
               "“causes, directly or through sites not shown”. Every site: <code>causalsynth graph --format svg "
               "--full</code>.")
    if do:
        assignments = html.escape(", ".join(f"do({k}={v})" for k, v in do.items()))
        caption += f" Highlighted: what the second dataset's {assignments} sets, and everything downstream of it."
    try:
        svg = graph.stage_view(story_sites(program) | set(do)).render("svg", highlight=highlight,
                                                                       labels="column").decode()
    except MissingTool as exc:
        return f"<p class='note'>{html.escape(str(exc))}; the graph is left out.</p>"
    return f"<figure class='graph'>{svg[svg.index('<svg'):]}<figcaption>{caption}</figcaption></figure>"


def _details(datasets: list[Dataset], names: list[str], checks: list[list[Check]], ids: _Ids) -> list[str]:
    figures = []
    marginal = pd.DataFrame([{"dataset": n, "check": c.check.removeprefix("marginal "), "observed": c.value,
                              "target": c.target, "verdict": c.verdict}
                             for n, found in zip(names, checks) for c in found if c.value is not None])
    if not marginal.empty:
        figures.append(charts.embed(charts.marginals(marginal), ids(),
                                    "Every configured rate and mix: realised (points) against its target (ticks)."))
    for plot in datasets[0].config.model.REPORT:
        if plot.kind == "distribution":
            frames = _cause_frames(datasets, plot)
            log_x, edges = _bins(frames, plot.column)
            frame = pd.concat([_histogram(f, plot, n, log_x, edges) for f, n in zip(frames, names)])
            figures.append(charts.embed(charts.histogram(frame, plot.column, log_x), ids(), plot.title))
        elif plot.kind == "mix":
            frame = pd.concat([_shares(ds, plot, n) for ds, n in zip(datasets, names)])
            figures.append(charts.embed(charts.shares(frame, plot.column, plot.among), ids(), plot.title))
        elif plot.kind == "funnel":
            levels = list(next(c.levels for c in datasets[0].program.table(plot.table).columns
                               if c.name == plot.step))
            for by in plot.by:
                frame = pd.concat([_funnel(ds, plot, n, by, levels) for ds, n in zip(datasets, names)])
                figures.append(charts.embed(charts.funnel(frame, levels, by.partition(".")[2]), ids(),
                                            f"{plot.title}: by {by.partition('.')[2]}"))
        elif plot.kind == "graph":
            for ds, n in zip(datasets, names):
                try:
                    body = _service_graph(ds, plot)
                    figures.append(f"<figure class='graph'>{body[body.index('<svg'):]}"
                                   f"<figcaption>{html.escape(plot.title)} ({html.escape(n)}): mean {plot.column} "
                                   f"per {plot.node}; arrows: calls</figcaption></figure>")
                except MissingTool as exc:
                    figures.append(f"<p class='note'>{html.escape(str(exc))}; {html.escape(plot.title)} is left "
                                   f"out.</p>")
    return figures


def _checks(checks: list[Check], name: str) -> str:
    def rows(found):
        return "".join(
            f"<tr><td>{html.escape(c.check)}</td><td>{html.escape(c.expected)}</td><td>{html.escape(c.observed)}"
            f"</td><td class='{CLASSES[c.verdict]}'>{c.verdict}</td></tr>" for c in found)

    head = "<tr><th>check</th><th>expected</th><th>observed</th><th>verdict</th></tr>"
    failed = [c for c in checks if not c.passed]
    out = f"<h3>{html.escape(name)}</h3>"
    if failed:
        out += f"<details open class='failures'><summary>{len(failed)} failing</summary><table>{head}" \
               f"{rows(failed)}</table></details>"
    return out + (f"<details class='all'><summary>all {len(checks)} checks</summary><table>{head}{rows(checks)}"
                  f"</table></details>")


def _short_names(paths: list[str]) -> list[str]:
    """Each dataset by its last path component, unless two share one: charts and tables stay narrow."""
    short = [p.rstrip("/").rpartition("/")[2] or p for p in paths]
    return short if len(set(short)) == len(short) else paths


def build_report(directory: str | Path, compare: str | Path | None = None) -> str:
    """The report of ``directory`` (beside ``compare``'s, when given) as one HTML string."""
    datasets = [Dataset(directory)] + ([Dataset(compare)] if compare is not None else [])
    paths = [str(directory)] + ([str(compare)] if compare is not None else [])
    names = _short_names(paths)
    checks = [validate_dataset(ds.directory) for ds in datasets]
    ids = _Ids()
    meta = "; ".join(
        f"<b>{html.escape(n)}</b>{f' ({html.escape(path)})' if path != n else ''}: {ds.manifest['model']['name']} "
        f"{ds.manifest['model']['version']}, "
        f"seed {ds.manifest['seed']}, {ds.manifest['n_prs']:,} PRs, "
        f"{html.escape(ds.manifest['intervention']['name'])}" for n, path, ds in zip(names, paths, datasets))
    story = _story(datasets, names, ids)
    body = [
        "<h1>causalsynth report</h1>", f"<p class='meta'>{meta}</p>",
        "<div class='top'><section id='verdict'>" + "".join(_verdict(c, n) for c, n in zip(checks, names))
        + "<h2>Headline rates</h2>" + _headlines(datasets, names, checks) + "</section>"
        + "<section id='story'><div class='grid'>" + "".join(story[:1]) + "</div></section></div>",
        "<section id='story-more'><h2>The causal story</h2><div class='grid'>" + "".join(story[1:])
        + "</div></section>",
        "<section id='graph'><h2>Causal graph</h2>" + _graph(datasets) + "</section>",
        "<section id='details'><h2>Details</h2><div class='grid'>"
        + "".join(_details(datasets, names, checks, ids)) + "</div></section>",
        "<section id='checks'><h2>Checks</h2>" + "".join(_checks(c, n) for c, n in zip(checks, names))
        + "</section>",
    ]
    return ("<!DOCTYPE html><html lang='en'><head><meta charset='utf-8'><title>causalsynth report</title>"
            f"<style>{STYLE}</style><script>{charts.script()}</script></head><body>"
            + "".join(body) + "</body></html>\n")


def write_report(directory: str | Path, out: str | Path, compare: str | Path | None = None) -> Path:
    out = Path(out)
    text = build_report(directory, compare)
    with atomic_file(out) as partial:
        partial.write_text(text)
    return out
