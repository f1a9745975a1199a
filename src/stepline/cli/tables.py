"""Tables that fit the width they are printed at, 80 columns included.

80 is the width of every pipe and CI log (rich's default when stdout is not a terminal and
``COLUMNS`` is unset), so a table built for a wide terminal must still read there. Squeezing
every column, as a plain ``rich.table.Table`` does, cuts the very cells a user copies (a run
id, an output path) and wraps step ids into fragments. A ``FittedTable`` instead decides at
render time, for the width it is given:

- identifiers and paths (``Column(..., wrap=False)``, the default) are never wrapped or cut;
- free text (``wrap=True``: reasons, titles, errors) folds onto more lines;
- columns that only add detail carry a ``drop`` rank and are left out, highest rank first,
  until the table fits.

A table that cannot fit even so loses no character: in a terminal its identifiers fold onto
more lines; in a pipe or a log it is printed at its natural width (the CLI's consoles do not
crop), where a wide line is whole and can be searched for.
"""

from __future__ import annotations

from collections.abc import Iterable, Iterator, Sequence
from dataclasses import dataclass
from typing import Any

from rich.console import Console, ConsoleOptions, JustifyMethod, RenderableType, RenderResult
from rich.measure import Measurement
from rich.table import Table

UNBOUNDED = 10_000
"""A width to measure a table's natural size at, wider than any terminal."""


@dataclass(frozen=True)
class Column:
    """A column of a ``FittedTable``: ``drop`` 0 is always shown; higher ranks go first."""

    header: str
    justify: JustifyMethod = "left"
    wrap: bool = False
    drop: int = 0
    max_width: int | None = None  # for wrapped text that would otherwise take the whole line


class FittedTable:
    """A table whose columns are chosen for the width it is rendered at."""

    def __init__(self, columns: Sequence[Column], **table_options: Any) -> None:
        self.columns = list(columns)
        self._options = table_options
        self._rows: list[tuple[RenderableType, ...] | None] = []  # None: a section break
        self._measured: tuple[Console, list[int]] | None = None  # (for whom, _needs)

    def add_row(self, *cells: RenderableType) -> None:
        if len(cells) != len(self.columns):
            raise ValueError(f"{len(cells)} cells for {len(self.columns)} columns")
        self._rows.append(cells)
        self._measured = None

    def add_section(self) -> None:
        self._rows.append(None)

    def shown_columns(self, console: Console, width: int) -> list[Column]:
        """The columns that fit ``width``: all of them, less the highest drop ranks."""
        shown = list(self.columns)
        for rank in sorted({column.drop for column in self.columns if column.drop}, reverse=True):
            if self._minimum_width(console, shown) <= width:
                break
            shown = [column for column in shown if column.drop != rank]
        return shown

    def __rich_console__(self, console: Console, options: ConsoleOptions) -> RenderResult:
        yield self._fitted(console, options.max_width)

    def __rich_measure__(self, console: Console, options: ConsoleOptions) -> Measurement:
        return Measurement.get(console, options, self._fitted(console, options.max_width))

    def _fitted(self, console: Console, width: int) -> Table:
        shown = self.shown_columns(console, width)
        minimum = self._minimum_width(console, shown)
        if minimum <= width:
            return self._build(shown, console=console)
        if console.is_terminal:
            return self._build(shown, fold_all=True)
        table = self._build(shown, console=console)
        table.width = minimum
        return table

    def _minimum_width(self, console: Console, columns: list[Column]) -> int:
        """The narrowest the table can be with ``columns`` and nothing cut: its borders and
        padding around each column's need (measured on a table without rows)."""
        needs = self._needs(console)
        skeleton = Table(**self._options)
        for column in columns:
            skeleton.add_column(column.header, min_width=needs[self.columns.index(column)])
        wide = console.options.update_width(UNBOUNDED)
        return Measurement.get(console, wide, skeleton).minimum

    def _needs(self, console: Console) -> list[int]:
        """Each column's least width: its widest cell when it must not wrap, else its longest
        word (rich measures any text by its longest word, whatever the column's no_wrap)."""
        if self._measured is None or self._measured[0] is not console:
            wide = console.options.update_width(UNBOUNDED)
            needs = []
            for index, column in enumerate(self.columns):
                cells = [column.header, *(row[index] for row in self._rows if row is not None)]
                sizes = [Measurement.get(console, wide, cell) for cell in cells]
                need = max(size.minimum if column.wrap else size.maximum for size in sizes)
                needs.append(min(need, column.max_width or need))
            self._measured = (console, needs)
        return self._measured[1]

    def _build(
        self, columns: list[Column], *, console: Console | None = None, fold_all: bool = False
    ) -> Table:
        """The rich table of ``columns``. With ``console``, a column that must not wrap is
        given its widest cell as its minimum width, so that rich never squeezes it."""
        needs = self._needs(console) if console is not None else None
        table = Table(**self._options)
        for column in columns:
            wrap = column.wrap or fold_all
            whole = None if wrap or needs is None else needs[self.columns.index(column)]
            table.add_column(
                column.header,
                justify=column.justify,
                no_wrap=not wrap,
                overflow="fold" if wrap else "ellipsis",
                min_width=whole,
                max_width=column.max_width,
            )
        indexes = [self.columns.index(column) for column in columns]
        for row in self._rows:
            if row is None:
                table.add_section()
            else:
                table.add_row(*_pick(row, indexes))
        return table


def _pick(row: Sequence[RenderableType], indexes: Iterable[int]) -> Iterator[RenderableType]:
    return (row[index] for index in indexes)
