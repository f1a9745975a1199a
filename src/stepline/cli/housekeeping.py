"""Housekeeping commands: the response cache (``pipeline cache ...``) and old runs
(``pipeline clean``)."""

from __future__ import annotations

import dataclasses
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import TYPE_CHECKING, Annotated, Any

import typer

from stepline.cli.options import (
    DebugOption,
    JsonOption,
    WorkdirOption,
    check_status,
    lazy_module,
    print_json,
    settings_for,
)
from stepline.errors import InputError

if TYPE_CHECKING:
    from stepline.cli import render
    from stepline.store.runs import RunStore, RunSummary
else:
    render = lazy_module("stepline.cli.render")

cache_app = typer.Typer(help="Inspect and clean the LLM response cache (<workdir>/cache.sqlite).")


@cache_app.command("stats")
def cache_stats_command(
    workdir: WorkdirOption = None, as_json: JsonOption = False, debug: DebugOption = False
) -> None:
    """How many replies are cached, how much space they take, and how old they are."""
    cache = _cache(workdir)
    stats = cache.stats()
    if as_json:
        print_json({"path": str(cache.path), **dataclasses.asdict(stats)})
    else:
        render.make_consoles()[0].print(render.cache_stats(cache.path, stats))


@cache_app.command("clear")
def cache_clear_command(
    workdir: WorkdirOption = None, as_json: JsonOption = False, debug: DebugOption = False
) -> None:
    """Remove every cached reply."""
    removed = _cache(workdir).clear()
    if as_json:
        print_json({"removed": removed})
    else:
        typer.echo(f"Removed {removed} cached {'reply' if removed == 1 else 'replies'}.")


@cache_app.command("prune")
def cache_prune_command(
    older_than: Annotated[
        str,
        typer.Option(
            "--older-than", metavar="AGE", help="Remove entries older than this, e.g. 30d."
        ),
    ] = "30d",
    workdir: WorkdirOption = None,
    as_json: JsonOption = False,
    debug: DebugOption = False,
) -> None:
    """Remove cached replies older than --older-than (default 30d)."""
    removed = _cache(workdir).prune(older_than_s=_seconds(older_than))
    if as_json:
        print_json({"removed": removed, "older_than": older_than})
        return
    noun = "reply" if removed == 1 else "replies"
    typer.echo(f"Removed {removed} cached {noun} older than {older_than}.")


def _cache(workdir: Path | None) -> Any:
    from stepline.store.runs import RunStore

    return RunStore(settings_for(workdir).workdir).cache()


def clean_command(
    older_than: Annotated[
        str | None,
        typer.Option(
            "--older-than",
            metavar="AGE",
            help="Remove runs not changed for this long, e.g. 30d.",
            show_default=False,
        ),
    ] = None,
    status: Annotated[
        str | None,
        typer.Option(
            "--status", metavar="STATUS", help="Remove runs with this status, e.g. failed."
        ),
    ] = None,
    dry_run: Annotated[
        bool, typer.Option("--dry-run", help="List the runs that would go; remove nothing.")
    ] = False,
    workdir: WorkdirOption = None,
    as_json: JsonOption = False,
    debug: DebugOption = False,
) -> None:
    """Remove runs by age (--older-than), status (--status) or both; never a running one."""
    from stepline.store.runs import RunStore

    cutoff = _clean_cutoff(older_than, status)
    store = RunStore(settings_for(workdir).workdir)
    doomed = [row.run_id for row in store.summaries() if _removable(row, cutoff, status)]
    removed = doomed if dry_run else _remove(store, doomed)
    if as_json:
        print_json({"removed" if not dry_run else "would_remove": removed})
        return
    verb = "Would remove" if dry_run else "Removed"
    typer.echo(
        f"{verb} {len(removed)} run{'' if len(removed) == 1 else 's'}" + (": " if removed else ".")
    )
    for run_id in removed:
        typer.echo(f"  {run_id}")


def _clean_cutoff(older_than: str | None, status: str | None) -> datetime | None:
    """The last change a run may have to go (None: any age), once the options are checked:
    ``clean`` alone would remove every run, so it must be told which."""
    from stepline.store.state import RunStatus

    if older_than is None and status is None:
        raise InputError(
            "pipeline clean: say which runs to remove with --older-than AGE, --status STATUS "
            "or both",
            hint="see what would go first: pipeline clean --status failed --dry-run",
        )
    check_status(status)
    if status == RunStatus.RUNNING.value:
        raise InputError(
            "pipeline clean never removes a running run",
            hint="stop it with: pipeline cancel RUN_ID; it is then interrupted, and "
            "pipeline clean --status interrupted removes it",
        )
    if older_than is None:
        return None
    return datetime.now(UTC) - timedelta(seconds=_seconds(older_than))


def _removable(row: RunSummary, cutoff: datetime | None, status: str | None) -> bool:
    """A readable run that no process holds, with the status and age asked for."""
    from stepline.store.lock import is_locked
    from stepline.store.rundir import RunDir
    from stepline.store.state import RunStatus

    if row.problem is not None or row.status == RunStatus.RUNNING.value:
        return False
    if status not in (None, row.status):
        return False
    if cutoff is not None and (row.updated_at is None or row.updated_at >= cutoff):
        return False
    return not is_locked(RunDir(row.path).lock_path)  # a resume starting: not running yet


def _remove(store: RunStore, run_ids: list[str]) -> list[str]:
    """Remove the runs; one that a process took hold of meanwhile is kept (and not listed)."""
    from stepline.errors import RunStoreError

    store.sweep_removals()
    removed = []
    for run_id in run_ids:
        try:
            store.remove(run_id)
        except (RunStoreError, InputError):
            continue  # locked since it was listed (a run starting), or removed by another clean
        removed.append(run_id)
    return removed


def _seconds(text: str) -> float:
    from stepline.spec import parse_duration

    try:
        return parse_duration(text)
    except ValueError as exc:
        raise InputError(f"--older-than: {exc}") from None
