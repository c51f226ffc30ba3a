"""causalsynth: synthetic software-delivery and e-commerce telemetry from a structural causal model.

The public surface; everything else is internal and may change.
"""

from causalsynth.config import Config, load_config
from causalsynth.dataset import Progress, load_dataset, read_manifest, sample_dataset, sample_twin
from causalsynth.effects import Effect, estimate_effect
from causalsynth.errors import CausalsynthError, ConfigError, OutputError
from causalsynth.evaluation import evaluate
from causalsynth.graph import Graph, model_graph
from causalsynth.interventions import Intervention, load_variant
from causalsynth.ml import export
from causalsynth.program import Program
from causalsynth.sampling import calibrate, sample_blocks

__all__ = [
    "CausalsynthError",
    "Config",
    "ConfigError",
    "Effect",
    "Graph",
    "Intervention",
    "OutputError",
    "Program",
    "Progress",
    "calibrate",
    "estimate_effect",
    "evaluate",
    "export",
    "load_config",
    "load_dataset",
    "load_variant",
    "model_graph",
    "read_manifest",
    "sample_blocks",
    "sample_dataset",
    "sample_twin",
]
