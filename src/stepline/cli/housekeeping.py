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
    DryRunOption,
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
        str, typer.Option("--older-than", help="Remove entries older than this, e.g. 30d.")
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
        str,
        typer.Option(
            "--older-than",
            help="Remove runs not changed for this long, e.g. 30d.",
            show_default=False,
        ),
    ],
    status: Annotated[
        str | None, typer.Option("--status", help="Only runs with this status, e.g. failed.")
    ] = None,
    dry_run: DryRunOption = False,
    workdir: WorkdirOption = None,
    as_json: JsonOption = False,
    debug: DebugOption = False,
) -> None:
    """Remove runs older than --older-than (never one that is running)."""
    from stepline.store.runs import RunStore
    from stepline.store.state import RunStatus

    cutoff = datetime.now(UTC) - timedelta(seconds=_seconds(older_than))
    check_status(status)
    store = RunStore(settings_for(workdir).workdir)
    doomed = [
        row
        for row in store.summaries()
        if row.problem is None
        and row.status != RunStatus.RUNNING.value
        and status in (None, row.status)
        and row.updated_at is not None
        and row.updated_at < cutoff
    ]
    if not dry_run:
        store.sweep_removals()
        for row in doomed:
            store.remove(row.run_id)
    ids = [row.run_id for row in doomed]
    if as_json:
        print_json({"removed" if not dry_run else "would_remove": ids})
        return
    verb = "Would remove" if dry_run else "Removed"
    typer.echo(f"{verb} {len(ids)} run{'' if len(ids) == 1 else 's'}" + (": " if ids else "."))
    for run_id in ids:
        typer.echo(f"  {run_id}")


def _seconds(text: str) -> float:
    from stepline.spec import parse_duration

    try:
        return parse_duration(text)
    except ValueError as exc:
        raise InputError(f"--older-than: {exc}") from None
