"""Shared by the benchmark scripts: the machine's description, timing a fresh process, and RESULTS.md
sections."""

from __future__ import annotations

import os
import platform
import re
import subprocess
import sys
import time
from pathlib import Path

RESULTS = Path(__file__).resolve().parent / "RESULTS.md"
# The `causalsynth` command in a fresh process of this interpreter.
CLI = [sys.executable, "-c", "from causalsynth.cli import run; run()"]


def machine() -> str:
    cpu = platform.processor() or platform.machine()
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                cpu = line.split(":", 1)[1].strip()
                break
        mem = int(Path("/proc/meminfo").read_text().split()[1]) / 1024 / 1024
    except OSError:
        mem = float("nan")
    return f"{cpu}, {os.cpu_count()} cores, {mem:.0f} GiB RAM, Python {platform.python_version()}"


def write_section(name: str, lines: list[str]) -> str:
    """Replace (or append) the section ``name`` of RESULTS.md; return its text."""
    start, end = f"<!-- {name}:start -->", f"<!-- {name}:end -->"
    section = "\n".join([start, *lines, end])
    text = RESULTS.read_text() if RESULTS.exists() else "# Benchmark results\n"
    if start in text:
        text = re.sub(re.escape(start) + ".*?" + re.escape(end), lambda _: section, text, flags=re.S)
    else:
        text = text.rstrip("\n") + "\n\n" + section + "\n"
    RESULTS.write_text(text)
    return section


def median_run(runs: list[dict]) -> dict:
    """The run of median wall time."""
    return sorted(runs, key=lambda run: run["wall_s"])[len(runs) // 2]


def measure(cmd: list[str], env: dict | None = None) -> dict:
    """Wall seconds, peak RSS (GB) and stdout of one fresh child process."""
    started = time.perf_counter()
    proc = subprocess.Popen(cmd, env=env, stdout=subprocess.PIPE, stderr=subprocess.DEVNULL, text=True)
    stdout = proc.stdout.read()
    _, status, usage = os.wait4(proc.pid, 0)
    wall = time.perf_counter() - started
    if os.waitstatus_to_exitcode(status) != 0:
        raise SystemExit(f"benchmark command failed: {' '.join(cmd)}")
    return {"wall_s": wall, "peak_rss_gb": usage.ru_maxrss / 1024 / 1024, "stdout": stdout}
