"""What a model author imports besides NumPyro: the primitives a story is told with (``modeling``), the
declarations beside it (tables, marginals, identities, tasks), the domains a column's values lie in
and the immutable parameter tree priors arrive in. Imports nothing of causalsynth but ``errors``.
"""
