"""``causalsynth validate``: the checks of a dataset against its manifest, its config and its model
(integrity, provenance, row rules, recomputed columns, marginals, shapes, signatures). May import
``dataset``, ``engine``, ``causal`` and ``config``; never ``jobs`` or ``cli``.
"""
