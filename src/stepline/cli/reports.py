"""Commands that read runs back for people: ``pipeline report`` (an HTML file) and
``pipeline diff`` (two runs' outputs compared). The work is in ``stepline.reports``."""

from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING, Annotated

import typer

from stepline.cli.completion import complete_run_id
from stepline.cli.options import (
    DebugOption,
    JsonOption,
    WorkdirOption,
    lazy_module,
    print_json,
    settings_for,
)

if TYPE_CHECKING:
    from stepline.cli import render
else:
    render = lazy_module("stepline.cli.render")


def report_command(
    run_id: Annotated[
        str,
        typer.Argument(
            help="The run to report on.", show_default=False, autocompletion=complete_run_id
        ),
    ],
    output: Annotated[
        Path | None,
        typer.Option(
            "--output",
            "-o",
            help="Write the HTML here (default: <run>/report.html).",
            show_default=False,
        ),
    ] = None,
    workdir: WorkdirOption = None,
    as_json: JsonOption = False,
    debug: DebugOption = False,
) -> None:
    """Write one self-contained HTML report of a run (opens in any browser, offline)."""
    from stepline.reports.html_report import write_report
    from stepline.reports.overview import load_overview
    from stepline.store.runs import RunStore
    from stepline.store.state import now

    settings = settings_for(workdir)
    overview = load_overview(RunStore(settings.workdir).open(run_id))
    path = write_report(overview, output, generated_at=now())
    if as_json:
        print_json({"run_id": overview.state.run_id, "path": str(path)})
    else:
        typer.echo(str(path))


def diff_command(
    run_a: Annotated[
        str,
        typer.Argument(help="The first run.", show_default=False, autocompletion=complete_run_id),
    ],
    run_b: Annotated[
        str,
        typer.Argument(
            help="The run to compare it with.",
            show_default=False,
            autocompletion=complete_run_id,
        ),
    ],
    step: Annotated[
        str | None,
        typer.Option("--step", help="Show how this step's output differs (number or id)."),
    ] = None,
    workdir: WorkdirOption = None,
    as_json: JsonOption = False,
    debug: DebugOption = False,
) -> None:
    """Compare the step outputs of two runs (same, changed, only in one), or diff one step."""
    from stepline.reports.diff import compare_runs, comparison_json, step_diff
    from stepline.store.runs import RunStore

    store = RunStore(settings_for(workdir).workdir)
    dir_a, dir_b = store.open(run_a), store.open(run_b)
    out = render.make_consoles()[0]
    if step is None:
        comparison = compare_runs(dir_a, dir_b)
        print_json(comparison_json(comparison)) if as_json else out.print(
            render.comparison_table(comparison)
        )
        return
    compared, text = step_diff(dir_a, dir_b, step)
    if as_json:
        print_json({"step": compared.step, "change": compared.change.value, "diff": text})
    else:
        render.print_step_diff(out, compared, text)
