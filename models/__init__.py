"""Shipped model programs (NumPyro), one package per scenario: its story, priors and declarations
(docs/guides/models.md)."""
