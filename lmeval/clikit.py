"""What every command of the command line shares: the invocation, the common
options, one-line failures, listings and progress.

Low in the layers so that the commands of :mod:`lmeval.cli` and
:mod:`lmeval.cli_bench` share them without importing each other.
"""

from __future__ import annotations

import json
import sys
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import click

from .plugins import PluginHost

PLUGIN_HELP = "Load a plugin from a .py file or module name (repeatable)."


@dataclass(frozen=True)
class Invocation:
    """What every command gets (``@click.pass_obj``): this call's plugins and flags."""

    host: PluginHost
    debug: bool = False


def short(label: str, width: int = 28) -> str:
    """A label cut to fit beside a progress bar (a long spec would squeeze the bars)."""
    return label if len(label) <= width else label[: width - 1] + "…"


def set_progress_for(quiet: bool) -> None:
    """Progress bars on stderr when it is a terminal and ``-q`` was not given."""
    from .progressbars import set_progress

    set_progress(not quiet and sys.stderr.isatty())


def fail(message: str, code: int) -> None:
    click.echo(f"lmeval: error: {message}", err=True)
    sys.exit(code)


listing_format = click.option(
    "--format",
    "fmt",
    type=click.Choice(["table", "json"]),
    default="table",
    show_default=True,
    help="table for people, json for scripts.",
)


def plugin_option(f: Callable) -> Callable:
    """``--plugin`` and ``--debug`` on every command: both are read from argv by
    LmevalGroup.main before dispatch, wherever they stand; declared so that
    click accepts them after the command name and --help shows them."""
    f = click.option(
        "--debug", is_flag=True, help="Show full tracebacks on errors.", expose_value=False
    )(f)
    return click.option(
        "--plugin", "plugins", multiple=True, metavar="PATH", help=PLUGIN_HELP, expose_value=False
    )(f)


def print_rows(
    rows: list[dict[str, Any]],
    fmt: str,
    title: str,
    headers: list[str],
    cells: Callable[[dict[str, Any]], list[str]],
    lines: bool = True,
) -> None:
    """A listing as JSON (for scripts) or as a rich table of ``cells(row)``."""
    if fmt == "json":
        click.echo(json.dumps(rows, indent=2, default=str))
        return
    from rich.console import Console
    from rich.table import Table

    table = Table(title=title, show_lines=lines)
    for header in headers:
        table.add_column(header)
    for row in rows:
        table.add_row(*(cell or "–" for cell in cells(row)))
    Console().print(table)
