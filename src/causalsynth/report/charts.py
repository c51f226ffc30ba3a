"""Charts for the report: Vega-Lite specifications built from small, already aggregated frames.

Each chart is interactive where the page runs JavaScript (Vega-Embed, bundled into the page by
vl-convert, so it works offline: hover for values, drag and wheel to pan and zoom continuous
axes) and a static SVG, rendered by vl-convert from the same specification, where it does not.
"""

from __future__ import annotations

import functools
import html
import json
import re
from typing import Any

import pandas as pd

# The Vega-Lite the page bundles and the static pictures are drawn with: one version for both.
VL_VERSION = "6.4"
SCHEMA = "https://vega.github.io/schema/vega-lite/v6.json"
WIDTH = 520
HEIGHT = 240
# Two datasets (a factual one and its twin or variant) are told apart by colour.
PALETTE = ["#4c78a8", "#f58518"]


@functools.cache
def script() -> str:
    """Vega, Vega-Lite and Vega-Embed as one script, for the page's head (about 0.9 MB)."""
    import vl_convert

    return _inline(vl_convert.javascript_bundle(vl_version=VL_VERSION))


def _inline(script_text: str) -> str:
    """Script text safe inside a <script> element: a literal "</script" would end it early
    ("<\\/script" means the same in a JavaScript string or regular expression)."""
    return re.sub(r"</(script)", r"<\\/\1", script_text, flags=re.IGNORECASE)


def _records(frame: pd.DataFrame) -> list[dict[str, Any]]:
    return json.loads(frame.to_json(orient="records"))


def _zoom() -> list[dict[str, Any]]:
    return [{"name": "zoom", "select": "interval", "bind": "scales"}]


def effect_bars(frame: pd.DataFrame, outcome: str, by: str, unit: str) -> dict[str, Any]:
    """Mean ``outcome`` per level of the cause ``by`` (columns: dataset, level, mean, low, high, n)."""
    base = {"x": {"field": "level", "type": "nominal", "title": by, "axis": {"labelAngle": 0}},
            "xOffset": {"field": "dataset"},
            "color": {"field": "dataset", "type": "nominal", "scale": {"range": PALETTE},
                      "legend": {"orient": "bottom", "title": None}}}
    tooltip = [{"field": "dataset"}, {"field": "level", "title": by},
               {"field": "mean", "format": ".4g", "title": f"mean {outcome}"},
               {"field": "low", "format": ".4g", "title": "95% CI low"},
               {"field": "high", "format": ".4g", "title": "95% CI high"},
               {"field": "n", "format": ",", "title": unit}]
    return {"$schema": SCHEMA,
            "width": WIDTH, "height": HEIGHT, "data": {"values": _records(frame)},
            "layer": [
                {"mark": {"type": "bar", "opacity": 0.85},
                 "encoding": base | {"y": {"field": "mean", "type": "quantitative", "title": f"mean {outcome}",
                                           "scale": {"zero": True}}, "tooltip": tooltip}},
                {"mark": {"type": "rule", "color": "#222"},
                 "encoding": base | {"y": {"field": "low", "type": "quantitative"}, "y2": {"field": "high"}}},
            ]}


def histogram(frame: pd.DataFrame, column: str, log_x: bool) -> dict[str, Any]:
    """Binned densities (columns: dataset, group, start, end, density), one line per group."""
    x_title = f"{column} (log scale)" if log_x else column
    return {"$schema": SCHEMA,
            "width": WIDTH, "height": HEIGHT, "data": {"values": _records(frame)},
            "mark": {"type": "line", "interpolate": "step-after", "point": False},
            "params": _zoom(),
            "encoding": {
                "x": {"field": "start", "type": "quantitative", "title": x_title,
                      "scale": {"type": "log" if log_x else "linear", "zero": False}},
                "y": {"field": "density", "type": "quantitative", "title": "share of rows per bin"},
                "color": {"field": "group", "type": "nominal",
                          "legend": {"orient": "bottom", "title": None, "labelLimit": 400, "columns": 2}},
                "strokeDash": {"field": "dataset", "type": "nominal", "legend": {"orient": "bottom",
                                                                                 "title": None}},
                "tooltip": [{"field": "dataset"}, {"field": "group"},
                            {"field": "start", "format": ".4g", "title": "from"},
                            {"field": "end", "format": ".4g", "title": "to"},
                            {"field": "density", "format": ".3%", "title": "share"}]}}


def shares(frame: pd.DataFrame, column: str, among: str | None) -> dict[str, Any]:
    """Level shares (columns: dataset, level, share)."""
    title = "share" + (f" among {among}" if among else "")
    return {"$schema": SCHEMA,
            "width": WIDTH, "height": HEIGHT, "data": {"values": _records(frame)},
            "mark": "bar",
            "encoding": {"x": {"field": "level", "type": "nominal", "title": column, "axis": {"labelAngle": 0}},
                         "xOffset": {"field": "dataset"},
                         "y": {"field": "share", "type": "quantitative", "title": title, "axis": {"format": "%"}},
                         "color": {"field": "dataset", "type": "nominal", "scale": {"range": PALETTE},
                                   "legend": {"orient": "bottom", "title": None}},
                         "tooltip": [{"field": "dataset"}, {"field": "level"},
                                     {"field": "share", "format": ".2%"}]}}


def funnel(frame: pd.DataFrame, steps: list[str], by: str) -> dict[str, Any]:
    """Share of units reaching each step (columns: dataset, group, step, share), one line per group."""
    return {"$schema": SCHEMA,
            "width": WIDTH, "height": HEIGHT, "data": {"values": _records(frame)},
            "mark": {"type": "line", "point": True},
            "encoding": {"x": {"field": "step", "type": "ordinal", "sort": steps, "title": None,
                               "axis": {"labelAngle": 0}},
                         "y": {"field": "share", "type": "quantitative", "title": "share of flows reaching the step",
                               "axis": {"format": "%"}, "scale": {"domain": [0, 1]}},
                         "color": {"field": "group", "type": "nominal", "title": by,
                                   "legend": {"orient": "bottom"}},
                         "strokeDash": {"field": "dataset", "type": "nominal", "legend": {"orient": "bottom",
                                                                                          "title": None}},
                         "tooltip": [{"field": "dataset"}, {"field": "group", "title": by}, {"field": "step"},
                                     {"field": "share", "format": ".2%"}]}}


def marginals(frame: pd.DataFrame) -> dict[str, Any]:
    """Realised rates against their targets (columns: dataset, check, observed, target, verdict)."""
    height = max(120, 16 * frame["check"].nunique())
    y = {"field": "check", "type": "nominal", "title": None, "sort": None}
    return {"$schema": SCHEMA,
            "width": WIDTH, "height": height, "data": {"values": _records(frame)},
            "layer": [
                {"mark": {"type": "tick", "color": "#888", "thickness": 2},
                 "encoding": {"y": y, "x": {"field": "target", "type": "quantitative", "title": "share",
                                            "axis": {"format": "%"}},
                              "tooltip": [{"field": "check"}, {"field": "target", "format": ".2%"}]}},
                {"mark": {"type": "point", "filled": True, "size": 50},
                 "encoding": {"y": y, "x": {"field": "observed", "type": "quantitative"},
                              "color": {"field": "dataset", "type": "nominal", "scale": {"range": PALETTE},
                                        "legend": {"orient": "bottom", "title": None}},
                              "shape": {"field": "verdict", "type": "nominal", "legend": {"orient": "bottom"}},
                              "tooltip": [{"field": "dataset"}, {"field": "check"},
                                          {"field": "observed", "format": ".2%"},
                                          {"field": "target", "format": ".2%"}, {"field": "verdict"}]}},
            ]}


def embed(spec: dict[str, Any], chart_id: str, caption: str) -> str:
    """The chart as a figure: interactive with JavaScript, its static SVG without."""
    import vl_convert

    static = vl_convert.vegalite_to_svg(spec, vl_version=VL_VERSION)
    return (f'<figure class="chart"><div id="{chart_id}" class="vega"></div>'
            f"<noscript>{static}</noscript>"
            f"<script>vegaEmbed('#{chart_id}', {_inline(json.dumps(spec))}, "
            "{actions: false, renderer: 'svg'}).catch(e => console.error(e));</script>"
            f"<figcaption>{html.escape(caption)}</figcaption></figure>")
