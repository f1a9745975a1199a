"""Shell completion of run ids (``pipeline resume <TAB>``, and show, report, diff, logs, cancel).

The shell asks on every Tab press, so this only lists folder names in the work folder: no
state is parsed and nothing heavy is imported. Newest runs come first, then ``last`` (the
shorthand every run id argument accepts for the newest run) when there is a run to name.
"""

from __future__ import annotations

from pathlib import Path

import typer

from stepline.errors import StepLineError

LAST_RUN = "last"  # = stepline.store.runs.LAST_RUN, which a Tab press must not import (pydantic)


def complete_run_id(ctx: typer.Context, incomplete: str) -> list[str]:
    """Run ids in the work folder (``--workdir`` if already typed) starting with ``incomplete``."""
    workdir = ctx.params.get("workdir")
    try:
        if workdir is None:
            from stepline.settings import load_settings

            workdir = load_settings().workdir
        found = run_ids(Path(workdir), incomplete)
        if _offer_last(incomplete, found) and (found or run_ids(Path(workdir))):
            found.append(LAST_RUN)  # after the ids: it names one of them, the newest
        return found
    except (OSError, StepLineError):
        return []  # a Tab press must never print an error into the user's command line


def _offer_last(incomplete: str, found: list[str]) -> bool:
    """``last`` fits what is typed, and no run is called that (it is listed already)."""
    return LAST_RUN.startswith(incomplete) and LAST_RUN not in found


def run_ids(workdir: Path, prefix: str = "") -> list[str]:
    """Names of the run folders (those holding a state.json) under ``workdir``, newest first."""
    runs = [
        entry
        for entry in workdir.iterdir()
        if entry.name.startswith(prefix)
        and not entry.name.startswith(".")
        and (entry / "state.json").is_file()
    ]
    runs.sort(key=lambda entry: (entry / "state.json").stat().st_mtime, reverse=True)
    return [entry.name for entry in runs]
