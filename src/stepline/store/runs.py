"""The work folder as a collection of runs: create, open, list.

``list`` and ``show`` never write. A run whose state says ``running`` but whose lock nobody
holds lost its process (kill -9, power loss) and is reported as ``interrupted``. A running
run's summary also says which step it is on and, for a fan-out step, how many items are done
(from the last progress line in ``events.jsonl``, read from the end of the file).

Every command that takes a run id (and ``stepline.resume``) finds the run through ``open``, so
each accepts the same shorthands: ``last`` for the newest run, and a unique prefix of an id.
"""

from __future__ import annotations

import difflib
import secrets
import shutil
from collections.abc import Callable
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import Any, TypeVar

from stepline.errors import InputError, RunStoreError
from stepline.store.cache import CACHE_FILE, ResponseCache
from stepline.store.lock import RunLock, is_locked
from stepline.store.rundir import RunDir, check_run_id, new_run_id, records_newest_first
from stepline.store.state import RunState, RunStatus, StepStatus, load_state, now

_T = TypeVar("_T")
_NEVER = datetime.min.replace(tzinfo=UTC)
REMOVING = ".removing-"  # a run folder being deleted: renamed out of the run ids first
LAST_RUN = "last"  # names the newest run by start time: the first row of ``pipeline list``
_LISTED_MATCHES = 10  # an ambiguous prefix names at most this many of the runs it matches


@dataclass(frozen=True)
class RunSummary:
    """One row of ``pipeline list``; ``problem`` is set when the state cannot be read."""

    run_id: str
    path: Path
    pipeline: str = "?"
    status: str = "unreadable"
    started_at: datetime | None = None
    duration_s: float | None = None
    steps_done: int = 0
    steps_total: int = 0
    requests: int = 0
    cost_usd: float | None = None
    unpriced_calls: int = 0
    updated_at: datetime | None = None
    problem: str | None = None
    current_step: str | None = None  # the rest are set only while the run is running
    pid: int | None = None
    items_done: int | None = None
    items_total: int | None = None


def effective_status(state: RunState, run_dir: RunDir) -> RunStatus:
    """The status to show: ``running`` only while a process actually holds the run."""
    if state.status == RunStatus.RUNNING and not is_locked(run_dir.lock_path):
        return RunStatus.INTERRUPTED
    return state.status


class RunStore:
    """All runs under one work folder (``.pipeline`` by default)."""

    def __init__(self, workdir: Path) -> None:
        self.workdir = workdir

    def cache(self) -> ResponseCache:
        """The LLM response cache every run in this work folder shares."""
        return ResponseCache(self.workdir / CACHE_FILE)

    def planned_run(self, run_id: str | None = None) -> RunDir:
        """The folder a new run will use, checked but not created yet."""
        run_dir = RunDir(self.workdir / check_run_id(run_id or new_run_id()))
        if run_dir.exists():
            raise InputError(
                f'run "{run_dir.run_id}" already exists in {self.workdir}',
                hint=f"resume it with: pipeline resume {run_dir.run_id}",
            )
        if run_dir.path.exists() and is_locked(run_dir.lock_path):
            raise InputError(
                f'run "{run_dir.run_id}" is being created by another process',
                hint="wait for it, or choose another --run-id",
            )
        return run_dir  # a folder without state.json is a start that died; create() clears it

    def open(self, run_id: str) -> RunDir:
        """An existing run, named by its id, ``last`` or a unique prefix of its id."""
        return RunDir(self.workdir / self.resolve(run_id))

    def resolve(self, run_id: str) -> str:
        """The id of the run ``run_id`` names. A run whose id is exactly ``run_id`` wins over
        the shorthands, so a run really called ``last`` (or ``nightly`` beside
        ``nightly-2``) stays reachable; an ambiguous prefix or an unknown id is an
        InputError (exit 2) that lists the candidates."""
        if RunDir(self.workdir / check_run_id(run_id)).exists():
            return run_id
        known = self.run_ids()
        if run_id == LAST_RUN and known:
            return self._newest(known)
        matches = [name for name in known if name.startswith(run_id)]
        if len(matches) == 1:
            return matches[0]
        if matches:
            raise _ambiguous(run_id, matches, self.workdir)
        raise _unknown(run_id, known, self.workdir)

    def _newest(self, run_ids: list[str]) -> str:
        """The run ``pipeline list`` shows first: the latest start; unreadable ones last."""
        return _newest_first(run_ids, key=lambda run_id: self._started_at(run_id))[0]

    def _started_at(self, run_id: str) -> datetime:
        try:
            return load_state(RunDir(self.workdir / run_id).state_path).started_at
        except RunStoreError:
            return _NEVER

    def run_ids(self) -> list[str]:
        if not self.workdir.is_dir():
            return []
        return sorted(
            entry.name
            for entry in self.workdir.iterdir()
            if entry.is_dir() and not entry.name.startswith(".") and (entry / "state.json").exists()
        )

    def remove(self, run_id: str) -> None:
        """Delete a run's folder; a run that a process holds is never touched.

        Only an exact id is taken (no ``last``, no prefix): a run that vanished since it was
        listed must not make a removal fall through to another run. The folder is first
        renamed out of the run ids' namespace, so a crash halfway leaves a hidden leftover,
        never a half-deleted run that ``list`` would show.
        """
        run_dir = RunDir(self.workdir / check_run_id(run_id))
        if not run_dir.exists():
            raise InputError(f'no run "{run_id}" in {self.workdir}', hint="it is gone already")
        with RunLock(run_dir.lock_path, run_dir.run_id):  # fails at once if it is running
            doomed = self.workdir / f"{REMOVING}{run_dir.run_id}-{secrets.token_hex(4)}"
            run_dir.path.rename(doomed)
        shutil.rmtree(doomed)

    def sweep_removals(self) -> int:
        """Finish removals a crash interrupted (hidden ``.removing-*`` folders)."""
        leftovers = list(self.workdir.glob(f"{REMOVING}*")) if self.workdir.is_dir() else []
        for folder in leftovers:
            shutil.rmtree(folder, ignore_errors=True)
        return len(leftovers)

    def summaries(self) -> list[RunSummary]:
        """Every run, newest first; damaged runs are listed with their problem."""
        rows = [self._summary(RunDir(self.workdir / run_id)) for run_id in self.run_ids()]
        return _newest_first(rows, key=lambda row: row.started_at or _NEVER)

    def _summary(self, run_dir: RunDir) -> RunSummary:
        try:
            state = load_state(run_dir.state_path)
        except RunStoreError as exc:
            return RunSummary(run_id=run_dir.run_id, path=run_dir.path, problem=exc.message)
        status = effective_status(state, run_dir)
        progress = _progress(state, run_dir) if status == RunStatus.RUNNING else {}
        usage = state.usage if state.finished_at is not None else run_dir.calls_usage()
        return RunSummary(
            run_id=run_dir.run_id,
            path=run_dir.path,
            pipeline=state.pipeline,
            status=status.value,
            started_at=state.started_at,
            steps_done=state.completed_count,
            steps_total=len(state.steps),
            requests=usage.requests,
            cost_usd=usage.cost_known,
            unpriced_calls=usage.unpriced_calls,
            updated_at=state.updated_at,
            **({"duration_s": run_duration(state, run_dir)} | progress),
        )


def _newest_first(items: list[_T], *, key: Callable[[_T], datetime]) -> list[_T]:
    """Latest start first; ties keep their order (by id). ``list`` and ``last`` share it, so
    ``last`` is always the run ``pipeline list`` shows on top."""
    return sorted(items, key=key, reverse=True)


def _ambiguous(prefix: str, matches: list[str], workdir: Path) -> InputError:
    shown = ", ".join(matches[:_LISTED_MATCHES])
    more = f" and {len(matches) - _LISTED_MATCHES} more" if len(matches) > _LISTED_MATCHES else ""
    return InputError(
        f'"{prefix}" matches {len(matches)} runs in {workdir}: {shown}{more}',
        hint="type more of the run id, or name the newest run with: last",
    )


def _unknown(run_id: str, known: list[str], workdir: Path) -> InputError:
    if run_id == LAST_RUN:
        return InputError(f"no runs in {workdir} yet", hint="start one with: pipeline run INPUT")
    close = difflib.get_close_matches(run_id, known, n=3, cutoff=0.5)
    hint = "did you mean: " + ", ".join(close) if close else "list runs with: pipeline list"
    return InputError(f'no run "{run_id}" in {workdir}', hint=hint)


def run_duration(state: RunState, run_dir: RunDir) -> float:
    """How long the run ran: to its end, or, for one whose process died before saving its
    end (kill -9), to the last thing it wrote."""
    if state.finished_at is not None:
        return state.duration_s
    last = max(filter(None, (state.updated_at, run_dir.last_activity())))
    return max(0.0, (last - state.started_at).total_seconds())


def _progress(state: RunState, run_dir: RunDir) -> dict[str, Any]:
    """Where a running run is: its step, its process and, in a fan-out, its items."""
    step = state.current_step or next(
        (record.id for record in state.steps if record.status == StepStatus.RUNNING), None
    )
    elapsed = (now() - state.started_at).total_seconds()  # state.json's stops at its last write
    progress: dict[str, Any] = {"current_step": step, "pid": state.pid, "duration_s": elapsed}
    items = _item_progress(run_dir, step) if step else None
    if items is not None:
        progress["items_done"], progress["items_total"] = items
    return progress


def _item_progress(run_dir: RunDir, step: str) -> tuple[int, int] | None:
    """(done, total) from the newest event of ``step`` if it is an ``item_progress``; None
    when the step has shown none since it started."""
    for event in records_newest_first(run_dir.events_path):
        if event.get("step") != step:
            continue
        data = event.get("data") or {}
        if event.get("type") != "item_progress" or "total" not in data:  # EventType.ITEM_PROGRESS
            return None
        return int(data.get("done", 0)) + int(data.get("failed", 0)), int(data["total"])
    return None
