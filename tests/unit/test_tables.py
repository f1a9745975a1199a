"""FittedTable: identifiers whole at any width; detail columns give way in their order."""

from __future__ import annotations

import io

from rich.console import Console

from stepline.cli.tables import Column, FittedTable

RUN_ID = "run-20261207-014340-16a3f2"
PATH = "steps/02-extract.json"


def render(table: FittedTable, width: int, *, terminal: bool = False) -> list[str]:
    out = io.StringIO()
    console = Console(file=out, width=width, force_terminal=terminal, soft_wrap=True)
    console.print(table)
    return out.getvalue().splitlines()


def runs(*extra: Column) -> FittedTable:
    table = FittedTable(
        [
            Column("run id"),
            Column("status"),
            Column("started", drop=1),
            Column("duration", drop=2),
            Column("output"),
            *extra,
        ]
    )
    table.add_row(RUN_ID, "completed", "2026-12-07 01:43", "15.2s", PATH, *("x" for _ in extra))
    return table


def test_at_200_columns_every_column_is_shown() -> None:
    lines = render(runs(), 200)
    assert all(name in lines[1] for name in ("run id", "status", "started", "duration", "output"))
    assert max(map(len, lines)) <= 200


def test_the_highest_drop_rank_goes_first_then_the_next() -> None:
    # Natural widths: 96 columns with everything, 85 without duration, 66 without started.
    def shown(width: int) -> list[str]:
        return [column.header for column in runs().shown_columns(Console(width=width), width)]

    assert shown(96) == ["run id", "status", "started", "duration", "output"]
    assert shown(90) == ["run id", "status", "started", "output"]
    assert shown(80) == ["run id", "status", "output"]


def test_at_80_columns_ids_and_paths_stay_whole() -> None:
    lines = render(runs(), 80)
    assert max(map(len, lines)) <= 80
    assert any(RUN_ID in line and PATH in line for line in lines)


def test_wrapped_text_folds_instead_of_pushing_a_column_out() -> None:
    table = FittedTable([Column("step"), Column("why", wrap=True), Column("cost", drop=1)])
    table.add_row("extract", "the prompt needs the output of step context, " * 3, "$0.1")
    lines = render(table, 80)
    assert max(map(len, lines)) <= 80
    assert "cost" in lines[1]  # folding the reason made room; nothing was dropped


def test_in_a_pipe_a_table_that_cannot_fit_is_printed_whole_at_its_natural_width() -> None:
    lines = render(runs(), 40)
    assert any(RUN_ID in line and PATH in line for line in lines)


def test_in_a_terminal_a_table_that_cannot_fit_folds_without_losing_a_character() -> None:
    lines = [_plain(line) for line in render(runs(), 40, terminal=True)]
    assert max(map(len, lines)) <= 40
    body = [line.split("│") for line in lines if line.startswith("│")]
    assert "".join(cells[1].strip() for cells in body) == RUN_ID
    assert "".join(cells[3].strip() for cells in body) == PATH


def test_a_row_must_have_a_cell_per_column() -> None:
    table = FittedTable([Column("a"), Column("b")])
    try:
        table.add_row("only one")
    except ValueError:
        return
    raise AssertionError("a short row was accepted")


def _plain(line: str) -> str:
    """A terminal line without its colour codes."""
    import re

    return re.sub(r"\x1b\[[0-9;]*m", "", line)
