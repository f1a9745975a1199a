"""I/O faults during atomic writes: the previous file survives, no temp file stays behind, and
the error names the file and what to do.

Faults are real where the kernel can produce them on demand (a file size limit gives EFBIG on
write) and injected into the standard library (``os.fsync``, ``os.replace``) where it cannot;
stepline's own functions are never replaced.
"""

from __future__ import annotations

import errno
import os
import resource
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest

from stepline.errors import RunStoreError, WriteFailed
from stepline.store.atomic import (
    TEMP_PREFIX,
    fsync_dir,
    write_bytes_atomic,
    write_chunks_atomic,
)
from stepline.store.rundir import RunDir
from stepline.store.state import RunState, StepState, load_state, save_state


def temp_files(folder: Path) -> list[Path]:
    return [path for path in folder.rglob(f"{TEMP_PREFIX}*")]


def failing(original: Callable[..., Any], code: int, *, after: int = 0) -> Callable[..., Any]:
    """``original``, except that every call after the first ``after`` raises ``OSError(code)``."""
    calls = 0

    def wrapper(*args: Any, **kwargs: Any) -> Any:
        nonlocal calls
        calls += 1
        if calls > after:
            raise OSError(code, os.strerror(code))
        return original(*args, **kwargs)

    return wrapper


@pytest.fixture
def previous(tmp_path: Path) -> Path:
    target = tmp_path / "steps" / "01-a.json"
    write_bytes_atomic(target, b'"the previous value"\n')
    return target


@pytest.mark.parametrize("function", ["fsync", "replace"])
def test_disk_full_keeps_the_previous_file_and_removes_the_temp_file(
    previous: Path, monkeypatch: pytest.MonkeyPatch, function: str
) -> None:
    with monkeypatch.context() as patch, pytest.raises(WriteFailed) as caught:
        patch.setattr(os, function, failing(getattr(os, function), errno.ENOSPC))
        write_bytes_atomic(previous, b'"a new value"\n')

    assert previous.read_bytes() == b'"the previous value"\n'
    assert temp_files(previous.parent) == []
    error = caught.value
    assert error.message == (
        f"cannot write {previous}: the disk is full; its previous version is unchanged"
    )
    assert error.hint is not None and error.hint.startswith("free some disk space, then try")
    assert "pipeline resume" in error.hint
    assert error.errno == errno.ENOSPC and error.exit_code == 1
    assert isinstance(error, RunStoreError)


def test_a_write_past_the_file_size_limit_is_a_real_efbig(previous: Path) -> None:
    """No injection: the kernel refuses the write itself (CPython ignores SIGXFSZ)."""
    soft, hard = resource.getrlimit(resource.RLIMIT_FSIZE)
    resource.setrlimit(resource.RLIMIT_FSIZE, (4096, hard))
    try:
        with pytest.raises(WriteFailed) as caught:
            write_chunks_atomic(previous, (b"x" * 1024 for _ in range(64)))
    finally:
        resource.setrlimit(resource.RLIMIT_FSIZE, (soft, hard))

    assert previous.read_bytes() == b'"the previous value"\n'
    assert temp_files(previous.parent) == []
    assert caught.value.errno == errno.EFBIG
    assert "the file is larger than this process may write" in caught.value.message
    assert caught.value.hint is not None and "ulimit -f" in caught.value.hint


def test_a_failed_first_write_says_nothing_was_written(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(os, "replace", failing(os.replace, errno.EIO))
    target = tmp_path / "new.json"

    with pytest.raises(WriteFailed, match="the disk reported an I/O error; nothing was written"):
        write_bytes_atomic(target, b"{}")

    assert not target.exists() and temp_files(tmp_path) == []


def test_an_unlisted_error_keeps_the_systems_words(tmp_path: Path) -> None:
    target = tmp_path / "taken"
    target.mkdir()  # os.replace cannot put a file over a folder: EISDIR

    with pytest.raises(WriteFailed, match=f"cannot write {target}: Is a directory"):
        write_bytes_atomic(target, b"data")

    assert temp_files(tmp_path) == []


def test_an_error_of_the_chunk_producer_is_not_blamed_on_the_write(previous: Path) -> None:
    def chunks() -> Iterator[bytes]:
        yield b"half"
        raise OSError(errno.EIO, "the source could not be read")

    with pytest.raises(OSError, match="the source could not be read") as caught:
        write_chunks_atomic(previous, chunks())

    assert not isinstance(caught.value, WriteFailed)
    assert previous.read_bytes() == b'"the previous value"\n'
    assert temp_files(previous.parent) == []


def test_a_folder_that_cannot_be_created_is_a_write_failure(tmp_path: Path) -> None:
    (tmp_path / "file").write_text("not a folder")

    with pytest.raises(WriteFailed, match="cannot write"):
        write_bytes_atomic(tmp_path / "file" / "state.json", b"{}")


def test_a_failed_folder_fsync_says_the_new_file_may_not_be_durable(
    previous: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    # the first fsync (the file's) succeeds; the second (the folder's) fails
    monkeypatch.setattr(os, "fsync", failing(os.fsync, errno.EIO, after=1))

    with pytest.raises(WriteFailed, match="might not survive a power cut") as caught:
        write_bytes_atomic(previous, b'"a new value"\n')

    assert str(previous.parent) in caught.value.message
    assert previous.read_bytes() == b'"a new value"\n'  # renamed: the new file is whole
    assert temp_files(previous.parent) == []


def test_fsync_dir_of_a_missing_folder_is_a_write_failure(tmp_path: Path) -> None:
    with pytest.raises(WriteFailed):
        fsync_dir(tmp_path / "absent")


def make_state() -> RunState:
    return RunState(
        run_id="run-1",
        pipeline="demo",
        config_path=None,
        config_hash="sha256:config",
        input_path="in.txt",
        input_copy="input/original.txt",
        input_hash="sha256:input",
        steps=[StepState(number=1, id="a", kind="python")],
    )


@pytest.mark.parametrize("function", ["fsync", "replace"])
def test_a_failed_state_write_leaves_the_previous_state_loadable(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, function: str
) -> None:
    path = tmp_path / "state.json"
    state = make_state()
    save_state(path, state)
    before = path.read_bytes()
    state.steps[0].error = "a change that never reaches the disk"
    with monkeypatch.context() as patch, pytest.raises(WriteFailed, match=f"{path}: the disk"):
        patch.setattr(os, function, failing(getattr(os, function), errno.ENOSPC))
        save_state(path, state)

    assert path.read_bytes() == before
    assert load_state(path).steps[0].error is None
    assert temp_files(tmp_path) == []


def test_a_failed_output_write_leaves_the_previous_output_readable(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    run_dir = RunDir(tmp_path / "run-1")
    run_dir.create()
    relative = run_dir.output_name(1, "a")
    first_hash = run_dir.write_output(relative, {"value": 1})
    with monkeypatch.context() as patch, pytest.raises(WriteFailed, match="01-a.json: the disk"):
        patch.setattr(os, "replace", failing(os.replace, errno.ENOSPC))
        run_dir.write_output(relative, {"value": 2})

    assert run_dir.read_output(relative) == {"value": 1}
    assert run_dir.output_hash(relative) == first_hash
    assert temp_files(run_dir.path) == []


def test_a_refused_append_to_a_run_log_is_a_write_failure_that_keeps_the_lines_before(
    tmp_path: Path,
) -> None:
    run_dir = RunDir(tmp_path)
    run_dir.append_event({"type": "run_started"})
    soft, hard = resource.getrlimit(resource.RLIMIT_FSIZE)
    resource.setrlimit(resource.RLIMIT_FSIZE, (run_dir.events_path.stat().st_size + 16, hard))
    try:
        with pytest.raises(WriteFailed) as caught:
            run_dir.append_event({"type": "log", "message": "x" * 4096})
    finally:
        resource.setrlimit(resource.RLIMIT_FSIZE, (soft, hard))
        run_dir.close()

    assert "cannot append to" in caught.value.message and "events.jsonl" in caught.value.message
    assert "the lines before are kept" in caught.value.message
    assert run_dir.read_events() == [{"type": "run_started"}]  # a torn last line is skipped
