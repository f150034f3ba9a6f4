"""Tables that fit the terminal: columns by priority, one line per row, short ids.

Each column says from which console width it is shown, so an 80-column terminal gets
the columns that matter (id, state or kind, when, the error) and a wide one gets them
all. At most one column (the error or message) takes what is left: its cells are cut
with an ellipsis instead of wrapping, so every row stays one line. ``--json`` has every
field in full.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Literal

from rich.console import RenderableType
from rich.table import Table
from rich.text import Text

from genqueue.cli.common import out


@dataclass(frozen=True)
class Col:
    name: str
    #: Shown when the console is at least this wide.
    needs: int = 0
    #: The column that shrinks to fit (its cells are cut with an ellipsis).
    flexible: bool = False
    justify: Literal["left", "right"] = "left"
    #: Longer values (user ids, task names: any length) are cut with an ellipsis.
    max_width: int | None = None


def table(
    columns: Sequence[Col],
    rows: Sequence[Mapping[str, RenderableType | str]],
    *,
    title: str | None = None,
    show_header: bool = True,
) -> Table:
    """A borderless table of the columns that fit ``out.width``."""
    shown = [c for c in columns if out.width >= c.needs]
    result = Table(
        box=None,
        header_style="bold",
        pad_edge=False,
        title=title,
        title_justify="left",
        title_style="bold",
        show_header=show_header,
    )
    for column in shown:
        # Only the flexible column may be narrowed by rich; the others keep their width.
        result.add_column(
            column.name,
            no_wrap=not column.flexible,
            justify=column.justify,
            max_width=column.max_width,
            overflow="ellipsis",
        )
    for row in rows:
        result.add_row(*(_cell(row.get(c.name, ""), c.flexible) for c in shown))
    return result


def _cell(value: RenderableType | str, flexible: bool) -> RenderableType:
    if not flexible:
        return value
    text = value if isinstance(value, Text) else Text(str(value))
    text.no_wrap = True
    text.overflow = "ellipsis"
    return text


def one_line(text: str | None) -> str:
    """Whitespace (newlines in error messages) folded into single spaces."""
    return " ".join((text or "").split())
