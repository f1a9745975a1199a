"""The layout of one run folder; no other module builds a path inside a run.

```
<workdir>/<run-id>/
  state.json            RunState, rewritten atomically after every transition
  config.yaml           the config as last used
  input/original.<ext>  a copy of the input
  steps/NN-<id>.json    each step's output value, human-editable
  history/              outputs and configs replaced by a re-run, never deleted
  events.jsonl          one JSON object per line
  .lock                 held (flock) by the process running the run
```
"""

from __future__ import annotations

import contextlib
import hashlib
import json
import os
import re
import secrets
import shutil
from collections.abc import Iterator
from datetime import UTC, datetime
from pathlib import Path
from typing import Any, TextIO

from stepline.errors import InputError, RunStoreError
from stepline.hashing import HASH_TAG, canonical_json, hash_value
from stepline.store.atomic import (
    append_failed,
    fsync_dir,
    remove_stale_temp_files,
    write_chunks_atomic,
    write_json_atomic,
    write_text_atomic,
)
from stepline.store.jsonl import JsonLines, RowStream, hash_output, jsonl_chunks
from stepline.store.lock import is_locked
from stepline.store.state import RunUsage, now

RUN_ID_PATTERN = re.compile(r"[A-Za-z0-9_][A-Za-z0-9._-]{0,99}")
"""A run id is one plain folder name: no separator, NUL or space, at most 100 characters, and
not starting with ``.`` (hidden from ``list``, and the work folder's own ``.removing-*`` and
``.detached-*`` names start so) or ``-`` (read as an option by the command line)."""


def new_run_id() -> str:
    """``run-YYYYMMDD-HHMMSS-<6 hex>``: sortable by time, unique without coordination."""
    return f"run-{now():%Y%m%d-%H%M%S}-{secrets.token_hex(3)}"


def check_run_id(run_id: str) -> str:
    """Refuse ids that could name a path outside the work folder, or a hidden one in it."""
    if not RUN_ID_PATTERN.fullmatch(run_id):
        raise InputError(
            f"invalid run id {run_id!r}",
            hint="use 1-100 characters from A-Z a-z 0-9 . _ -, "
            "starting with a letter, a digit or _",
        )
    return run_id


class RunDir:
    """Paths and file operations of one run folder."""

    def __init__(self, path: Path) -> None:
        self.path = path
        self._logs: dict[Path, TextIO] = {}  # events.jsonl, llm-calls.jsonl: kept open

    @property
    def run_id(self) -> str:
        return self.path.name

    @property
    def state_path(self) -> Path:
        return self.path / "state.json"

    @property
    def config_path(self) -> Path:
        return self.path / "config.yaml"

    @property
    def events_path(self) -> Path:
        return self.path / "events.jsonl"

    @property
    def calls_path(self) -> Path:
        return self.path / "llm-calls.jsonl"

    @property
    def items_path(self) -> Path:
        """Per-item checkpoints of fan-out steps (SQLite)."""
        return self.path / "items.sqlite"

    @property
    def lock_path(self) -> Path:
        return self.path / ".lock"

    @property
    def history_dir(self) -> Path:
        return self.path / "history"

    @property
    def processes_dir(self) -> Path:
        """The shell steps' process groups while they run (``stepline.processes``)."""
        return self.path / "processes"

    def exists(self) -> bool:
        return self.state_path.is_file()

    def create(self) -> None:
        """Make the run's folders. A folder with no state.json is what a process killed while
        starting this run left behind (nothing committed yet); it is cleared first."""
        if self.path.is_dir() and not self.exists() and not is_locked(self.lock_path):
            shutil.rmtree(self.path)
        try:
            self.path.mkdir(parents=True, exist_ok=False)
        except FileExistsError:
            raise InputError(
                f'run "{self.run_id}" already exists in {self.path.parent}',
                hint=f"resume it with: pipeline resume {self.run_id}",
            ) from None
        for folder in ("input", "steps"):
            (self.path / folder).mkdir()
        fsync_dir(self.path.parent)

    def clean_leftovers(self) -> None:
        """Drop temp files a crash left behind (they never hold committed data)."""
        for folder in (self.path, self.path / "steps", self.path / "input"):
            remove_stale_temp_files(folder)

    def output_name(self, number: int, step_id: str, suffix: str = ".json") -> str:
        """Relative path of a step's output: ``steps/03-score.json`` (or ``.jsonl``)."""
        return f"steps/{number:02d}-{step_id}{suffix}"

    def resolve(self, relative: str) -> Path:
        return self.path / relative

    def copy_input(self, source: Path) -> str:
        """Copy the input file into the run; return its relative path."""
        relative = f"input/original{source.suffix}"
        with source.open("rb") as handle:  # a chunk at a time: inputs may be large
            write_chunks_atomic(self.resolve(relative), iter(lambda: handle.read(1 << 20), b""))
        return relative

    def write_config(self, text: str) -> None:
        """Snapshot the config as used; an earlier, different snapshot goes to history."""
        if self.config_path.exists():
            if self.config_path.read_text(encoding="utf-8") == text:
                return
            self._archive(self.config_path)
        write_text_atomic(self.config_path, text)

    def write_output(self, relative: str, value: Any) -> str:
        """Store a step's output value (replacing one moves it to history); return its hash.

        A ``RowStream`` is written as JSON Lines, row by row, and never held whole.
        """
        path = self.resolve(relative)
        other = path.with_suffix(".json" if path.suffix == ".jsonl" else ".jsonl")
        for existing in (path, other):  # a switch of format leaves no stale output beside it
            if existing.exists():
                self._archive(existing)
                if existing is other:
                    existing.unlink()
        if isinstance(value, RowStream):
            digest = hashlib.sha256()
            write_chunks_atomic(path, jsonl_chunks(value.rows(), digest))
            return HASH_TAG + digest.hexdigest()
        write_json_atomic(path, value)
        return hash_value(value)

    def write_text(self, relative: str, text: str) -> None:
        """Store a side file such as a reply that failed to parse, for a person to inspect."""
        write_text_atomic(self.resolve(relative), text)

    def read_output(self, relative: str) -> Any:
        """Read a step's output value, as a person may have edited it (a ``.jsonl`` output
        comes back as a ``JsonLines`` that streams the file)."""
        path = self.resolve(relative)
        if path.suffix == ".jsonl":
            if not path.exists():
                raise RunStoreError(f"output file {path} is missing")
            return JsonLines(path)
        try:
            return json.loads(path.read_text(encoding="utf-8"))
        except FileNotFoundError:
            raise RunStoreError(f"output file {path} is missing") from None
        except json.JSONDecodeError as exc:
            raise RunStoreError(
                f"{path} is not valid JSON ({exc.msg}, line {exc.lineno} column {exc.colno})",
                hint="fix the file (outputs are JSON values; text is a quoted string), "
                "or re-run that step with --from-step",
            ) from None

    def output_hash(self, relative: str) -> str | None:
        """Hash of the output as it is on disk now; None when the file is missing."""
        if not self.resolve(relative).exists():
            return None
        return hash_output(self.read_output(relative))

    def append_event(self, event: dict[str, Any]) -> None:
        """Append one event line; a torn last line after a crash is skipped by readers."""
        self._append(self.events_path, event)

    def read_events(self) -> list[dict[str, Any]]:
        return list(_iter_lines(self.events_path))

    def append_call(self, record: dict[str, Any]) -> None:
        """Append one LLM call record (an attempt) to ``llm-calls.jsonl``.

        The file stays open between records (a fan-out appends thousands); each line is
        flushed to the OS as it is written, so a killed process loses none.
        """
        self._append(self.calls_path, record)

    def close(self) -> None:
        """Close the logs this object opened."""
        for handle in self._logs.values():
            handle.close()
        self._logs.clear()

    def _append(self, path: Path, record: dict[str, Any]) -> None:
        """One line, flushed to the OS (line buffering); a refused write says so plainly."""
        try:
            handle = self._logs.get(path)
            if handle is None:
                handle = self._logs[path] = path.open("a", encoding="utf-8", buffering=1)
            handle.write(canonical_json(record) + "\n")
        except OSError as exc:
            raise append_failed(path, exc) from exc

    def read_calls(self) -> list[dict[str, Any]]:
        return list(self.iter_calls())

    def iter_calls(self) -> Iterator[dict[str, Any]]:
        """The call records one line at a time (a fan-out's log can be large)."""
        return _iter_lines(self.calls_path)

    def calls_usage(self) -> RunUsage:
        """The run's LLM usage summed from ``llm-calls.jsonl`` with the rule of ``state.usage``.

        The file is the record of truth: every call is appended as it ends, while the usage in
        state.json is saved with the next state write, so after a kill -9 it lags the calls.
        """
        usage = RunUsage()
        for record in self.iter_calls():
            usage.add_call(record)
        return usage

    def calls_cost_usd(self) -> float:
        """What the run's LLM calls cost so far (see ``calls_usage``)."""
        return self.calls_usage().cost_usd

    def last_activity(self) -> datetime | None:
        """When the run last wrote anything (its state, events, calls or item checkpoints):
        the end of a run whose process died without saving how it ended."""
        moments = []
        for path in (self.state_path, self.events_path, self.calls_path, self.items_path):
            for candidate in (path, path.with_name(path.name + "-wal")):
                with contextlib.suppress(OSError):
                    moments.append(candidate.stat().st_mtime)
        return datetime.fromtimestamp(max(moments), UTC) if moments else None

    def _archive(self, path: Path) -> None:
        stamp = f"{now():%Y%m%dT%H%M%S%fZ}"
        self.history_dir.mkdir(exist_ok=True)
        target = self.history_dir / f"{path.stem}.{stamp}{path.suffix}"
        counter = 1
        while target.exists():  # two archives in one microsecond: never overwrite history
            target = self.history_dir / f"{path.stem}.{stamp}-{counter}{path.suffix}"
            counter += 1
        try:
            os.link(path, target)  # the old inode moves to history; the caller then replaces path
        except OSError:
            shutil.copy2(path, target)
        fsync_dir(self.history_dir)


def _iter_lines(path: Path) -> Iterator[dict[str, Any]]:
    """Every complete JSON object line; a torn last line (a crash mid-append) is skipped."""
    try:
        handle = path.open(encoding="utf-8")
    except FileNotFoundError:
        return
    with handle:
        for line in handle:
            try:
                record = json.loads(line)
            except json.JSONDecodeError:
                continue
            if isinstance(record, dict):
                yield record


NEWEST_FIRST_CHUNK = 64 * 1024  # how much of a log is read at a time, from its end


def records_newest_first(path: Path) -> Iterator[dict[str, Any]]:
    """The JSON object lines of a log (``events.jsonl``), last first, read from the end a
    chunk at a time: a reader that wants the newest records stops long before the start of
    a large file. Torn and foreign lines are skipped."""
    try:
        handle = path.open("rb")
    except FileNotFoundError:
        return
    with handle:
        end = handle.seek(0, 2)
        tail = b""
        while end > 0:
            start = max(0, end - NEWEST_FIRST_CHUNK)
            handle.seek(start)
            lines = (handle.read(end - start) + tail).split(b"\n")
            tail = lines.pop(0) if start > 0 else b""  # may be cut: joined to the next chunk
            for line in reversed(lines):
                record = _record(line)
                if record is not None:
                    yield record
            end = start


def _record(line: bytes) -> dict[str, Any] | None:
    try:
        record = json.loads(line)
    except ValueError:  # blank, torn, or not UTF-8
        return None
    return record if isinstance(record, dict) else None
