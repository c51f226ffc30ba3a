"""The ``causalsynth`` command line: a module a command, each parsing its options, calling the
library and printing what it did.

``app`` is the Typer application (library use and ``CliRunner``), ``run`` the
installed command. Every command goes through one error handler
(``console.clear_errors``): a ``CausalsynthError`` raised anywhere in it
prints one ``error:`` line and exits with the error's code. The package may
import every other one; none imports it. Commands import the library where
they use it, so that ``--help`` loads no heavy library.
"""

from __future__ import annotations

from causalsynth.cli import effects, evaluate, export, graph, load, report, sample, validate, variant
from causalsynth.cli.app import app, run
from causalsynth.cli.console import clear_errors

# In the order --help lists them: making a dataset, then reading one.
COMMANDS = (sample.sample, variant.variant, load.load, graph.graph, effects.effects, validate.validate,
            report.report, export.export, evaluate.evaluate)

for _command in COMMANDS:
    app.command(_command.__name__)(clear_errors()(_command))

__all__ = ["app", "run"]
