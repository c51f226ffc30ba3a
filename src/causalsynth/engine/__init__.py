"""The model program as the engine runs it: tracing a model into tables and columns (``program``),
interventions, keyed block sampling and calibration, a world's parameters, and block arrays to Arrow
batches (``tabulate``). The caches (``cache``, ``compiled``) only make it start faster: with them
off the bytes are the same. May import ``spec``, ``config`` and ``errors``; never ``jobs``,
``dataset``, ``validate`` or ``cli``.
"""
