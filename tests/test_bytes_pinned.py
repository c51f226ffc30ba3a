"""The bytes a seed and a config give are pinned: a change to the engine's code that is meant to
leave the data alone (a refactoring, a faster writer) must leave every part file's SHA-256 as
`data/pinned_parts.json` records it.

The list was written on the CI machine kind (x86-64, 2 cores, JAX on CPU), where XLA's code and
so the last bits of a float are the same from run to run. A change that is meant to change the
data writes it again, in its own commit that says why: `python tests/test_bytes_pinned.py`.
"""

from __future__ import annotations

import hashlib
import json
import sys
from pathlib import Path

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


def test_same_seed_and_config_give_the_pinned_bytes(tmp_path):
    pinned = json.loads(PINNED.read_text())
    found = digests(tmp_path)
    for world in pinned:
        assert set(found[world]) == set(pinned[world]), f"{world}: other part files"
        differ = sorted(part for part, digest in pinned[world].items() if found[world][part] != digest)
        assert not differ, f"{world}: {len(differ)} of {len(pinned[world])} parts differ: {differ[:5]}"


if __name__ == "__main__":
    import tempfile

    with tempfile.TemporaryDirectory() as work:
        PINNED.parent.mkdir(exist_ok=True)
        PINNED.write_text(json.dumps(digests(Path(work)), indent=1, sort_keys=True) + "\n")
    print(f"wrote {PINNED}", file=sys.stderr)
