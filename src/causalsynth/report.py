"""`causalsynth report`: one self-contained HTML file that shows a dataset.

Sections: the validation table; marginals against their targets; the model's
``REPORT`` plots (distributions by a cause, mixes, funnels, a metric on a
dependency graph); and the causal graph. With a comparison dataset (a
counterfactual twin or a shifted variant) every plot is drawn for both, side
by side. Images are PNG (matplotlib, Agg backend) embedded as data URIs: the
file needs nothing else to open.
"""

from __future__ import annotations

import base64
import html
import io
import math
from pathlib import Path

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402
import numpy as np  # noqa: E402
import pandas as pd  # noqa: E402

from causalsynth.graph import model_graph  # noqa: E402
from causalsynth.ml import Dataset  # noqa: E402
from causalsynth.modeling import Plot  # noqa: E402
from causalsynth.quality import Check, validate_dataset  # noqa: E402
from causalsynth.staging import atomic_file  # noqa: E402

STYLE = """
body { font-family: system-ui, sans-serif; margin: 2em auto; max-width: 1200px; color: #222; }
h1 { font-size: 1.5em; } h2 { font-size: 1.2em; margin-top: 2em; border-bottom: 1px solid #ddd; }
table { border-collapse: collapse; font-size: 0.85em; } td, th { padding: 2px 8px; border-bottom: 1px solid #eee; }
.pass { color: #176f2c; } .fail { color: #b00020; font-weight: bold; } .na { color: #777; }
.pair { display: flex; gap: 1em; } .pair figure { flex: 1; margin: 0; } img { max-width: 100%; }
figcaption { font-size: 0.85em; color: #555; }
"""


def _png(fig) -> str:
    buffer = io.BytesIO()
    fig.savefig(buffer, format="png", dpi=100, bbox_inches="tight")
    plt.close(fig)
    return "data:image/png;base64," + base64.b64encode(buffer.getvalue()).decode()


def _img(uri: str, caption: str) -> str:
    return f'<figure><img src="{uri}" alt="{html.escape(caption)}"><figcaption>{html.escape(caption)}</figcaption></figure>'


def _frame(ds: Dataset, table: str, refs: list[str]) -> pd.DataFrame:
    frame = ds.frame(table, refs)
    return frame.rename(columns={r: r.replace(".", "_") for r in refs})


def _distribution(ds: Dataset, plot: Plot):
    by = plot.by[0]
    frame = _frame(ds, plot.table, [plot.column, by])
    fig, ax = plt.subplots(figsize=(6, 3.5))
    values = frame[plot.column].astype(float)
    positive = bool((values > 0).all()) and values.max() / max(values.min(), 1e-12) > 20
    bins = np.geomspace(values.min(), values.max(), 60) if positive else 60
    for flag, group in frame.groupby(by.replace(".", "_")):
        ax.hist(group[plot.column].astype(float), bins=bins, density=True, alpha=0.5,
                label=f"{by.rpartition('.')[2]} = {flag} (mean {group[plot.column].astype(float).mean():.4g})")
    if positive:
        ax.set_xscale("log")
    ax.set_xlabel(plot.column)
    ax.legend(fontsize=7)
    return fig


def _mix(ds: Dataset, plot: Plot):
    frame = _frame(ds, plot.table, [plot.column] + ([plot.among] if plot.among else []))
    if plot.among:
        frame = frame[frame[plot.among].astype(bool)]
    shares = frame[plot.column].astype(str).value_counts(normalize=True)
    fig, ax = plt.subplots(figsize=(6, 3.5))
    ax.bar(shares.index, shares.to_numpy(), color="tab:orange")
    for i, v in enumerate(shares.to_numpy()):
        ax.text(i, v, f"{v:.1%}", ha="center", va="bottom", fontsize=8)
    ax.set_ylabel("share" + (f" among {plot.among}" if plot.among else ""))
    ax.tick_params(axis="x", labelsize=8)
    return fig


def _funnel(ds: Dataset, plot: Plot):
    steps = _frame(ds, plot.table, [plot.column, plot.step])
    levels = next(c.levels for c in ds.program.table(plot.table).columns if c.name == plot.step)
    reached = steps.groupby([plot.column, plot.step], observed=True).size().unstack(fill_value=0) > 0
    reached = reached.reindex(columns=list(levels), fill_value=False)
    unit_table = plot.by[0].partition(".")[0]
    units = _frame(ds, unit_table, [b.partition(".")[2] for b in plot.by]).set_index(plot.column)
    fig, axes = plt.subplots(1, len(plot.by), figsize=(6 * len(plot.by), 3.5), squeeze=False)
    for ax, by in zip(axes[0], plot.by):
        column = by.partition(".")[2]
        joined = reached.join(units[column])
        for level, group in joined.groupby(column, observed=True):
            ax.plot(range(len(levels)), group[list(levels)].mean().to_numpy(), marker="o", label=str(level))
        ax.set_xticks(range(len(levels)), [lv.replace("_", "\n") for lv in levels], fontsize=7)
        ax.set_ylim(0, 1.02)
        ax.set_ylabel("share of flows reaching the step")
        ax.set_title(f"by {column}", fontsize=9)
        ax.legend(fontsize=7)
    return fig


def _graph(ds: Dataset, plot: Plot):
    frame = _frame(ds, plot.table, [plot.node, plot.column])
    means = frame.groupby(plot.node, observed=True)[plot.column].mean()
    edges = ds.config.get(plot.edges)
    nodes = list(means.index.astype(str))
    angle = {n: 2 * math.pi * i / len(nodes) for i, n in enumerate(nodes)}
    pos = {n: (math.cos(a), math.sin(a)) for n, a in angle.items()}
    fig, ax = plt.subplots(figsize=(5.5, 4.5))
    for caller, callees in edges.items():
        for callee in callees:
            (x0, y0), (x1, y1) = pos[caller], pos[callee]
            ax.annotate("", xy=(x1, y1), xytext=(x0, y0),
                        arrowprops=dict(arrowstyle="->", color="0.5", shrinkA=22, shrinkB=22))
    cmap = plt.cm.RdYlGn
    low, high = float(means.min()), float(means.max())
    for n in nodes:
        value = float(means[n])
        shade = cmap((value - low) / max(high - low, 1e-9))
        ax.scatter(*pos[n], s=2200, color=shade, edgecolor="0.3", zorder=2)
        ax.text(*pos[n], f"{n}\n{value:.3f}", ha="center", va="center", fontsize=8, zorder=3)
    ax.set_title(f"mean {plot.column} per {plot.node}; arrows: calls", fontsize=9)
    ax.set_xlim(-1.5, 1.5)
    ax.set_ylim(-1.5, 1.5)
    ax.axis("off")
    return fig


DRAW = {"distribution": _distribution, "mix": _mix, "funnel": _funnel, "graph": _graph}


def _marginals_figure(checks: list[Check]):
    marginal = [c for c in checks if c.value is not None]
    fig, ax = plt.subplots(figsize=(6, 0.22 * len(marginal) + 1))
    y = np.arange(len(marginal))
    ax.barh(y, [c.target for c in marginal], color="0.8", label="target")
    ax.scatter([c.value for c in marginal], y, color=["tab:green" if c.passed else "tab:red" for c in marginal],
               zorder=3, s=14, label="observed")
    ax.set_yticks(y, [c.check.removeprefix("marginal ") for c in marginal], fontsize=6)
    ax.invert_yaxis()
    ax.set_xlabel("share")
    ax.legend(fontsize=7)
    return fig


CLASSES = {"pass": "pass", "FAIL": "fail", "n/a": "na"}


def _validation_table(checks: list[Check]) -> str:
    rows = "".join(
        f"<tr><td>{html.escape(c.check)}</td><td>{html.escape(c.expected)}</td><td>{html.escape(c.observed)}</td>"
        f"<td class='{CLASSES[c.verdict]}'>{c.verdict}</td></tr>"
        for c in checks)
    failed = sum(not c.passed for c in checks)
    verdict = "all checks pass" if not failed else f"{failed} of {len(checks)} checks fail"
    return (f"<p>{verdict}</p><table><tr><th>check</th><th>expected</th><th>observed</th><th>verdict</th></tr>"
            f"{rows}</table>")


def build_report(directory: str | Path, compare: str | Path | None = None) -> str:
    """The report of ``directory`` (beside ``compare``'s, when given) as one HTML string."""
    datasets = [Dataset(directory)] + ([Dataset(compare)] if compare is not None else [])
    names = [str(directory)] + ([str(compare)] if compare is not None else [])
    checks = [validate_dataset(ds.directory) for ds in datasets]

    def section(title: str, figures: list[str]) -> str:
        body = "".join(_img(uri, name) for uri, name in zip(figures, names))
        return f"<section><h2>{html.escape(title)}</h2><div class='pair'>{body}</div></section>"

    parts = ["<section><h2>Validation</h2><div class='pair'>"
             + "".join(f"<div><h3>{html.escape(n)}</h3>{_validation_table(c)}</div>" for n, c in zip(names, checks))
             + "</div></section>",
             section("Marginals against their targets", [_png(_marginals_figure(c)) for c in checks])]
    for plot in datasets[0].config.model.REPORT:
        parts.append(section(plot.title, [_png(DRAW[plot.kind](ds, plot)) for ds in datasets]))
    parts.append(section("Causal graph of the model", [
        "data:image/png;base64," + base64.b64encode(model_graph(ds.program).to_png()).decode()
        for ds in datasets]))
    heads = "".join(
        f"<li><b>{html.escape(n)}</b>: model {ds.manifest['model']['name']} {ds.manifest['model']['version']}, "
        f"seed {ds.manifest['seed']}, {ds.manifest['n_prs']:,} PRs, intervention "
        f"{html.escape(ds.manifest['intervention']['name'])}</li>" for n, ds in zip(names, datasets))
    return ("<!DOCTYPE html><html lang='en'><head><meta charset='utf-8'><title>causalsynth report</title>"
            f"<style>{STYLE}</style></head><body><h1>causalsynth report</h1><ul>{heads}</ul>"
            + "".join(parts) + "</body></html>\n")


def write_report(directory: str | Path, out: str | Path, compare: str | Path | None = None) -> Path:
    out = Path(out)
    text = build_report(directory, compare)
    with atomic_file(out) as partial:
        partial.write_text(text)
    return out
