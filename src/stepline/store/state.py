"""What happened in a run: ``RunState`` and ``StepState``, persisted as ``state.json``.

The runner is the only writer (``store/journal.py``): ``state.json`` is a complete snapshot,
written atomically, and ``state-changes.jsonl`` beside it holds the transitions since, one
durable line each; ``load_state`` applies them, so readers see every saved transition.
``docs/state.md`` documents every field; ``schema_version`` guards against reading a run
written by a newer stepline.
"""

from __future__ import annotations

import json
from datetime import UTC, datetime
from enum import StrEnum
from pathlib import Path, PurePosixPath
from typing import Annotated, Any

from pydantic import AfterValidator, BaseModel, ConfigDict, Field, PrivateAttr, ValidationError

from stepline.errors import RunStoreError
from stepline.store.atomic import write_text_atomic

SCHEMA_VERSION = 2
"""2: transitions since the snapshot may be in state-changes.jsonl (``log_seq``)."""
CHANGE_LOG = "state-changes.jsonl"


def _inside_run_folder(relative: str) -> str:
    """A path the state names (an output, the input copy) must stay in the run folder: a
    tampered or hostile state.json must not make a resume read or overwrite other files."""
    path = PurePosixPath(relative)
    if path.is_absolute() or ".." in path.parts or "\\" in relative or "\0" in relative:
        raise ValueError(f"{relative!r} is not a path inside the run folder")
    return relative


RunPath = Annotated[str, AfterValidator(_inside_run_folder)]


def now() -> datetime:
    """The clock for every timestamp in a run (UTC, timezone-aware)."""
    return datetime.now(UTC)


class RunStatus(StrEnum):
    RUNNING = "running"
    PAUSED = "paused"
    COMPLETED = "completed"
    FAILED = "failed"
    INTERRUPTED = "interrupted"


INPUT_KEY = "@input"
"""The key under which a step's ``reads`` records the run's input (step ids cannot start with @)."""


class StepStatus(StrEnum):
    PENDING = "pending"
    RUNNING = "running"
    COMPLETED = "completed"
    FAILED = "failed"
    SKIPPED = "skipped"


class StepState(BaseModel):
    """One step's record. ``reads`` maps each output the step used to that output's hash."""

    model_config = ConfigDict(extra="ignore")

    number: int
    id: str
    label: str | None = None
    kind: str
    status: StepStatus = StepStatus.PENDING
    started_at: datetime | None = None
    finished_at: datetime | None = None
    duration_s: float | None = None
    attempts: int = 0
    output: RunPath | None = None
    output_hash: str | None = None
    fingerprint: str | None = None
    spec_hash: str | None = None
    spec_parts: dict[str, str] = Field(default_factory=dict)  # so a plan can say what changed
    reads: dict[str, str] = Field(default_factory=dict)
    error: str | None = None
    metrics: dict[str, Any] = Field(default_factory=dict)
    when: bool | None = None  # what the step's when: gave last time (None: none, or not asked)

    # Whether a field was set since the record was last saved: the change log holds only the
    # steps that changed. Fields are only ever replaced, never changed in place.
    _changed: bool = PrivateAttr(default=True)

    def __setattr__(self, name: str, value: Any) -> None:
        super().__setattr__(name, value)
        if name in StepState.model_fields:
            self._changed = True

    @property
    def changed(self) -> bool:
        return self._changed

    def mark_saved(self) -> None:
        self._changed = False


class RunUsage(BaseModel):
    """What a run's LLM requests used and cost, over all attempts, re-runs and resumes."""

    model_config = ConfigDict(extra="ignore")

    requests: int = 0
    input_tokens: int = 0
    output_tokens: int = 0
    cache_write_tokens: int = 0
    cache_read_tokens: int = 0
    cost_usd: float = 0.0
    priced_calls: int = 0
    unpriced_calls: int = 0
    cache_hits: int = 0
    replayed: int = 0

    @property
    def cost_known(self) -> float | None:
        """The cost, or None when calls were made and none of them could be priced."""
        return None if self.unpriced_calls and not self.priced_calls else self.cost_usd

    def add_call(self, call: dict[str, Any]) -> None:
        """Count one call record (failed attempts add a request, but no tokens)."""
        if call.get("cache_hit"):
            self.cache_hits += 1  # no request made, nothing spent
            return
        if call.get("replayed"):
            self.replayed += 1  # answered from a cassette: offline, nothing spent
            return
        self.requests += 1
        if call.get("outcome") != "ok":
            return
        for key in ("input_tokens", "output_tokens", "cache_write_tokens", "cache_read_tokens"):
            setattr(self, key, getattr(self, key) + int(call.get(key) or 0))
        if call.get("cost_usd") is None:
            self.unpriced_calls += 1
        else:
            self.priced_calls += 1
            self.cost_usd = round(self.cost_usd + float(call["cost_usd"]), 8)


class RunState(BaseModel):
    """A whole run's record, in config order."""

    model_config = ConfigDict(extra="ignore")

    schema_version: int = SCHEMA_VERSION
    run_id: str
    pipeline: str
    config_path: str | None
    config_hash: str
    input_path: str
    input_copy: RunPath
    input_hash: str
    status: RunStatus = RunStatus.RUNNING
    current_step: str | None = None
    paused_after: str | None = None
    pause_reason: str | None = None
    started_at: datetime = Field(default_factory=now)
    updated_at: datetime = Field(default_factory=now)
    finished_at: datetime | None = None
    error: str | None = None
    pid: int | None = None
    vars: dict[str, Any] = Field(default_factory=dict)
    overrides: dict[str, str] = Field(default_factory=dict)  # --model / --provider
    max_cost_usd: float | None = None  # --max-cost, kept for resumes (wins over budget:)
    replay: str | None = None  # --replay's cassette, kept for resumes (--no-replay: live)
    concurrency: int | None = None  # --concurrency, kept for resumes
    jobs: int | None = None  # --jobs, kept for resumes
    executor: str | None = None  # --executor, kept for resumes
    usage: RunUsage = Field(default_factory=RunUsage)
    log_seq: int = 0  # the last change-log line this state holds
    steps: list[StepState] = Field(default_factory=list)

    def step(self, step_id: str) -> StepState | None:
        return next((step for step in self.steps if step.id == step_id), None)

    @property
    def completed_count(self) -> int:
        return sum(step.status == StepStatus.COMPLETED for step in self.steps)

    @property
    def duration_s(self) -> float:
        end = self.finished_at or self.updated_at
        return max(0.0, (end - self.started_at).total_seconds())


def change_log_path(state_path: Path) -> Path:
    return state_path.with_name(CHANGE_LOG)


def save_state(path: Path, state: RunState) -> None:
    """Stamp ``updated_at`` and write the whole state atomically, with no change log left
    (a run's own writes go through ``store.journal.StateJournal``)."""
    state.updated_at = now()
    write_text_atomic(path, state.model_dump_json(indent=2) + "\n")
    change_log_path(path).unlink(missing_ok=True)


def load_state(path: Path) -> RunState:
    """Read a state file and the changes logged since, with a clear error for a missing,
    damaged or too-new file."""
    data = _read_json_object(path)
    _apply_changes(data, change_log_path(path))
    version = data.get("schema_version")
    if not isinstance(version, int) or isinstance(version, bool):
        raise _damaged(path, f"schema_version is {version!r}, not a whole number")
    if version > SCHEMA_VERSION:
        raise RunStoreError(
            f"{path} was written by a newer stepline (schema_version {version}; "
            f"this one reads up to {SCHEMA_VERSION})",
            hint="upgrade stepline to resume this run",
        )
    try:
        return RunState.model_validate(data)
    except ValidationError as exc:
        first = exc.errors()[0]
        where = ".".join(str(part) for part in first["loc"])
        raise _damaged(path, f"{where}: {first['msg']}") from None


def _apply_changes(data: dict[str, Any], log: Path) -> None:
    """Fold the change-log lines newer than the snapshot into its data: each line's header
    replaces the run's, its steps replace theirs by id. A last line cut off by a crash was
    never acknowledged and is left out; any other unreadable line means a damaged file."""
    try:
        lines = log.read_bytes().split(b"\n")
    except FileNotFoundError:
        return
    except OSError as exc:
        raise RunStoreError(
            f"cannot read {log}: {exc.strerror or exc}",
            hint="check the file's permissions and the disk, then try again",
        ) from None
    seen = data.get("log_seq", 0)
    steps = data.get("steps")
    by_id = {step.get("id"): i for i, step in enumerate(steps)} if isinstance(steps, list) else {}
    for number, line in enumerate(lines, start=1):
        if not line.strip():
            continue
        try:
            change = json.loads(line)
            seq, run, changed = change["seq"], change["run"], change["steps"]
        except (ValueError, TypeError, KeyError):
            if number >= len(lines) - 1:  # the last line, cut off mid-write
                return
            raise _damaged(log, f"line {number} is not a state change") from None
        if not isinstance(seq, int) or seq <= seen:
            continue  # already in the snapshot (written before the log was emptied)
        if not isinstance(run, dict) or not isinstance(changed, list) or steps is None:
            raise _damaged(log, f"line {number} is not a state change")
        data.update(run)
        for step in changed:
            if isinstance(step, dict) and step.get("id") in by_id:
                steps[by_id[step["id"]]] = step
            else:
                by_id[step.get("id") if isinstance(step, dict) else None] = len(steps)
                steps.append(step)
        data["steps"] = steps
        seen = seq


def _read_json_object(path: Path) -> dict[str, Any]:
    """The file's JSON object; each way a crash, a disk fault or an editor can spoil it gets
    its own words, since the fix differs (wait for disk, restore, upgrade)."""
    try:
        raw = path.read_bytes()
    except FileNotFoundError:
        raise RunStoreError(
            f"{path} is missing", hint="the run folder is incomplete; start a new run"
        ) from None
    except OSError as exc:
        raise RunStoreError(
            f"cannot read {path}: {exc.strerror or exc}",
            hint="check the file's permissions and the disk, then try again",
        ) from None
    if not raw.strip():
        raise _damaged(path, "it is empty")
    try:
        text = raw.decode("utf-8")
        data = json.loads(text)
    except UnicodeDecodeError as exc:
        raise _damaged(path, f"not UTF-8 text (byte {exc.start})") from None
    except json.JSONDecodeError as exc:
        # JSON cut short fails where the text ends, or inside an unterminated string
        end = text.rstrip()
        cut_short = exc.pos >= len(end) or not end.endswith("}")
        cut = "; it ends mid-way, as if cut off" if cut_short else ""
        raise _damaged(path, f"not valid JSON ({exc.msg}, line {exc.lineno}){cut}") from None
    if not isinstance(data, dict):
        raise _damaged(path, f"it holds {type(data).__name__}, not a JSON object")
    return data


def _damaged(path: Path, problem: str) -> RunStoreError:
    return RunStoreError(
        f"{path} is damaged: {problem}",
        hint="restore it from a backup or start a new run; step outputs are in steps/",
    )
