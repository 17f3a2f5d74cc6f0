"""What every command shares: the consoles, ``--json`` vs Rich output, the common option types,
JSON arguments and the one error handler.

>>> parse_json('{"year": {"$gte": 2020}}', "--where")
{'year': {'$gte': 2020}}
>>> emit({"n": np.int64(3), "x": np.float32(0.5), "path": Path("c")}, True, lambda: "not shown")
{
  "n": 3,
  "x": 0.5,
  "path": "c"
}
>>> count_cell(12345), count_cell(True), float_cell(0.123456), float_cell(7)
('12,345', 'True', '0.1235', '7')
"""

from __future__ import annotations

import json
import sys
from collections.abc import Callable, Mapping
from pathlib import Path
from typing import Annotated, Any

import typer
from rich.console import Console
from rich.markup import escape
from rich.table import Table

from vecbox.errors import InvalidInputError, VecboxError

#: Results for people (tables, one-line summaries) on stdout.
console = Console()
#: Spinners and progress bars, which must not mix with ``--json`` on stdout, and error lines.
err_console = Console(stderr=True)

PathArg = Annotated[Path, typer.Argument(help="Collection directory.")]
JsonOpt = Annotated[bool, typer.Option("--json", help="Print machine-readable JSON.")]


def parse_json(text: str | None, what: str) -> Any:
    """The value of a JSON argument (``None`` when not given); bad JSON names the option ``what``.

    >>> parse_json("{bad", "--where")
    Traceback (most recent call last):
    ...
    vecbox.errors.InvalidInputError: --where is not valid JSON (Expecting property name enclosed in double quotes at column 2): '{bad'
    """
    if text is None:
        return None
    try:
        return json.loads(text)
    except json.JSONDecodeError as exc:
        raise InvalidInputError(f"{what} is not valid JSON ({exc.msg} at column {exc.colno}): {text!r}") from None


def _plain(value: Any) -> Any:
    """What ``json`` cannot write itself: numpy scalars and arrays as numbers and lists, anything else as text."""
    tolist = getattr(value, "tolist", None)
    return tolist() if callable(tolist) else str(value)


def emit(data: Any, as_json: bool, render: Callable[[], Any]) -> None:
    """Print a command's result: ``data`` as indented JSON with ``--json``, else what ``render()`` returns.

    ``render`` is called only for people; it returns one Rich renderable (a table, a markup
    string) or a list of them, printed in turn (``None`` entries are skipped).
    """
    if as_json:
        typer.echo(json.dumps(data, indent=2, ensure_ascii=False, default=_plain))
        return
    shown = render()
    for item in shown if isinstance(shown, (list, tuple)) else [shown]:
        if item is not None:
            console.print(item)


def count_cell(value: Any) -> str:
    """A table cell: integers with thousands separators, anything else as ``str``."""
    return f"{value:,}" if isinstance(value, int) and not isinstance(value, bool) else str(value)


def float_cell(value: Any) -> str:
    """A table cell: floats to four decimals, anything else as ``str``."""
    return f"{value:.4f}" if isinstance(value, float) else str(value)


def kv_table(title: str, rows: Mapping[str, Any], cell: Callable[[Any], str] = count_cell) -> Table:
    """A two-column key/value table without a header (``cell`` formats the values)."""
    table = Table(show_header=False, title=title, title_justify="left")
    for key, value in rows.items():
        table.add_row(key, cell(value))
    return table


def run(app: typer.Typer) -> None:
    """Run ``app`` as a program: a :class:`~vecbox.errors.VecboxError` becomes one red line on stderr and exit code 1.

    A usage error (``-k abc``, an unknown option or command) is one line too, with exit code 1
    and where to look; ``--help`` prints the help; Ctrl-C exits with 130.
    """
    # Typer ships its own click: its exception classes, found from a public one (not the `click` package's)
    usage_error = typer.BadParameter.__mro__[1]
    click_exception = typer.BadParameter.__mro__[2]
    try:
        code = app(standalone_mode=False)
    except usage_error as exc:
        where = f"`{exc.ctx.command_path} --help`" if exc.ctx is not None else "`vecbox --help`"
        err_console.print(f"[bold red]error:[/] {escape(exc.format_message())} (see {where})", highlight=False,
                          soft_wrap=True)
        sys.exit(1)
    except click_exception as exc:
        err_console.print(f"[bold red]error:[/] {escape(exc.format_message())}", highlight=False, soft_wrap=True)
        sys.exit(1)
    except (typer.Abort, KeyboardInterrupt):
        sys.exit(130)
    except VecboxError as exc:
        err_console.print(f"[bold red]error:[/] {escape(str(exc))}", highlight=False, soft_wrap=True)
        for note in getattr(exc, "__notes__", ()):  # e.g. how many rows an interrupted ingest already stored
            err_console.print(escape(note), highlight=False, soft_wrap=True)
        sys.exit(1)
    sys.exit(code if isinstance(code, int) else 0)


__all__ = ["JsonOpt", "PathArg", "console", "count_cell", "emit", "err_console", "float_cell", "kv_table",
           "parse_json", "run"]
