"""Priors and targets as YAML, shipped with the package (read via importlib.resources)."""
