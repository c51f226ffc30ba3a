"""The report in a real browser: headless Chromium (Debian's, installed by `.ci/run` as PostgreSQL is).

The page must load with no console message at all (no error, no warning from Vega), every chart
must have been drawn by its script, every section must be there, and the first screen of a
1400×900 window must hold the verdict, the headline rates and a causal figure. The first screen
is kept as a test artifact (``test-artifacts/report-first-screen.png``).
"""

from __future__ import annotations

import json
import re
import shutil
import subprocess
from pathlib import Path

import pytest
from conftest import SMALL_BLOCKS
from typer.testing import CliRunner

from causalsynth.cli import app

ARTIFACTS = Path(__file__).parents[1] / "test-artifacts"
WINDOW = (1400, 900)
# Appended to a copy of the report: once the charts are drawn, the layout the test reads.
PROBE = """<script>
window.addEventListener("load", () => setTimeout(() => {
  const box = id => { const r = document.getElementById(id).getBoundingClientRect();
                      return {top: r.top, bottom: r.bottom, left: r.left, right: r.right}; };
  const firstChart = document.querySelector("#story .vega svg");
  document.body.setAttribute("data-layout", JSON.stringify({
    verdict: box("verdict"), headlines: box("headlines"),
    chart: firstChart ? (r => ({top: r.top, bottom: r.bottom, right: r.right}))(firstChart.getBoundingClientRect())
                      : null,
    drawn: document.querySelectorAll(".vega svg").length, charts: document.querySelectorAll(".vega").length,
    width: document.documentElement.scrollWidth}));
}, 1500));
</script>"""


def chromium() -> str:
    found = shutil.which("chromium") or shutil.which("chromium-browser")
    assert found, "Chromium is not installed: apt-get install chromium (.ci/run does)"
    return found


def run_chromium(*args: str) -> subprocess.CompletedProcess:
    base = [chromium(), "--headless=new", "--no-sandbox", "--disable-gpu", "--hide-scrollbars",
            f"--window-size={WINDOW[0]},{WINDOW[1]}", "--enable-logging=stderr", "--v=0",
            "--virtual-time-budget=15000"]
    return subprocess.run(base + list(args), capture_output=True, text=True, timeout=120)


@pytest.fixture(scope="module")
def report(tmp_path_factory) -> Path:
    work = tmp_path_factory.mktemp("browser")
    runner = CliRunner()
    for args in (["sample", "--n-prs", "1000", "--out", str(work / "ds"), "--set", SMALL_BLOCKS],
                 ["variant", str(work / "ds"), "--variant", "no_regressions", "--out", str(work / "twin")],
                 ["report", str(work / "ds"), "--compare", str(work / "twin"), "--out", str(work / "report.html")]):
        result = runner.invoke(app, args)
        assert result.exit_code == 0, result.output
    return work / "report.html"


def test_the_report_loads_cleanly_and_its_first_screen_holds_the_verdict_rates_and_story(report):
    probed = report.with_name("probed.html")
    head, _, tail = report.read_text().rpartition("</body>")
    probed.write_text(head + PROBE + "</body>" + tail)
    result = run_chromium("--dump-dom", probed.as_uri())
    assert result.returncode == 0, result.stderr
    console = [line for line in result.stderr.splitlines() if ":CONSOLE" in line]
    assert console == [], "\n".join(console)
    dom = result.stdout
    for section in ("verdict", "story", "story-more", "graph", "details", "checks"):
        assert f'<section id="{section}">' in dom
    layout = json.loads(re.search(r'data-layout="([^"]*)"', dom).group(1).replace("&quot;", '"'))
    assert layout["charts"] > 5 and layout["drawn"] == layout["charts"]  # every script drew its chart
    width, height = WINDOW
    assert layout["width"] <= width  # nothing to scroll sideways
    for part in ("verdict", "headlines", "chart"):
        assert layout[part] is not None and layout[part]["bottom"] <= height, (part, layout[part])

    ARTIFACTS.mkdir(exist_ok=True)
    shot = ARTIFACTS / "report-first-screen.png"
    result = run_chromium(f"--screenshot={shot}", report.as_uri())
    assert result.returncode == 0 and shot.read_bytes().startswith(b"\x89PNG"), result.stderr


def test_without_javascript_every_chart_has_its_static_picture(report, tmp_path):
    """The page as a browser without JavaScript shows it: no scripts, the <noscript> content in place."""
    text = re.sub(r"<script>.*?</script>", "", report.read_text(), flags=re.S)
    static = tmp_path / "static.html"
    static.write_text(text.replace("<noscript>", "").replace("</noscript>", ""))
    result = run_chromium("--dump-dom", static.as_uri())
    assert result.returncode == 0, result.stderr
    assert [line for line in result.stderr.splitlines() if ":CONSOLE" in line] == []
    figures = re.findall(r'<figure class="chart">(.*?)</figure>', result.stdout, flags=re.S)
    assert len(figures) > 5 and all("<svg" in f and "</svg>" in f for f in figures)
