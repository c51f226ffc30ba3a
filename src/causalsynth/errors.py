"""Errors a user can act on. The CLI prints their message alone and exits non-zero."""


class CausalsynthError(Exception):
    """Base class: the message names what is wrong and what is allowed."""

    exit_code = 2


class ConfigError(CausalsynthError):
    """A config file, ``--set`` override or CLI option is invalid."""


class OutputError(CausalsynthError):
    """The output location cannot be used."""
