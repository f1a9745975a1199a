"""The ``pipeline`` command: parse arguments, call the engine, render the result.

Commands stay thin: each builds options, calls one engine function and renders what comes
back. ``main`` is the single error boundary: a ``StepLineError`` becomes one message, a hint
and its exit code; a traceback appears only with ``--debug``. The engine is imported inside
the commands that need it, so ``--help`` and ``list`` never load jinja2 or the LLM SDKs.
"""

from __future__ import annotations

import dataclasses
import sys
import traceback
from pathlib import Path
from typing import TYPE_CHECKING, Annotated, Any, NoReturn

import typer

from stepline import __version__
from stepline.cli.background import (
    DetachOption,
    cancel_command,
    logs_command,
    start_in_background,
)
from stepline.cli.housekeeping import cache_app, clean_command
from stepline.cli.options import (
    BatchOption,
    ConcurrencyOption,
    ConfigOption,
    DebugOption,
    DryRunOption,
    ExecutorOption,
    FreshItemsOption,
    FromStepOption,
    JobsOption,
    JsonOption,
    MaxCostOption,
    ModelOption,
    NoCacheOption,
    PauseOption,
    ProviderOption,
    RecordOption,
    ReplayOption,
    SetOption,
    SkipFailedOption,
    ToStepOption,
    WorkdirOption,
    check_status,
    lazy_module,
    print_json,
    run_id_argument,
    settings_for,
)
from stepline.cli.prices import prices_command
from stepline.cli.reports import diff_command, report_command
from stepline.cli.scaffold import init_command, schema_command
from stepline.errors import InputError, StepLineError

if TYPE_CHECKING:
    from stepline.cli import render
    from stepline.engine.contract import Hooks, RunResult
    from stepline.engine.prepare import Preview, RunOptions
    from stepline.settings import Settings
    from stepline.store.runs import RunSummary
else:  # rich tables and the run store load only for commands that use them
    render = lazy_module("stepline.cli.render")

NoReplayOption = Annotated[
    bool,
    typer.Option(
        "--no-replay",
        help="Call the providers, not the cassette the run was started with --replay.",
    ),
]

app = typer.Typer(
    name="pipeline",
    help="Run multi-step, LLM-backed pipelines in resumable work folders.",
    no_args_is_help=False,
    add_completion=True,
    pretty_exceptions_enable=False,
    rich_markup_mode=None,
)
app.add_typer(cache_app, name="cache", short_help="Inspect and clean the response cache.")
app.command("init", short_help="Create a pipeline from the starter or an example.")(init_command)


@app.callback(invoke_without_command=True)
def root(
    ctx: typer.Context,
    resume: Annotated[
        str | None,
        typer.Option("--resume", metavar="RUN_ID", help="Resume a run (same as: resume RUN_ID)."),
    ] = None,
    config: ConfigOption = None,
    from_step: FromStepOption = None,
    to_step: ToStepOption = None,
    dry_run: DryRunOption = False,
    pause: PauseOption = None,
    set_: SetOption = None,
    as_json: JsonOption = False,
    workdir: WorkdirOption = None,
    debug: DebugOption = False,
    version: Annotated[bool, typer.Option("--version", help="Show the version.")] = False,
) -> None:
    """Run multi-step, LLM-backed pipelines in resumable work folders."""
    if version:
        typer.echo(f"stepline {__version__}")
        raise typer.Exit(0)
    if ctx.invoked_subcommand is not None:
        return
    if resume is None:
        typer.echo(ctx.get_help())
        raise typer.Exit(0)
    resume_command(
        ctx,
        resume,
        config=config,
        from_step=from_step,
        to_step=to_step,
        dry_run=dry_run,
        pause=pause,
        set_=set_,
        workdir=workdir,
        as_json=as_json,
    )


@app.command("run", short_help="Start a run of the pipeline on INPUT.")
def run_command(
    ctx: typer.Context,
    input: Annotated[
        Path, typer.Argument(metavar="INPUT", help="The input file.", show_default=False)
    ],
    config: ConfigOption = None,
    run_id: Annotated[
        str | None,
        typer.Option("--run-id", metavar="RUN_ID", help="Name the run (default: generated)."),
    ] = None,
    from_step: FromStepOption = None,
    to_step: ToStepOption = None,
    dry_run: DryRunOption = False,
    pause: PauseOption = None,
    set_: SetOption = None,
    model: ModelOption = None,
    provider: ProviderOption = None,
    concurrency: ConcurrencyOption = None,
    jobs: JobsOption = None,
    executor: ExecutorOption = None,
    max_cost: MaxCostOption = None,
    batch: BatchOption = False,
    no_cache: NoCacheOption = False,
    replay: ReplayOption = None,
    record: RecordOption = None,
    workdir: WorkdirOption = None,
    detach: DetachOption = False,
    as_json: JsonOption = False,
    debug: DebugOption = False,
) -> None:
    """Start a new run of the pipeline on INPUT."""
    from stepline.engine import api

    settings = settings_for(workdir, debug=debug)
    if detach:
        start_in_background(ctx, settings, run_id)
    config_path = settings.config_path(config)
    options = _run_options(ctx)
    if dry_run:
        _show_preview(
            api.preview_new_run(config_path, input, settings=settings, options=options), as_json
        )
    hooks = _hooks(settings, pause, as_json)
    result = api.run(
        config_path, input, settings=settings, options=options, hooks=hooks, handle_signals=True
    )
    _finish(result, settings, as_json)


@app.command("resume", short_help="Continue a run.")
def resume_command(
    ctx: typer.Context,
    run_id: Annotated[str, run_id_argument("The run to continue")],
    config: ConfigOption = None,
    from_step: FromStepOption = None,
    to_step: ToStepOption = None,
    dry_run: DryRunOption = False,
    pause: PauseOption = None,
    set_: SetOption = None,
    model: ModelOption = None,
    provider: ProviderOption = None,
    concurrency: ConcurrencyOption = None,
    jobs: JobsOption = None,
    executor: ExecutorOption = None,
    max_cost: MaxCostOption = None,
    batch: BatchOption = False,
    skip_failed: SkipFailedOption = False,
    fresh_items: FreshItemsOption = False,
    no_cache: NoCacheOption = False,
    replay: ReplayOption = None,
    no_replay: NoReplayOption = False,
    record: RecordOption = None,
    workdir: WorkdirOption = None,
    detach: DetachOption = False,
    as_json: JsonOption = False,
    debug: DebugOption = False,
) -> None:
    """Continue RUN_ID: reuse completed, unchanged steps; run the rest."""
    from stepline.engine import api

    settings = settings_for(workdir, debug=debug)
    if detach:
        start_in_background(ctx, settings, run_id)
    options = _run_options(ctx, resuming=True)
    config_path = config  # else the path recorded in the run, else its snapshot
    if dry_run:
        _show_preview(
            api.preview_resume(run_id, settings=settings, options=options, config_path=config_path),
            as_json,
        )
    hooks = _hooks(settings, pause, as_json)
    result = api.resume(
        run_id,
        settings=settings,
        options=options,
        hooks=hooks,
        config_path=config_path,
        handle_signals=True,
    )
    _finish(result, settings, as_json)


@app.command("list", short_help="List runs, newest first.")
def list_command(
    status: Annotated[
        str | None, typer.Option("--status", metavar="STATUS", help="Only runs with this status.")
    ] = None,
    limit: Annotated[
        int, typer.Option("--limit", min=1, metavar="N", help="At most this many runs.")
    ] = 20,
    workdir: WorkdirOption = None,
    as_json: JsonOption = False,
    debug: DebugOption = False,
) -> None:
    """List runs, newest first."""
    settings = settings_for(workdir)
    from stepline.store.runs import RunStore

    check_status(status)
    rows = [r for r in RunStore(settings.workdir).summaries() if status in (None, r.status)]
    rows = rows[:limit]
    if as_json:
        print_json([_summary_json(row) for row in rows])
    elif not rows:
        typer.echo(f"No runs in {settings.workdir}.")
    else:
        render.make_consoles()[0].print(render.runs_table(rows))


@app.command("show", short_help="Show a run, a step's output or its LLM calls.")
def show_command(
    run_id: Annotated[str, run_id_argument("The run to show")],
    step: Annotated[
        str | None,
        typer.Option("--step", metavar="STEP", help="Print this step's output (number or id)."),
    ] = None,
    calls: Annotated[
        bool, typer.Option("--calls", help="List the LLM calls (with --step: of that step).")
    ] = False,
    call: Annotated[
        int | None,
        typer.Option("--call", min=1, metavar="N", help="Print LLM call N (see --calls) in full."),
    ] = None,
    workdir: WorkdirOption = None,
    as_json: JsonOption = False,
    debug: DebugOption = False,
) -> None:
    """Show a run's steps, one step's output (--step), or its LLM calls (--calls, --call N)."""
    from stepline.spec import select_step

    settings = settings_for(workdir)
    from stepline.reports.overview import load_overview, overview_json
    from stepline.store.runs import RunStore, effective_status
    from stepline.store.state import load_state

    run_dir = RunStore(settings.workdir).open(run_id)
    state = load_state(run_dir.state_path)
    status = effective_status(state, run_dir)
    out = render.make_consoles()[0]
    step_ids = [s.id for s in state.steps]
    if calls or call is not None:
        only = step_ids[select_step(step, step_ids)] if step is not None else None
        _show_calls(run_dir.read_calls(), only=only, number=call, as_json=as_json)
    elif step is not None:
        record = state.steps[select_step(step, step_ids)]
        if record.output is None:
            raise InputError(f'step "{record.id}" has no output (status {record.status.value})')
        value = run_dir.read_output(record.output)
        print_json(value) if as_json else render.print_output(out, value)
    elif as_json:  # the state, its usage from the call log, the timeline and the breakdown
        overview = load_overview(run_dir)
        state = overview.state
        print_json(
            {**state.model_dump(mode="json"), "status": status.value, **overview_json(overview)}
        )
    else:
        render.print_run(out, load_overview(run_dir), settings.workdir)


def _show_calls(
    records: list[dict[str, Any]], *, only: str | None, number: int | None, as_json: bool
) -> None:
    """List call records (numbered in run order), or print call ``number`` in full."""
    numbered = list(enumerate(records, start=1))
    if number is not None:
        if number > len(records):
            raise InputError(f"there is no call {number}; this run has {len(records)} call(s)")
        record = records[number - 1]
        print_json(record) if as_json else render.print_call(
            render.make_consoles()[0], number, record
        )
        return
    selected = [(n, r) for n, r in numbered if only is None or r.get("step") == only]
    if as_json:
        print_json([{"number": n, **r} for n, r in selected])
    elif not selected:
        typer.echo("No LLM calls" + (f' in step "{only}".' if only else " in this run."))
    else:
        render.make_consoles()[0].print(render.calls_table(selected))


@app.command("validate", short_help="Check a config without running it.")
def validate_command(
    config: ConfigOption = None,
    set_: SetOption = None,
    as_json: JsonOption = False,
    debug: DebugOption = False,
) -> None:
    """Check a config: schema, step references, templates, models and Python imports."""
    from stepline.engine import api

    settings = settings_for(None)
    config_path = settings.config_path(config)
    spec = api.validate_config(config_path, _parse_sets(set_))
    if as_json:
        steps = [step.id for step in spec.steps]
        print_json({"config": str(config_path), "pipeline": spec.name, "steps": steps, "ok": True})
    else:
        typer.echo(f"{config_path}: OK ({spec.name}, {len(spec.steps)} steps)")


app.command("logs", short_help="Print a run's events (-f follows them).")(logs_command)
app.command("cancel", short_help="Stop a running run.")(cancel_command)
app.command("report", short_help="Write an HTML report of a run.")(report_command)
app.command("diff", short_help="Compare the outputs of two runs.")(diff_command)
app.command("prices", short_help="Show the price table and its date.")(prices_command)
app.command("schema", short_help="Print the config's JSON Schema.")(schema_command)
app.command("clean", short_help="Remove old or finished runs.")(clean_command)


def _run_options(ctx: typer.Context, *, resuming: bool = False) -> RunOptions:
    """The command's options as ``RunOptions``, whose fields its parameters are named after
    (so an option is added in one place and reaches the runner under its own name)."""
    from stepline.engine.prepare import RunOptions

    names = {field.name for field in dataclasses.fields(RunOptions)} - {"variables"}
    if resuming:
        names.discard("run_id")  # the run to resume, not a new run's name
    given = {name: value for name, value in ctx.params.items() if name in names}
    return RunOptions(**given, variables=_parse_sets(ctx.params.get("set_")))


def _parse_sets(values: list[str] | None) -> dict[str, str]:
    variables: dict[str, str] = {}
    for value in values or []:
        key, sep, text = value.partition("=")
        if not sep or not key.strip().isidentifier():
            raise InputError(f"--set {value!r}: expected NAME=VALUE, e.g. --set audience=engineers")
        variables[key.strip()] = text
    return variables


def _hooks(settings: Settings, pause: bool | None, as_json: bool) -> Hooks:
    from stepline.engine.contract import Hooks
    from stepline.engine.pauses import PauseMode

    _, err = render.make_consoles()
    if pause is True:
        mode = PauseMode.ALWAYS
    elif pause is False or settings.no_pause:
        mode = PauseMode.NEVER
    else:
        mode = PauseMode.ASK
    interactive = sys.stdin.isatty() and err.is_terminal
    progress = render.ProgressPrinter(err)
    return Hooks(
        listener=progress,
        pauser=render.ask_at_pause(err, progress) if interactive else None,
        pause_mode=mode,
    )


def _show_preview(preview: Preview, as_json: bool) -> NoReturn:
    if as_json:
        print_json(preview.to_json())
    else:
        render.print_plan(render.make_consoles()[0], preview)
    raise typer.Exit(0)


def _finish(result: RunResult, settings: Settings, as_json: bool) -> NoReturn:
    if as_json:
        print_json(result.to_json())
    else:
        render.print_result(render.make_consoles()[0], result, settings.workdir)
    raise typer.Exit(result.exit_code)


def _summary_json(row: RunSummary) -> dict[str, Any]:
    record = dataclasses.asdict(row)
    record["path"] = str(row.path)
    for name in ("started_at", "updated_at"):
        moment = getattr(row, name)
        record[name] = moment.isoformat() if moment else None
    return record


def _debug(args: list[str]) -> bool:
    """Whether to show tracebacks: ``--debug`` or PIPELINE_DEBUG (the settings are read only
    when an error needs it, so commands that succeed do not import pydantic-settings)."""
    if "--debug" in args:
        return True
    try:
        from stepline.settings import load_settings

        return load_settings().debug
    except InputError:
        return False


def main(argv: list[str] | None = None) -> NoReturn:
    """Entry point of ``pipeline`` and ``stepline``: the one place errors are rendered."""
    args = sys.argv[1:] if argv is None else argv
    try:
        app(args=args, prog_name="pipeline", standalone_mode=True)
    except StepLineError as exc:
        if _debug(args):
            traceback.print_exc()
        _fail(args, exc.message, exc.hint, exc.exit_code)
    except KeyboardInterrupt:
        sys.exit(130)
    except Exception as exc:
        if _debug(args):
            raise
        _fail(
            args,
            f"internal error: {type(exc).__name__}: {exc}",
            "run again with --debug for the traceback, and report it",
            1,
        )
    sys.exit(0)


def _fail(args: list[str], message: str, hint: str | None, exit_code: int) -> NoReturn:
    """The error on stderr for people; under ``--json`` also on stdout, as JSON, for the
    script that reads stdout and would otherwise get nothing."""
    render.print_error(render.make_consoles()[1], message, hint)
    if "--json" in args[: args.index("--") if "--" in args else None]:
        print_json({"error": message, "hint": hint, "exit_code": exit_code})
    sys.exit(exit_code)
