"""Terminal output: rich tables and progress on a terminal, plain lines when piped,
JSON for machines. Everything printed passes through secret redaction."""

from __future__ import annotations

import json
import sys
from collections.abc import Sequence
from typing import Any

from conn.errors import error_object  # noqa: F401 - where commands find it
from conn.secrets import redact, redact_obj


def is_tty() -> bool:
    return sys.stdout.isatty()


def print_json(obj: Any) -> None:
    sys.stdout.write(json.dumps(redact_obj(obj), indent=2, default=str) + "\n")


def error(message: str) -> None:
    """An error line on stderr (red on a terminal)."""
    text = redact(message)
    if sys.stderr.isatty():
        from rich.console import Console

        Console(stderr=True).print(f"[bold red]error:[/] {text}", highlight=False,
                                   markup=True, soft_wrap=True)
    else:
        sys.stderr.write(f"error: {text}\n")


def info(message: str) -> None:
    text = redact(message)
    if is_tty():
        from rich.console import Console

        Console().print(text, highlight=False)
    else:
        sys.stdout.write(text + "\n")


def table(title: str, columns: Sequence[str], rows: Sequence[Sequence[Any]], *,
          short: Sequence[str] | None = None) -> None:
    """A rich table on a terminal; tab-separated lines with a header when piped.

    On a terminal a number is never cut: numeric columns are as wide as their widest
    value, text folds onto more lines. When the columns do not fit the terminal even so,
    the ``short`` headers are tried, then each row is shown as a list of ``column:
    value`` lines instead."""
    if is_tty():
        from rich.console import Console

        console = Console()
        console.print(render_table(title, columns, rows, console.width, short=short))
    else:
        sys.stdout.write("\t".join(columns) + "\n")
        for r in rows:
            sys.stdout.write("\t".join(redact("" if v is None else str(v)) for v in r) + "\n")


def _is_number(v: Any) -> bool:
    return isinstance(v, int | float) and not isinstance(v, bool)


#: Text columns fold down to this width before a table gives up its columns.
_TEXT_MIN = 8


def _fit(headers: Sequence[str], cells: list[list[str]], numeric: list[bool],
         width: int) -> list[int] | None:
    """Column widths that fit ``width`` without cutting a number (one space between
    columns), or None."""
    n = len(headers)
    natural = [max([len(h), *(len(r[i]) for r in cells)]) for i, h in enumerate(headers)]
    room = width - (n - 1)
    if sum(natural) <= room:
        return natural
    widths = []
    for i, h in enumerate(headers):
        word = max((len(w) for w in h.split()), default=1)
        if numeric[i]:
            widths.append(max([word, *(len(r[i]) for r in cells)]))
        else:
            widths.append(max(word, min(natural[i], _TEXT_MIN)))
    spare = room - sum(widths)
    if spare < 0:
        return None
    for i in range(n):  # give what is left to the columns that would wrap, in order
        grow = min(spare, natural[i] - widths[i])
        widths[i] += grow
        spare -= grow
    return widths


def render_table(title: str, columns: Sequence[str], rows: Sequence[Sequence[Any]],
                 width: int, *, short: Sequence[str] | None = None) -> Any:
    """The rich renderable :func:`table` prints on a terminal ``width`` columns wide."""
    from rich import box
    from rich.console import Group
    from rich.table import Table
    from rich.text import Text

    cells = [[redact("" if v is None else str(v)) for v in r] for r in rows]
    numeric = [any(_is_number(r[i]) for r in rows)
               and all(_is_number(r[i]) or r[i] is None for r in rows)
               for i in range(len(columns))]
    for headers in (columns, short) if short else (columns,):
        widths = _fit(headers, cells, numeric, width)
        if widths is None:
            continue
        t = Table(title=title, title_justify="left", box=box.SIMPLE_HEAD, show_edge=False,
                  padding=(0, 0), pad_edge=False)
        for h, w, num in zip(headers, widths, numeric, strict=True):
            # A numeric column is as wide as its widest value, so no value wraps; the
            # header may (no_wrap would cut it instead).
            t.add_column(h, width=w, justify="right" if num else "left", overflow="fold")
        for r in cells:
            t.add_row(*r)
        return t
    # Too narrow for columns: one block of "column  value" lines per row.
    blocks: list[Any] = [Text(title)]
    for r in cells:
        t = Table(box=None, show_header=False, padding=(0, 1, 0, 0), pad_edge=False)
        t.add_column(no_wrap=True)
        t.add_column(overflow="fold")
        for h, v in zip(columns, r, strict=True):
            t.add_row(h, v)
        blocks += [Text(""), t]
    return Group(*blocks)
