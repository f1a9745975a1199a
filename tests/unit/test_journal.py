"""The state journal: a snapshot in state.json plus durable change lines in
state-changes.jsonl, read back as one state by ``load_state``."""

from __future__ import annotations

import errno
import json
import os
from pathlib import Path

import pytest

from stepline.errors import RunStoreError, WriteFailed
from stepline.store import journal as journal_module
from stepline.store.journal import StateJournal
from stepline.store.state import (
    CHANGE_LOG,
    RunState,
    RunStatus,
    StepState,
    StepStatus,
    load_state,
)


def make_state(steps: int = 3) -> RunState:
    return RunState(
        run_id="r",
        pipeline="demo",
        config_path=None,
        config_hash="sha256:config",
        input_path="/data/in.txt",
        input_copy="input/original.txt",
        input_hash="sha256:input",
        steps=[StepState(number=n + 1, id=f"s{n}", kind="python") for n in range(steps)],
    )


def log_lines(folder: Path) -> list[dict]:
    return [json.loads(line) for line in (folder / CHANGE_LOG).read_text().splitlines()]


def test_a_change_line_holds_the_header_and_only_the_steps_that_changed(tmp_path: Path):
    path = tmp_path / "state.json"
    journal, state = StateJournal(path), make_state()
    journal.snapshot(state)

    state.steps[1].status = StepStatus.RUNNING
    state.current_step = "s1"
    journal.record(state)

    (line,) = log_lines(tmp_path)
    assert [step["id"] for step in line["steps"]] == ["s1"]
    assert line["run"]["current_step"] == "s1" and "steps" not in line["run"]
    assert json.loads(path.read_text())["steps"][1]["status"] == "pending"  # snapshot as it was
    loaded = load_state(path)
    assert [step.status for step in loaded.steps] == ["pending", "running", "pending"]
    assert loaded.current_step == "s1" and loaded.log_seq == 1


def test_a_line_cut_off_by_a_crash_is_left_out_and_an_earlier_bad_line_is_damage(
    tmp_path: Path,
):
    path = tmp_path / "state.json"
    journal, state = StateJournal(path), make_state()
    journal.snapshot(state)
    state.steps[0].status = StepStatus.COMPLETED
    journal.record(state)
    journal.close()
    log = tmp_path / CHANGE_LOG
    whole = log.read_text()

    log.write_text(whole + '{"seq": 2, "run": {"status": "fail')  # killed mid-append
    assert load_state(path).steps[0].status is StepStatus.COMPLETED

    log.write_text("not json\n" + whole)
    with pytest.raises(RunStoreError, match=f"{CHANGE_LOG} is damaged: line 1"):
        load_state(path)


def test_a_snapshot_every_so_many_lines_empties_the_log_and_older_lines_are_skipped(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
):
    monkeypatch.setattr(journal_module, "COMPACT_AFTER", 2)
    path = tmp_path / "state.json"
    journal, state = StateJournal(path), make_state()
    journal.snapshot(state)
    for step in state.steps:
        step.status = StepStatus.COMPLETED
        journal.record(state)

    assert len(log_lines(tmp_path)) == 0  # the third save was a snapshot
    assert json.loads(path.read_text())["log_seq"] == 2
    stale = {"seq": 2, "run": {"status": "failed"}, "steps": []}  # emptying it never happened
    (tmp_path / CHANGE_LOG).write_text(json.dumps(stale) + "\n")
    loaded = load_state(path)
    assert loaded.status is RunStatus.RUNNING
    assert [step.status for step in loaded.steps] == ["completed"] * 3


def test_a_finished_run_is_one_file_again(tmp_path: Path):
    path = tmp_path / "state.json"
    journal, state = StateJournal(path), make_state()
    journal.snapshot(state)
    state.steps[0].status = StepStatus.COMPLETED
    journal.record(state)
    state.status = RunStatus.COMPLETED

    journal.finish(state)

    assert not (tmp_path / CHANGE_LOG).exists()
    assert json.loads(path.read_text())["status"] == "completed"
    assert load_state(path).steps[0].status is StepStatus.COMPLETED


def test_a_refused_append_takes_its_line_back_and_keeps_the_state_before(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
):
    path = tmp_path / "state.json"
    journal, state = StateJournal(path), make_state()
    journal.snapshot(state)
    state.steps[0].status = StepStatus.COMPLETED
    journal.record(state)

    def full(fd: int) -> None:
        raise OSError(errno.ENOSPC, os.strerror(errno.ENOSPC))

    monkeypatch.setattr(os, "fdatasync", full)
    state.steps[1].status = StepStatus.FAILED
    with pytest.raises(WriteFailed, match="the disk is full; the lines before are kept"):
        journal.record(state)

    assert len(log_lines(tmp_path)) == 1
    assert [step.status for step in load_state(path).steps] == ["completed", "pending", "pending"]
    assert state.log_seq == 1  # the next line reuses the sequence number it could not write
