"""The run store: atomic writes, state.json, run ids, run folders, locks and listing runs."""

from __future__ import annotations

import json
import os
from pathlib import Path

import pytest

from stepline.errors import InputError, RunStoreError, WriteFailed
from stepline.hashing import hash_value
from stepline.store.atomic import (
    TEMP_PREFIX,
    remove_stale_temp_files,
    write_bytes_atomic,
    write_json_atomic,
    write_text_atomic,
)
from stepline.store.lock import RunLock, is_locked
from stepline.store.rundir import RunDir, check_run_id
from stepline.store.runs import RunStore
from stepline.store.state import (
    SCHEMA_VERSION,
    RunState,
    RunStatus,
    StepState,
    StepStatus,
    load_state,
    save_state,
)


def make_state(run_id: str = "run-1", status: RunStatus = RunStatus.RUNNING) -> RunState:
    return RunState(
        run_id=run_id,
        pipeline="demo",
        config_path=None,
        config_hash="sha256:config",
        input_path="/data/in.txt",
        input_copy="input/original.txt",
        input_hash="sha256:input",
        status=status,
        steps=[
            StepState(number=1, id="a", kind="llm", status=StepStatus.COMPLETED),
            StepState(number=2, id="b", kind="shell"),
        ],
    )


def leftovers(folder: Path) -> list[str]:
    return [path.name for path in folder.iterdir() if path.name.startswith(TEMP_PREFIX)]


# --------------------------------------------------------------------------------------------
# Atomic writes


def test_atomic_write_replaces_content_and_leaves_no_temp_file(tmp_path: Path) -> None:
    target = tmp_path / "out" / "file.txt"

    write_text_atomic(target, "first")
    write_text_atomic(target, "second")

    assert target.read_text(encoding="utf-8") == "second"
    assert sorted(path.name for path in target.parent.iterdir()) == ["file.txt"]


def test_atomic_json_is_indented_unicode_with_a_trailing_newline(tmp_path: Path) -> None:
    target = tmp_path / "value.json"

    write_json_atomic(target, {"word": "café"})

    assert target.read_text(encoding="utf-8") == '{\n  "word": "café"\n}\n'


def test_failed_atomic_write_removes_its_temp_file(tmp_path: Path) -> None:
    target = tmp_path / "taken"
    target.mkdir()  # os.replace cannot put a file over a folder

    with pytest.raises(WriteFailed):
        write_bytes_atomic(target, b"data")

    assert leftovers(tmp_path) == []


def test_remove_stale_temp_files_keeps_real_files(tmp_path: Path) -> None:
    (tmp_path / f"{TEMP_PREFIX}state.json.abc").write_text("torn")
    (tmp_path / f"{TEMP_PREFIX}other").write_text("torn")
    (tmp_path / "state.json").write_text("{}")

    remove_stale_temp_files(tmp_path)

    assert sorted(path.name for path in tmp_path.iterdir()) == ["state.json"]


def test_remove_stale_temp_files_ignores_a_missing_folder(tmp_path: Path) -> None:
    remove_stale_temp_files(tmp_path / "absent")


# --------------------------------------------------------------------------------------------
# state.json


def test_state_round_trips(tmp_path: Path) -> None:
    path = tmp_path / "state.json"
    state = make_state()

    save_state(path, state)
    loaded = load_state(path)

    assert loaded == state
    assert loaded.schema_version == SCHEMA_VERSION
    assert loaded.step("a") is not None
    assert loaded.completed_count == 1
    assert leftovers(tmp_path) == []


@pytest.mark.parametrize(
    ("content", "problem"),
    [
        ("", "it is empty"),
        ('{"schema_version": 1, "run_id": "ru', "not valid JSON"),
        ("this is not json", "not valid JSON"),
        (json.dumps({"schema_version": SCHEMA_VERSION + 1}), "written by a newer stepline"),
        (json.dumps({"schema_version": 1, "run_id": "x"}), "is damaged"),
    ],
    ids=["empty", "truncated", "not-json", "future-schema", "schema-invalid"],
)
def test_unusable_state_file_is_a_run_store_error_naming_it(
    tmp_path: Path, content: str, problem: str
) -> None:
    path = tmp_path / "state.json"
    path.write_text(content, encoding="utf-8")

    with pytest.raises(RunStoreError) as caught:
        load_state(path)

    assert str(path) in caught.value.message
    assert problem in caught.value.message


def test_missing_state_file_is_a_run_store_error(tmp_path: Path) -> None:
    with pytest.raises(RunStoreError, match="is missing"):
        load_state(tmp_path / "state.json")


# --------------------------------------------------------------------------------------------
# Run ids


@pytest.mark.parametrize("run_id", ["run-20260101-000000-abcdef", "my.run_1", "a" * 100])
def test_check_run_id_accepts_safe_names(run_id: str) -> None:
    assert check_run_id(run_id) == run_id


@pytest.mark.parametrize(
    "run_id",
    ["..", ".", "a/b", "/abs", "a\x00b", "a" * 101, "", "a b"],
    ids=["dotdot", "dot", "slash", "absolute", "nul", "too-long", "empty", "space"],
)
def test_check_run_id_rejects_unsafe_names(run_id: str) -> None:
    with pytest.raises(InputError, match="invalid run id"):
        check_run_id(run_id)


def test_check_run_id_rejects_a_trailing_newline() -> None:
    with pytest.raises(InputError):
        check_run_id("run\n")


# --------------------------------------------------------------------------------------------
# Run folders


def test_creating_a_run_twice_points_at_resume(tmp_path: Path) -> None:
    run_dir = RunDir(tmp_path / ".pipeline" / "run-1")
    run_dir.create()
    run_dir.state_path.write_text("{}")  # the run got as far as its first state write

    with pytest.raises(InputError, match='run "run-1" already exists') as caught:
        run_dir.create()

    assert caught.value.hint == "resume it with: pipeline resume run-1"


def test_a_start_that_died_before_its_first_state_write_is_cleared(tmp_path: Path) -> None:
    run_dir = RunDir(tmp_path / ".pipeline" / "run-1")
    run_dir.create()
    (run_dir.path / "input" / "original.txt").write_text("copied before the kill")

    run_dir.create()

    assert list((run_dir.path / "input").iterdir()) == []


def test_a_start_in_progress_elsewhere_is_left_alone(tmp_path: Path) -> None:
    run_dir = RunDir(tmp_path / ".pipeline" / "run-1")
    run_dir.create()
    with RunLock(run_dir.lock_path, "run-1"), pytest.raises(InputError, match="already exists"):
        run_dir.create()


def test_created_run_has_input_and_steps_folders(tmp_path: Path) -> None:
    run_dir = RunDir(tmp_path / "run-1")
    run_dir.create()

    assert (run_dir.path / "input").is_dir()
    assert (run_dir.path / "steps").is_dir()


def test_write_output_returns_the_canonical_hash(tmp_path: Path) -> None:
    run_dir = RunDir(tmp_path / "run-1")
    run_dir.create()
    value = {"b": [1, 2], "a": "x"}

    assert run_dir.write_output("steps/01-a.json", value) == hash_value(value)
    assert run_dir.read_output("steps/01-a.json") == value


def test_rewriting_an_output_keeps_the_old_value_in_history(tmp_path: Path) -> None:
    run_dir = RunDir(tmp_path / "run-1")
    run_dir.create()
    run_dir.write_output("steps/01-a.json", "old value")

    new_hash = run_dir.write_output("steps/01-a.json", "new value")

    archived = list(run_dir.history_dir.iterdir())
    assert len(archived) == 1
    assert archived[0].name.startswith("01-a.")
    assert json.loads(archived[0].read_text(encoding="utf-8")) == "old value"
    assert run_dir.read_output("steps/01-a.json") == "new value"
    assert new_hash == hash_value("new value")


def test_reindenting_an_output_by_hand_keeps_its_hash(tmp_path: Path) -> None:
    run_dir = RunDir(tmp_path / "run-1")
    run_dir.create()
    written = run_dir.write_output("steps/01-a.json", {"a": 1, "b": 2})

    run_dir.resolve("steps/01-a.json").write_text('{"b":2,   "a":1}', encoding="utf-8")

    assert run_dir.output_hash("steps/01-a.json") == written


def test_hand_edited_invalid_output_is_a_run_store_error_naming_the_file(tmp_path: Path) -> None:
    run_dir = RunDir(tmp_path / "run-1")
    run_dir.create()
    path = run_dir.resolve("steps/01-a.json")
    path.write_text("not json, just text", encoding="utf-8")

    with pytest.raises(RunStoreError) as caught:
        run_dir.read_output("steps/01-a.json")

    assert str(path) in caught.value.message
    assert "is not valid JSON" in caught.value.message


def test_missing_output_is_a_run_store_error_and_has_no_hash(tmp_path: Path) -> None:
    run_dir = RunDir(tmp_path / "run-1")
    run_dir.create()

    assert run_dir.output_hash("steps/01-a.json") is None
    with pytest.raises(RunStoreError, match="is missing"):
        run_dir.read_output("steps/01-a.json")


# --------------------------------------------------------------------------------------------
# Locks


def test_second_lock_on_a_run_names_the_holder(tmp_path: Path) -> None:
    lock_path = tmp_path / ".lock"
    holder = RunLock(lock_path, "run-1")
    holder.acquire()
    try:
        with pytest.raises(RunStoreError, match="in use by") as caught:
            RunLock(lock_path, "run-1").acquire()
    finally:
        holder.release()

    assert f"process {os.getpid()}" in caught.value.message
    assert 'run "run-1"' in caught.value.message


def test_released_lock_can_be_acquired_again(tmp_path: Path) -> None:
    lock_path = tmp_path / ".lock"
    with RunLock(lock_path, "run-1"):
        pass

    with RunLock(lock_path, "run-1"):
        assert is_locked(lock_path)


def test_is_locked_follows_the_holder(tmp_path: Path) -> None:
    lock_path = tmp_path / ".lock"
    assert not is_locked(lock_path)

    with RunLock(lock_path, "run-1"):
        assert is_locked(lock_path)

    assert not is_locked(lock_path)
    assert lock_path.exists()  # never deleted: a new holder must lock the same inode


# --------------------------------------------------------------------------------------------
# The work folder


def saved_run(store: RunStore, run_id: str, status: RunStatus = RunStatus.RUNNING) -> RunDir:
    run_dir = store.planned_run(run_id)
    run_dir.create()
    save_state(run_dir.state_path, make_state(run_id, status))
    return run_dir


def test_open_unknown_run_suggests_close_ids(tmp_path: Path) -> None:
    store = RunStore(tmp_path / ".pipeline")
    saved_run(store, "run-20260101-000000-abcdef")

    with pytest.raises(InputError, match='no run "run-20260101-000000-abcdeg"') as caught:
        store.open("run-20260101-000000-abcdeg")

    assert caught.value.hint == "did you mean: run-20260101-000000-abcdef"


def test_open_known_run(tmp_path: Path) -> None:
    store = RunStore(tmp_path / ".pipeline")
    saved_run(store, "run-1")

    assert store.open("run-1").path == tmp_path / ".pipeline" / "run-1"


def test_open_refuses_an_unsafe_id(tmp_path: Path) -> None:
    with pytest.raises(InputError, match="invalid run id"):
        RunStore(tmp_path / ".pipeline").open("../elsewhere")


def test_summaries_report_a_running_run_without_its_lock_as_interrupted(tmp_path: Path) -> None:
    store = RunStore(tmp_path / ".pipeline")
    saved_run(store, "run-1", RunStatus.RUNNING)

    [summary] = store.summaries()

    assert summary.status == "interrupted"
    assert summary.steps_done == 1
    assert summary.steps_total == 2
    assert summary.problem is None


def test_summaries_report_a_locked_running_run_as_running(tmp_path: Path) -> None:
    store = RunStore(tmp_path / ".pipeline")
    run_dir = saved_run(store, "run-1", RunStatus.RUNNING)

    with RunLock(run_dir.lock_path, "run-1"):
        [summary] = store.summaries()

    assert summary.status == "running"


def test_summaries_list_a_damaged_run_as_unreadable(tmp_path: Path) -> None:
    store = RunStore(tmp_path / ".pipeline")
    saved_run(store, "run-good", RunStatus.COMPLETED)
    damaged = saved_run(store, "run-bad")
    damaged.state_path.write_text('{"truncated', encoding="utf-8")

    rows = {summary.run_id: summary for summary in store.summaries()}

    assert rows["run-good"].status == "completed"
    assert rows["run-bad"].status == "unreadable"
    assert rows["run-bad"].problem is not None
    assert str(damaged.state_path) in rows["run-bad"].problem
