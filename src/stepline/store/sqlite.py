"""One way to open stepline's SQLite files: WAL, a busy timeout, ordered migrations.

WAL lets readers (``pipeline show``, a dry run) work while a run writes; the busy timeout lets
several processes share the response cache; ``synchronous=FULL`` makes a committed row survive
a power cut, which is what lets a resumed run trust it instead of paying for a call again.
Migrations are statements applied in order and counted in ``PRAGMA user_version``. SQLite's
errors become one readable error per cause: damaged file, full or failing disk, a lock held
too long.
"""

from __future__ import annotations

import sqlite3
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from pathlib import Path

from stepline.errors import RunStoreError, WriteFailed

BUSY_TIMEOUT_S = 5.0
_SQLITE_BUSY = 5
# SQLite primary result codes of the environment's faults -> (what happened, what to do)
_FAULTS = {
    8: ("it is read-only", "make the file and its folder writable"),  # SQLITE_READONLY
    10: ("the disk reported an I/O error", "check the disk (dmesg)"),  # SQLITE_IOERR
    13: ("the disk is full", "free some disk space"),  # SQLITE_FULL
    14: ("the file cannot be opened", "check the folder's permissions"),  # SQLITE_CANTOPEN
}


class Database:
    """A kept-open connection to one SQLite file, opened on first use."""

    def __init__(self, path: Path, migrations: Sequence[str], *, damaged_hint: str) -> None:
        self.path = path
        self._migrations = migrations
        self._damaged_hint = damaged_hint
        self._db: sqlite3.Connection | None = None
        self._durable = True

    @contextmanager
    def connect(self, *, write: bool = True, durable: bool = True) -> Iterator[sqlite3.Connection]:
        """The connection; a write runs in one ``BEGIN IMMEDIATE`` transaction.

        ``durable=False`` commits without waiting for the disk (``synchronous=NORMAL``): the
        row survives the process being killed, not a power cut. For rows that are cheap to
        redo; anything that gates a paid LLM call is written durably.
        """
        try:
            db = self._open()
            if write and durable != self._durable:
                db.execute(f"PRAGMA synchronous={'FULL' if durable else 'NORMAL'}")
                self._durable = durable
            if write:
                db.execute("BEGIN IMMEDIATE")
            yield db
            if write:
                db.execute("COMMIT")
        except sqlite3.DatabaseError as exc:
            self.close()  # rolls back whatever was open
            raise self._translate(exc) from None
        except BaseException:
            if self._db is not None and self._db.in_transaction:
                self._db.rollback()
            raise

    def _translate(self, exc: sqlite3.DatabaseError) -> RunStoreError:
        """One readable error per kind of fault: the fix for a full disk (free space, try
        again; committed rows are kept) is not the fix for a damaged file (move it aside)."""
        code = (getattr(exc, "sqlite_errorcode", None) or 0) & 0xFF  # the primary result code
        if code in _FAULTS:
            what, todo = _FAULTS[code]
            return WriteFailed(
                f"cannot use {self.path}: {what} ({exc}); what it committed before is kept",
                hint=f"{todo}, then try again; a run resumes where it stopped",
            )
        if code == _SQLITE_BUSY:
            return RunStoreError(
                f"{self.path} stayed locked by another process for over {BUSY_TIMEOUT_S:g} s",
                hint="try again when the other stepline process is done",
            )
        # A -wal file left beside it needs no mention: SQLite ignores a log whose salt does
        # not match the new file's.
        return RunStoreError(
            f"{self.path} is damaged or unusable ({exc}); move {self.path.name} aside (or "
            "delete it) to go on",
            hint=self._damaged_hint,
        )

    def close(self) -> None:
        if self._db is not None:
            self._db.close()
            self._db = None
            self._durable = True

    def _open(self) -> sqlite3.Connection:
        if self._db is None:
            self.path.parent.mkdir(parents=True, exist_ok=True)
            db = sqlite3.connect(self.path, timeout=BUSY_TIMEOUT_S, isolation_level=None)
            try:
                db.execute("PRAGMA journal_mode=WAL")
                db.execute("PRAGMA synchronous=FULL")
                _migrate(db, self._migrations, self.path)
            except BaseException:
                db.close()
                raise
            self._db = db
        return self._db


def _migrate(db: sqlite3.Connection, migrations: Sequence[str], path: Path) -> None:
    version = db.execute("PRAGMA user_version").fetchone()[0]
    if version > len(migrations):
        raise RunStoreError(
            f"{path} was written by a newer stepline",
            hint="upgrade stepline, or remove the file",
        )
    if version == len(migrations):
        return
    db.execute("BEGIN IMMEDIATE")
    version = db.execute("PRAGMA user_version").fetchone()[0]  # another process may have won
    for number, statement in enumerate(migrations[version:], start=version + 1):
        db.execute(statement)
        db.execute(f"PRAGMA user_version = {number}")
    db.execute("COMMIT")
