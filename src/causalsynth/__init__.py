"""causalsynth: synthetic telemetry from a structural causal model."""
