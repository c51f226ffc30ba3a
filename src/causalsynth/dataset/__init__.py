"""The dataset format and its one reader: the manifest (its checks, migration and readers), where a
dataset lives (a path or an fsspec URL), reading its parts a column or a few row groups at a time,
and all-or-nothing staging of what a job writes. Every command that reads a dataset reads it through
here. May import ``config``, ``engine`` and ``errors``.
"""
