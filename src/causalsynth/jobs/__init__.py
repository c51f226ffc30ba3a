"""Work that produces or moves a dataset: ``sample`` (and its twin), ``load`` into a database, and the
block runners, in this process or on a Dask cluster. May import everything below the CLI.
"""
