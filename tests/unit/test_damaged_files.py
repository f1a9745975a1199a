"""Damaged run files: each way state.json or a SQLite file can be spoilt gets one readable
error that names the file and what to do, never a traceback or a wrong diagnosis.

SQLite faults are real: garbage and truncated files on disk, a page limit that makes SQLite
itself report a full database, a second connection holding the write lock.
"""

from __future__ import annotations

import sqlite3
from pathlib import Path

import pytest

from stepline.errors import RunStoreError, WriteFailed
from stepline.store import sqlite as sqlite_module
from stepline.store.sqlite import Database
from stepline.store.state import SCHEMA_VERSION, RunState, load_state, save_state

CURRENT = f'"schema_version": {SCHEMA_VERSION}'.encode()

STATE_HINT = "restore it from a backup or start a new run"


def saved_state(tmp_path: Path) -> Path:
    path = tmp_path / "state.json"
    save_state(
        path,
        RunState(
            run_id="run-1",
            pipeline="demo",
            config_path=None,
            config_hash="sha256:c",
            input_path="in.txt",
            input_copy="input/original.txt",
            input_hash="sha256:i",
        ),
    )
    return path


@pytest.mark.parametrize(
    ("damage", "problem"),
    [
        (lambda raw: b"", "is damaged: it is empty"),
        (lambda raw: b"  \n", "is damaged: it is empty"),
        (lambda raw: raw[: len(raw) // 2], "it ends mid-way, as if cut off"),
        (lambda raw: b"\x00\xff\xfe" + raw, "is damaged: not UTF-8 text (byte 1)"),
        (lambda raw: b"<html>not json</html>", "is damaged: not valid JSON"),
        (lambda raw: b"[1, 2]", "is damaged: it holds list, not a JSON object"),
        (lambda raw: raw.replace(b'"run_id": "run-1"', b'"run_id": 5'), "is damaged: run_id:"),
        (lambda raw: raw.replace(CURRENT, b'"schema_version": "1"'), "not a whole"),
    ],
    ids=["empty", "blank", "truncated", "binary", "not-json", "list", "wrong-type", "str-version"],
)
def test_a_damaged_state_file_is_named_with_its_problem_and_a_way_out(
    tmp_path: Path, damage, problem: str
) -> None:
    path = saved_state(tmp_path)
    path.write_bytes(damage(path.read_bytes()))

    with pytest.raises(RunStoreError) as caught:
        load_state(path)

    assert caught.value.message.startswith(f"{path} is damaged")
    assert problem in caught.value.message
    assert caught.value.hint is not None and STATE_HINT in caught.value.hint
    assert caught.value.exit_code == 2


def test_a_state_file_from_a_newer_stepline_asks_for_an_upgrade(tmp_path: Path) -> None:
    path = saved_state(tmp_path)
    newer = f'"schema_version": {SCHEMA_VERSION + 1}'.encode()
    path.write_bytes(path.read_bytes().replace(CURRENT, newer))

    with pytest.raises(RunStoreError, match="written by a newer stepline") as caught:
        load_state(path)

    assert caught.value.hint == "upgrade stepline to resume this run"


def test_an_unreadable_state_file_is_not_called_damaged(tmp_path: Path) -> None:
    path = saved_state(tmp_path)
    path.unlink()
    path.mkdir()  # reading a folder fails with EISDIR: a fault of the disk, not the content

    with pytest.raises(RunStoreError, match=f"cannot read {path}: Is a directory") as caught:
        load_state(path)

    assert caught.value.hint is not None and "permissions" in caught.value.hint


# --------------------------------------------------------------------------------------------
# SQLite files

MIGRATIONS = ("CREATE TABLE rows (id INTEGER PRIMARY KEY, body TEXT NOT NULL)",)
HINT = "a hint only the owner of the file knows"


def filled_database(path: Path, rows: int = 200) -> None:
    database = Database(path, MIGRATIONS, damaged_hint=HINT)
    with database.connect() as db:
        db.executemany("INSERT INTO rows (body) VALUES (?)", [("x" * 500,)] * rows)
    database.close()


def count_rows(path: Path) -> int:
    database = Database(path, MIGRATIONS, damaged_hint=HINT)
    with database.connect(write=False) as db:
        count: int = db.execute("SELECT count(*) FROM rows").fetchone()[0]
    database.close()
    return count


@pytest.mark.parametrize(
    "damage",
    [
        lambda raw: b"this is not a database" * 100,
        lambda raw: raw[: len(raw) // 3],
        lambda raw: raw[:100] + b"\xab" * (len(raw) - 100),
    ],
    ids=["garbage", "truncated", "overwritten"],
)
def test_a_damaged_sqlite_file_says_to_move_it_aside(tmp_path: Path, damage) -> None:
    path = tmp_path / "items.sqlite"
    filled_database(path)
    path.write_bytes(damage(path.read_bytes()))

    with pytest.raises(RunStoreError) as caught:
        count_rows(path)

    assert not isinstance(caught.value, WriteFailed)
    message = caught.value.message
    assert message.startswith(f"{path} is damaged or unusable (")
    assert message.endswith("move items.sqlite aside (or delete it) to go on")
    assert caught.value.hint == HINT


def test_moving_a_damaged_sqlite_file_aside_as_told_recovers(tmp_path: Path) -> None:
    path = tmp_path / "items.sqlite"
    path.write_bytes(b"this is not a database" * 100)
    with pytest.raises(RunStoreError, match="move items.sqlite aside"):
        count_rows(path)

    path.rename(tmp_path / "items.sqlite.damaged")

    assert count_rows(path) == 0


def test_a_full_database_is_a_write_failure_and_keeps_committed_rows(tmp_path: Path) -> None:
    path = tmp_path / "items.sqlite"
    filled_database(path, rows=10)
    database = Database(path, MIGRATIONS, damaged_hint=HINT)

    with pytest.raises(WriteFailed) as caught, database.connect() as db:
        pages = db.execute("PRAGMA page_count").fetchone()[0]
        db.execute(f"PRAGMA max_page_count = {pages}")  # SQLite now reports SQLITE_FULL
        db.executemany("INSERT INTO rows (body) VALUES (?)", [("y" * 5000,)] * 50)

    database.close()
    assert caught.value.message.startswith(f"cannot use {path}: the disk is full (")
    assert "what it committed before is kept" in caught.value.message
    assert caught.value.hint is not None and caught.value.hint.startswith("free some disk space")
    assert count_rows(path) == 10  # the failed transaction rolled back; nothing was lost


def test_a_database_locked_too_long_is_not_called_damaged(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    path = tmp_path / "cache.sqlite"
    filled_database(path, rows=1)
    monkeypatch.setattr(sqlite_module, "BUSY_TIMEOUT_S", 0.05)
    holder = sqlite3.connect(path, isolation_level=None)
    holder.execute("BEGIN IMMEDIATE")
    try:
        database = Database(path, MIGRATIONS, damaged_hint=HINT)
        with pytest.raises(RunStoreError) as caught, database.connect() as db:
            db.execute("INSERT INTO rows (body) VALUES ('z')")
    finally:
        holder.execute("ROLLBACK")
        holder.close()

    assert "damaged" not in caught.value.message
    assert "stayed locked by another process" in caught.value.message
    assert count_rows(path) == 1
