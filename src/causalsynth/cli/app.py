"""The Typer application, its global options, and the installed ``causalsynth`` command."""

from __future__ import annotations

import logging
import os
from typing import Annotated

import typer

from causalsynth.cli.console import err, out

app = typer.Typer(
    name="causalsynth",
    help="Synthetic software-delivery and e-commerce telemetry from a structural causal model.",
    no_args_is_help=True,
    add_completion=False,
    pretty_exceptions_enable=False,
)


def run() -> None:
    """The ``causalsynth`` command: the app, then an immediate exit.

    Unloading XLA's compiled executables at interpreter shutdown takes about
    half a second after a sampling job, for nothing: by the time a command
    returns, every file it wrote is complete and closed, and its output is
    flushed here. Library use (and ``CliRunner``) goes through ``app``.
    """
    import sys

    try:
        app()
        code = 0
    except SystemExit as exc:
        code = exc.code if isinstance(exc.code, int) else (0 if exc.code is None else 1)
        if isinstance(exc.code, str):
            print(exc.code, file=sys.stderr)
    logging.shutdown()
    for stream in (sys.stdout, sys.stderr):
        try:
            stream.flush()
        except OSError:  # a closed pipe (`causalsynth validate DIR | head`): nothing left to say
            pass
    os._exit(code)


def _version(value: bool) -> None:
    if value:
        from causalsynth.engine.identity import package_version

        out.print(f"causalsynth {package_version()}")
        raise typer.Exit()


@app.callback()
def main(
    version: Annotated[bool, typer.Option("--version", callback=_version, is_eager=True,
                                          help="Print the version and exit.")] = False,
) -> None:
    """Synthetic software-delivery and e-commerce telemetry from a structural causal model."""
    logger = logging.getLogger("causalsynth")
    if not any(isinstance(h, _NoteHandler) for h in logger.handlers):
        logger.addHandler(_NoteHandler())
        logger.setLevel(logging.INFO)


class _NoteHandler(logging.Handler):
    """What the library says in passing (a dead run's leftovers removed), as one ``note:`` line each."""

    def emit(self, record) -> None:
        from rich.markup import escape

        err.print(f"[yellow]note:[/yellow] {escape(record.getMessage())}", highlight=False, soft_wrap=True)
