"""Background runs on the command line: ``run|resume --detach``, ``cancel`` and ``logs``.

``--detach`` hands the very command it was given to a background process: every option the
user passed is passed on (rebuilt from the parsed values, so nothing is parsed twice), with
the run id chosen here, the work folder made explicit and pause points passed (nobody is
there to review; an explicit ``--pause`` still stops at them, with status ``paused``).
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Annotated, Any, NoReturn

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
from stepline.errors import InputError

if TYPE_CHECKING:
    from stepline.cli import render
    from stepline.settings import Settings
    from stepline.store.rundir import RunDir
else:
    render = lazy_module("stepline.cli.render")

DetachOption = Annotated[
    bool,
    typer.Option(
        "--detach",
        help="Run in the background: print the run id and return once the run has begun.",
    ),
]
# Parsed values that are not handed to the background process: --json and --dry-run shape
# this command's own output, --detach is this very step.
_KEPT_HERE = frozenset({"detach", "as_json", "dry_run"})


def start_in_background(ctx: typer.Context, settings: Settings, run_id: str | None) -> NoReturn:
    """``pipeline run|resume ... --detach``: start the same command in a detached process."""
    from stepline.engine.background import start_detached
    from stepline.store.rundir import new_run_id
    from stepline.store.runs import RunStore

    if ctx.params.get("dry_run"):
        raise InputError("--dry-run and --detach cannot be combined; a dry run writes nothing")
    store = RunStore(settings.workdir)
    resuming = ctx.command.name == "resume"
    run_dir = store.open(run_id or "") if resuming else store.planned_run(run_id or new_run_id())
    pause = ctx.params.get("pause")
    args = child_args(
        ctx,
        run_id=run_dir.run_id,
        pause=False if pause is None else pause,
        workdir=settings.workdir,
    )
    detached = start_detached([str(ctx.command.name), *args], run_dir=run_dir)
    if ctx.params.get("as_json"):
        print_json(
            {
                "run_id": detached.run_id,
                "pid": detached.pid,
                "run_dir": str(detached.run_dir),
                "log": str(detached.log_path),
            }
        )
    else:
        typer.echo(detached.run_id)  # alone on stdout, for RUN=$(pipeline run ... --detach)
        render.print_detached(render.make_consoles()[1], detached, settings.workdir)
    raise typer.Exit(0)


def child_args(ctx: typer.Context, **overrides: Any) -> list[str]:
    """The command line that gives the background process this command's parsed values.

    Options come first, then ``--`` and the arguments, so an input named ``-x`` stays an
    argument. Works from the parameters' declarations, so a new option is passed on too.
    """
    options: list[str] = []
    arguments: list[str] = []
    for param in ctx.command.params:
        name = str(param.name)
        if name in _KEPT_HERE:
            continue
        value = overrides.get(name, ctx.params.get(name))
        if param.param_type_name == "argument":
            arguments.append(str(value))
        else:
            options += _option_tokens(param, value)
    return [*options, "--", *arguments]


def _option_tokens(param: Any, value: Any) -> list[str]:
    if value is None:
        return []
    if param.is_flag:
        if value:
            return [param.opts[0]]
        return [param.secondary_opts[0]] if param.secondary_opts else []
    values = value if param.multiple else [value]
    return [token for item in values for token in (param.opts[0], str(item))]


def cancel_command(
    run_id: Annotated[str, run_id_argument("The run to stop")],
    force: Annotated[
        bool, typer.Option("--force", help="SIGKILL at once instead of a graceful SIGTERM.")
    ] = False,
    wait: Annotated[
        float,
        typer.Option(
            "--wait",
            min=0,
            metavar="SECONDS",
            help="Seconds to wait for the run to stop (0: do not).",
        ),
    ] = 30.0,
    workdir: WorkdirOption = None,
    as_json: JsonOption = False,
    debug: DebugOption = False,
) -> None:
    """Stop a running run and wait until it has stopped (exit 0, also if it was not running).

    Sends SIGTERM to the process that holds the run (SIGKILL with --force); the run ends as
    interrupted and can be resumed. The run's open provider batches (batch mode) are canceled
    too: a resume collects what they finished and treats the rest as failed items.
    """
    from stepline.engine.background import cancel_run
    from stepline.store.runs import RunStore

    settings = settings_for(workdir)
    run_dir = RunStore(settings.workdir).open(run_id)
    result = cancel_run(run_dir, force=force, wait_s=wait, settings=settings)
    if as_json:
        print_json(
            {
                "run_id": result.run_id,
                "was_running": result.was_running,
                "pid": result.pid,
                "signal": result.signal,
                "status": result.status.value,
                "batches_canceled": list(result.batches),
            }
        )
    else:
        render.print_cancellation(render.make_consoles()[0], result, settings.workdir)


def logs_command(
    run_id: Annotated[str, run_id_argument("The run whose events to print")],
    follow: Annotated[
        bool, typer.Option("--follow", "-f", help="Keep printing until the run's process ends.")
    ] = False,
    workdir: WorkdirOption = None,
    as_json: JsonOption = False,
    debug: DebugOption = False,
) -> None:
    """Print a run's events; -f follows them until its process ends."""
    from stepline.engine.background import detached_log_tail
    from stepline.engine.events import follow_events
    from stepline.store.runs import RunStore

    run_dir = RunStore(settings_for(workdir).workdir).open(run_id)
    out = render.make_consoles()[0]
    last: dict[str, Any] = {}
    for line, record in follow_events(run_dir, follow=follow):
        if as_json:
            typer.echo(line)
        else:
            render.print_event(out, record)
        last = record
    if not as_json and _ended_unannounced(run_dir, last):
        render.print_log_tail(out, detached_log_tail(run_dir))


def _ended_unannounced(run_dir: RunDir, last: dict[str, Any]) -> bool:
    """Whether the run's process is gone without having logged how the run ended (killed, or
    a crash outside the runner): then its detached log may say why."""
    from stepline.store.lock import is_locked

    closing = {"run_completed", "run_failed", "run_paused", "run_interrupted"}
    return last.get("type") not in closing and not is_locked(run_dir.lock_path)
