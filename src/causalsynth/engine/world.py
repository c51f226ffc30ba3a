"""One world to sample: a compiled program, its calibrated parameters and its intervention's
switches; and the callbacks long work reports progress through."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

from causalsynth.config.loading import Config
from causalsynth.engine.interventions import Intervention, encode_do, shifted_config
from causalsynth.engine.program import Program
from causalsynth.engine.sampling import calibrate, with_intercepts
from causalsynth.spec.params import Params


@dataclass
class Progress:
    """Callbacks for long work; the CLI draws them, tests ignore them."""

    on_stage: Callable[[str], None] = lambda stage: None
    on_start: Callable[[int], None] = lambda n_blocks: None
    on_block: Callable[[int], None] = lambda rows: None


@dataclass(frozen=True)
class World:
    """A compiled program and the parameters and switches of one world (factual or not)."""

    program: Program
    params: Params
    intercepts: dict[str, float]
    do: dict[str, float]
    intervention: Intervention


def prepare_world(config: Config, intervention: Intervention | None = None,
                  intercepts: dict[str, float] | None = None,
                  progress: Progress | None = None, program: Program | None = None) -> World:
    """Compile, validate the intervention, calibrate on the factual config, then shift priors.

    Soft interventions apply after calibration, so a variant moves rates
    through its mechanisms instead of being recalibrated back to the targets.
    ``program`` is ``config``'s, when the caller already has it.
    """
    progress = progress or Progress()
    intervention = intervention or Intervention()
    shifted = shifted_config(config, intervention)
    if program is None:
        progress.on_stage("compiling the model")
        program = Program(config)
    do = encode_do(program, intervention.do)
    if intercepts is None:
        progress.on_stage("calibrating intercepts")
        intercepts = calibrate(program)
    return World(program=program, params=with_intercepts(shifted.params, intercepts),
                 intercepts=intercepts, do=do, intervention=intervention)

