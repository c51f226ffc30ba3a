"""causalsynth: synthetic software-delivery and e-commerce telemetry from a structural causal model.

The public surface; everything else is internal and may change.
"""

from causalsynth.config import Config, load_config
from causalsynth.dataset import Progress, read_manifest, sample_dataset
from causalsynth.errors import CausalsynthError, ConfigError, OutputError
from causalsynth.program import Program
from causalsynth.sampling import calibrate, sample_blocks

__all__ = [
    "CausalsynthError",
    "Config",
    "ConfigError",
    "OutputError",
    "Program",
    "Progress",
    "calibrate",
    "load_config",
    "read_manifest",
    "sample_blocks",
    "sample_dataset",
]
