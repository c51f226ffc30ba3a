"""What every command prints with: the two consoles, the one error handler, check tables, files."""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

import typer
from rich.console import Console
from rich.table import Table

from causalsynth.errors import CausalsynthError

err = Console(stderr=True)
out = Console()


@contextmanager
def clear_errors() -> Iterator[None]:
    """Turn a ``CausalsynthError`` into ``error: <message>`` on one line (the message as written, never
    markup) and an exit with its code. Each command runs inside it (``clear_errors()(command)``), as do
    option callbacks, which Typer runs before the command."""
    try:
        yield
    except CausalsynthError as exc:
        from rich.markup import escape

        from causalsynth.errors import one_line

        err.print(f"[red]error:[/red] {escape(one_line(exc))}", highlight=False, soft_wrap=True)
        raise typer.Exit(exc.exit_code) from None


def wide(console: Console = out) -> Console:
    """``console``, or one 160 columns wide when it is not a terminal: rich assumes 80 columns without
    one, and a piped table keeps whole rows."""
    return console if console.is_terminal else Console(width=160)


def print_checks(checks, title: str) -> None:
    table = Table(title=title, title_justify="left")
    for col in ("check", "expected", "observed", "verdict"):
        table.add_column(col, overflow="fold")
    for c in checks:
        colour = {"pass": "green", "FAIL": "red", "n/a": "dim"}[c.verdict]
        table.add_row(c.check, c.expected, c.observed, f"[{colour}]{c.verdict}[/{colour}]")
    wide().print(table)
    out.print(verdict(checks))


def verdict(checks, what: str = "checks") -> str:
    failed = [c for c in checks if not c.passed]
    if not failed:
        return f"[green]valid[/green]: all {len(checks)} {what} pass"
    return (f"[red]invalid[/red]: {len(failed)} of {len(checks)} {what} fail: "
            + "; ".join(c.check for c in failed[:5]) + (" …" if len(failed) > 5 else ""))


def write_file(path: Path, data: bytes) -> None:
    """Write ``data`` to ``path`` whole or not at all."""
    from causalsynth.dataset.staging import atomic_file

    with atomic_file(path) as partial:
        partial.write_bytes(data)
