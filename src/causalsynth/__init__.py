"""causalsynth: synthetic software-delivery and e-commerce telemetry from a structural causal model.

The public surface; everything else is internal and may change.
"""

import importlib

# Public name -> the module defining it. Imported on first use (PEP 562), so that
# `import causalsynth` and `causalsynth --help` load no JAX, pandas or scikit-learn.
_EXPORTS = {
    "Config": "causalsynth.config.loading", "load_config": "causalsynth.config.loading",
    "Progress": "causalsynth.engine.world", "load_dataset": "causalsynth.jobs.load",
    "read_manifest": "causalsynth.dataset.manifest",
    "sample_dataset": "causalsynth.jobs.sample", "sample_twin": "causalsynth.jobs.sample",
    "Destination": "causalsynth.jobs.sample", "Run": "causalsynth.jobs.sample",
    "Effect": "causalsynth.causal.effects", "estimate_effect": "causalsynth.causal.effects",
    "CausalsynthError": "causalsynth.errors", "ConfigError": "causalsynth.errors", "OutputError": "causalsynth.errors",
    "evaluate": "causalsynth.tasks.evaluation",
    "Graph": "causalsynth.causal.graph", "model_graph": "causalsynth.causal.graph",
    "Intervention": "causalsynth.engine.interventions", "load_variant": "causalsynth.engine.interventions",
    "export": "causalsynth.tasks.ml",
    "Program": "causalsynth.engine.program",
    "validate_dataset": "causalsynth.validate.quality",
    "calibrate": "causalsynth.engine.sampling", "sample_blocks": "causalsynth.engine.sampling",
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
    "Destination",
    "Effect",
    "Graph",
    "Intervention",
    "OutputError",
    "Program",
    "Progress",
    "Run",
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
