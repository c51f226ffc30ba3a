"""A config, read once at the edge: YAML loading, merging, ``--set`` overrides and their checks
(``loading``), the limits on sizes and seeds, and the model plug-ins a config names. May import
``spec`` and ``errors``; the engine's cache only to digest a plug-in's source.
"""
