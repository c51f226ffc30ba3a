"""causalsynth: synthetic software-delivery and e-commerce telemetry from a structural causal model.

The public surface; everything else is internal and may change.
"""

import importlib

# Public name -> the module defining it. Imported on first use (PEP 562), so that
# `import causalsynth` and `causalsynth --help` load no JAX, pandas or scikit-learn.
_EXPORTS = {
    "Config": "causalsynth.config", "load_config": "causalsynth.config",
    "Progress": "causalsynth.dataset", "load_dataset": "causalsynth.dataset", "read_manifest": "causalsynth.dataset",
    "sample_dataset": "causalsynth.dataset", "sample_twin": "causalsynth.dataset",
    "Effect": "causalsynth.effects", "estimate_effect": "causalsynth.effects",
    "CausalsynthError": "causalsynth.errors", "ConfigError": "causalsynth.errors", "OutputError": "causalsynth.errors",
    "evaluate": "causalsynth.evaluation",
    "Graph": "causalsynth.graph", "model_graph": "causalsynth.graph",
    "Intervention": "causalsynth.interventions", "load_variant": "causalsynth.interventions",
    "export": "causalsynth.ml",
    "Program": "causalsynth.program",
    "validate_dataset": "causalsynth.quality",
    "calibrate": "causalsynth.sampling", "sample_blocks": "causalsynth.sampling",
}


def __getattr__(name: str):
    if name not in _EXPORTS:
        raise AttributeError(f"module 'causalsynth' has no attribute {name!r}")
    value = getattr(importlib.import_module(_EXPORTS[name]), name)
    globals()[name] = value
    return value


def __dir__() -> list[str]:
    return sorted(__all__)


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
    "validate_dataset",
]
