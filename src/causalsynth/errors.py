"""Errors a user can act on. The CLI prints their message alone, on one line, and exits non-zero."""


class CausalsynthError(Exception):
    """Base class: the message names what is wrong and what is allowed."""

    exit_code = 2


class ConfigError(CausalsynthError):
    """A config file, ``--set`` override or CLI option is invalid."""


class OutputError(CausalsynthError):
    """The output location cannot be used."""


class ClusterError(CausalsynthError):
    """A block failed on a cluster for good (its worker died too often, or it raised there)."""

    exit_code = 1


class MissingTool(CausalsynthError):
    """An outside program a command needs is not installed (Graphviz's ``dot``)."""


class UnreadableDataset(CausalsynthError):
    """A dataset cannot be read: its directory, its manifest, its config or one of its tables.

    The message names the file and what is wrong with it.
    """


def one_line(text: str) -> str:
    """``text`` with its lines joined by "; " (messages are printed on one line)."""
    return "; ".join(line.strip() for line in str(text).splitlines() if line.strip())


def yaml_problem(exc: Exception) -> str:
    """A PyYAML error as one line: what is wrong, and where (line and column, 1-based)."""
    problem = getattr(exc, "problem", None) or getattr(exc, "context", None)
    mark = getattr(exc, "problem_mark", None) or getattr(exc, "context_mark", None)
    if problem is None:
        return one_line(exc)
    return problem + (f" at line {mark.line + 1}, column {mark.column + 1}" if mark is not None else "")
