"""Commands that read runs back for people: ``pipeline report`` (an HTML file) and
``pipeline diff`` (two runs' outputs compared). The work is in ``stepline.reports``."""

from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING, Annotated

import typer

from stepline.cli.options import (
    DebugOption,
    JsonOption,
    WorkdirOption,
    lazy_module,
    print_json,
    run_id_argument,
    settings_for,
)

if TYPE_CHECKING:
    from stepline.cli import render
    from stepline.store.rundir import RunDir
else:
    render = lazy_module("stepline.cli.render")


def report_command(
    run_id: Annotated[str, run_id_argument("The run to report on")],
    output: Annotated[
        Path | None,
        typer.Option(
            "--output",
            "-o",
            metavar="FILE",
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
    run_a: Annotated[str, run_id_argument("The first run", metavar="RUN_A")],
    run_b: Annotated[str, run_id_argument("The run to compare it with", metavar="RUN_B")],
    step: Annotated[
        str | None,
        typer.Option(
            "--step", metavar="STEP", help="Show how this step's output differs (number or id)."
        ),
    ] = None,
    exit_code: Annotated[
        bool,
        typer.Option(
            "--exit-code",
            help="Exit 1 if any output compared differs or is in one run only, 0 if not.",
        ),
    ] = False,
    workdir: WorkdirOption = None,
    as_json: JsonOption = False,
    debug: DebugOption = False,
) -> None:
    """Compare the step outputs of two runs (same, changed, only in one), or diff one step.

    With --exit-code it exits like ``git diff --exit-code``, for scripts and CI: 1 when an
    output differs, 0 when all are the same.
    """
    from stepline.store.runs import RunStore

    store = RunStore(settings_for(workdir).workdir)
    dir_a, dir_b = store.open(run_a), store.open(run_b)
    if step is None:
        differs = _show_comparison(dir_a, dir_b, as_json=as_json)
    else:
        differs = _show_step_diff(dir_a, dir_b, step, as_json=as_json)
    if exit_code and differs:
        raise typer.Exit(1)


def _show_comparison(dir_a: RunDir, dir_b: RunDir, *, as_json: bool) -> bool:
    """Print which outputs differ; True if any does."""
    from stepline.reports.diff import compare_runs, comparison_json

    comparison = compare_runs(dir_a, dir_b)
    if as_json:
        print_json(comparison_json(comparison))
    else:
        render.make_consoles()[0].print(render.comparison_table(comparison))
    return comparison.differs


def _show_step_diff(dir_a: RunDir, dir_b: RunDir, step: str, *, as_json: bool) -> bool:
    """Print how one step's output differs; True if it does."""
    from stepline.reports.diff import step_diff

    compared, text = step_diff(dir_a, dir_b, step)
    if as_json:
        print_json({"step": compared.step, "change": compared.change.value, "diff": text})
    else:
        render.print_step_diff(render.make_consoles()[0], compared, text)
    return compared.differs
