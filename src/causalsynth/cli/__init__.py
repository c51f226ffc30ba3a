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

# In the order --help lists them: making a dataset, then reading one. Each module's command is its
# namesake; a module may give Click settings and an epilog for it.
COMMANDS = (sample, variant, load, graph, effects, validate, report, export, evaluate)

for _module in COMMANDS:
    _name = _module.__name__.rpartition(".")[2]
    app.command(_name, context_settings=getattr(_module, "CONTEXT_SETTINGS", None),
                epilog=getattr(_module, "EPILOG", None))(clear_errors()(getattr(_module, _name)))

__all__ = ["app", "run"]
