"""The bytes a seed and a config give are pinned: a change to the engine's code that is meant to
leave the data alone (a refactoring, a faster writer) must leave every part file's SHA-256 as
`data/pinned_parts.json` records it.

XLA compiles for the CPU it runs on, and machines of the CI kind (x86-64, 2 cores, JAX on CPU) do
not all have the same CPU: on one model the same code gives a few different last bits of a float
(and so, rarely, a count) in a few parts. The file therefore holds the digests per CPU model, as
Linux names it, and the bytes must equal those of this machine's CPU. On one machine the bytes are
the same from run to run (test_determinism holds that on every CPU). On a CPU the file has no
digests for, the test is skipped and says how to record them: `python tests/test_bytes_pinned.py`
adds this CPU's (or replaces them). A change that is meant to change the data starts the file
afresh (`--afresh`), in its own commit that says why; the other CPUs' digests are recorded again
on them.
"""

from __future__ import annotations

import hashlib
import json
import sys
from pathlib import Path

import pytest

PINNED = Path(__file__).with_name("data") / "pinned_parts.json"
# Three blocks of the default model with its series, latents and a variant: every table, every
# column kind, an intervention and the last, short block.
OVERRIDES = ["sampling.block_prs=200", "telemetry.enabled=true", "sampling.latents=true"]
N_PRS, SEED, VARIANT = 450, 2024, "no_regressions"


def digests(out: Path) -> dict[str, dict[str, str]]:
    from causalsynth.config.loading import load_config
    from causalsynth.engine.interventions import load_variant
    from causalsynth.jobs.sample import sample_dataset

    found = {}
    for world, variant in (("default", None), (VARIANT, load_variant(VARIANT))):
        config = load_config(overrides=OVERRIDES)
        sample_dataset(config=config, n_prs=N_PRS, seed=SEED, to=out / world, intervention=variant)
        found[world] = {str(p.relative_to(out / world)): hashlib.sha256(p.read_bytes()).hexdigest()
                        for p in sorted((out / world).glob("*/part-*.parquet"))}
    return found


def differing(found: dict[str, dict[str, str]], recorded: dict[str, dict[str, str]]) -> list[str]:
    """The parts whose digest is not the recorded one (or that are not recorded, or missing)."""
    parts = {f"{w}/{p}" for w in recorded for p in recorded[w]} | {f"{w}/{p}" for w in found for p in found[w]}
    return sorted(name for name in parts
                  if found.get(name.split("/")[0], {}).get(name.partition("/")[2])
                  != recorded.get(name.split("/")[0], {}).get(name.partition("/")[2]))


def test_same_seed_and_config_give_the_pinned_bytes(tmp_path):
    mine = [machine["parts"] for machine in json.loads(PINNED.read_text())["recorded"] if machine["cpu"] == cpu()]
    if not mine:
        pytest.skip(f"no digests recorded on this CPU ({cpu()}): `python tests/test_bytes_pinned.py` adds them")
    found = digests(tmp_path)
    closest = min((differing(found, parts) for parts in mine), key=len)
    assert not closest, f"{len(closest)} parts differ from the digests recorded on {cpu()}: {closest[:5]}"


def cpu() -> str:
    """The CPU, as Linux names it, for the reader of the file."""
    text = Path("/proc/cpuinfo").read_text() if Path("/proc/cpuinfo").exists() else ""
    names = [line.partition(":")[2].strip() for line in text.splitlines() if line.startswith("model name")]
    return names[0] if names else "unknown"


if __name__ == "__main__":
    import datetime
    import tempfile

    recorded = [] if "--afresh" in sys.argv or not PINNED.exists() else json.loads(PINNED.read_text())["recorded"]
    with tempfile.TemporaryDirectory() as work:
        found = digests(Path(work))
    recorded = [machine for machine in recorded if machine["cpu"] != cpu()] + [
        {"cpu": cpu(), "recorded": datetime.date.today().isoformat(), "parts": found}]
    PINNED.parent.mkdir(exist_ok=True)
    PINNED.write_text(json.dumps({"recorded": recorded}, indent=1, sort_keys=True) + "\n")
    print(f"{PINNED}: digests of {len(recorded)} CPUs ({', '.join(m['cpu'] for m in recorded)})", file=sys.stderr)
