"""Per-item checkpoints of fan-out steps: ``<run>/items.sqlite``.

Each item's result is committed the moment it finishes, so a run killed at any instant loses
at most the items in flight. Before an item that calls an LLM starts, an intent row
(``started``) is committed too: after a crash the rows still ``started`` are exactly the calls
that may be sent a second time, and the resume says how many. Rows are keyed by step and item
key and carry the item's fingerprint, so an item is reused only while nothing it depends on
has changed.

Writes go through one writer thread that commits whatever rows are waiting in one transaction
(group commit): a hundred concurrent items cost a handful of fsyncs instead of a hundred, and
the event loop never waits on a commit's fsync (it reads rows itself, a lookup per item). Each
item's write is awaited until its transaction has committed; rows written ``durable=False``
are then safe from a killed process, not from a power cut.

``show`` and ``--dry-run`` read the file through read-only functions (``read_item_progress``,
``read_checkpoints``) that never migrate or write it.
"""

from __future__ import annotations

import asyncio
import json
import queue
import sqlite3
import threading
import time
from collections.abc import Callable, Iterable, Iterator, Sequence
from dataclasses import dataclass, replace
from enum import StrEnum
from pathlib import Path
from typing import Any, TypeVar

from stepline.store.rundir import records_newest_first
from stepline.store.sqlite import Database

MIGRATIONS = (
    """
    CREATE TABLE items (
        step TEXT NOT NULL,
        key TEXT NOT NULL,
        position INTEGER NOT NULL,
        fingerprint TEXT NOT NULL,
        status TEXT NOT NULL,
        result TEXT,
        error TEXT,
        metrics TEXT,
        updated_at REAL NOT NULL,
        PRIMARY KEY (step, key)
    ) WITHOUT ROWID
    """,
    # 2-3: which execution of the step last wrote or confirmed the row, so the step's output
    # can be read back in order without holding results in memory
    "ALTER TABLE items ADD COLUMN mark TEXT",
    "CREATE INDEX items_by_mark ON items (step, mark, position)",
    # 4-6: batch mode (store/batches.py): each submitted batch, and which batch holds an item
    """
    CREATE TABLE batches (
        step TEXT NOT NULL,
        submission INTEGER NOT NULL,
        batch_id TEXT,
        status TEXT NOT NULL,
        requests INTEGER NOT NULL,
        counts TEXT,
        submitted_at REAL NOT NULL,
        updated_at REAL NOT NULL,
        PRIMARY KEY (step, submission)
    ) WITHOUT ROWID
    """,
    """
    CREATE TABLE batch_requests (
        step TEXT NOT NULL,
        key TEXT NOT NULL,
        submission INTEGER NOT NULL,
        custom_id TEXT NOT NULL,
        fingerprint TEXT NOT NULL,
        PRIMARY KEY (step, key)
    ) WITHOUT ROWID
    """,
    "CREATE INDEX batch_requests_by_submission ON batch_requests (step, submission, custom_id)",
)
DAMAGED_HINT = (
    "re-run the fan-out step with --from-step; finished items are lost with the file, "
    "other steps' outputs are not"
)
UPSERT = (
    "INSERT OR REPLACE INTO items (step, key, position, fingerprint, status, result, error, "
    "metrics, mark, updated_at) VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?)"
)
CONFIRM = "UPDATE items SET position = ?, mark = ?, updated_at = ? WHERE step = ? AND key = ?"
FORGET = "DELETE FROM items WHERE step = ? AND key = ?"
MAX_BATCH = 1000
LOOKUP_BATCH = 500  # keys per lookup_many query (SQLite allows 32,766 parameters)


class ItemStatus(StrEnum):
    STARTED = "started"  # an LLM call may be in flight; it may be sent again after a crash
    DONE = "done"
    FAILED = "failed"


@dataclass(frozen=True)
class ItemRecord:
    key: str
    position: int
    fingerprint: str
    status: ItemStatus
    result: Any = None
    error: str | None = None
    metrics: dict[str, Any] | None = None


@dataclass(frozen=True)
class ItemCounts:
    """Where a fan-out step's latest execution left its items (``total``: how many it had,
    when known)."""

    done: int = 0
    failed: int = 0
    started: int = 0  # in flight when it stopped
    total: int | None = None

    @property
    def summary(self) -> str:
        """``84 of 200 items done, 3 failed`` (``84 items done`` without a total)."""
        text = f"{self.done:,} items done"
        if self.total is not None:
            text = f"{self.done:,} of {self.total:,} items done"
        return text + (f", {self.failed:,} failed" if self.failed else "")


T = TypeVar("T")
_LATEST_COUNTS = (
    "SELECT status, COUNT(*) FROM items WHERE step = ? AND mark IS "
    "(SELECT mark FROM items WHERE step = ? ORDER BY updated_at DESC LIMIT 1) GROUP BY status"
)


def read_item_counts(items_path: Path, steps: Iterable[str]) -> dict[str, ItemCounts]:
    """Each step's items by status, as its latest execution (the one that wrote or reused
    the newest row) left them; steps without checkpoints are left out. Read-only, for
    ``show`` and ``--dry-run``: rows an earlier execution wrote for another config are not
    counted, and an older file without marks, or a damaged one, reads as none."""
    wanted = list(steps)
    rows = _read_only(
        items_path, lambda db: [db.execute(_LATEST_COUNTS, (s, s)).fetchall() for s in wanted]
    )
    counts: dict[str, ItemCounts] = {}
    for step, found in zip(wanted, rows or [], strict=False):
        by_status = dict(found)
        if by_status:
            counts[step] = ItemCounts(
                done=by_status.get(ItemStatus.DONE, 0),
                failed=by_status.get(ItemStatus.FAILED, 0),
                started=by_status.get(ItemStatus.STARTED, 0),
            )
    return counts


def read_item_progress(
    items_path: Path, events_path: Path, steps: Iterable[str]
) -> dict[str, ItemCounts]:
    """``read_item_counts`` with each step's number of items, where its newest progress
    event in ``events.jsonl`` says (the checkpoints hold only the items that ran)."""
    counts = read_item_counts(items_path, steps)
    totals = _item_totals(events_path, set(counts))
    return {step: replace(each, total=totals.get(step)) for step, each in counts.items()}


def _item_totals(events_path: Path, steps: set[str]) -> dict[str, int]:
    """Each step's number of items, from its newest ``item_progress`` event: the checkpoints
    hold only the items that ran. The file is read from its end, a chunk at a time, and only
    as far back as those events are."""
    totals: dict[str, int] = {}
    for event in records_newest_first(events_path) if steps else ():
        step, total = event.get("step"), _progress_total(event)
        if isinstance(step, str) and step in steps and total is not None:
            totals.setdefault(step, total)
            if len(totals) == len(steps):
                break
    return totals


def _progress_total(event: dict[str, Any]) -> int | None:
    """The item total of an ``item_progress`` event (EventType.ITEM_PROGRESS), else None."""
    data = event.get("data")
    if event.get("type") != "item_progress" or not isinstance(data, dict):
        return None
    total = data.get("total")
    return total if isinstance(total, int) else None


def read_checkpoints(items_path: Path, step: str, keys: Sequence[str]) -> dict[str, ItemRecord]:
    """The checkpoints of ``keys`` (at most ``LOOKUP_BATCH``), without results, read-only:
    what a dry run checks to price only the items a run would not reuse."""
    query = (
        "SELECT key, position, fingerprint, status FROM items "
        f"WHERE step = ? AND key IN ({', '.join('?' * len(keys))})"
    )
    rows = _read_only(items_path, lambda db: db.execute(query, (step, *keys)).fetchall())
    return {
        key: ItemRecord(key, position, fingerprint, ItemStatus(status))
        for key, position, fingerprint, status in rows or []
    }


def _read_only(items_path: Path, read: Callable[[sqlite3.Connection], T]) -> T | None:
    """What ``read`` reads on a read-only connection, which never migrates or writes the
    file; None without a file or when it cannot be read so (damaged, or older than the
    columns asked for)."""
    if not items_path.exists():
        return None
    try:
        db = sqlite3.connect(f"{items_path.resolve().as_uri()}?mode=ro", uri=True)
    except sqlite3.Error:
        return None
    try:
        return read(db)
    except sqlite3.Error:
        return None
    finally:
        db.close()


@dataclass(frozen=True)
class _Write:
    sql: str
    row: tuple[Any, ...]
    durable: bool
    done: asyncio.Future[None]


class ItemStore:
    """The item checkpoints of one run."""

    def __init__(self, path: Path) -> None:
        self.path = path
        self._reader = Database(path, MIGRATIONS, damaged_hint=DAMAGED_HINT)
        self._writes: queue.SimpleQueue[_Write | None] = queue.SimpleQueue()
        self._writer: threading.Thread | None = None
        self._exists = False

    def lookup(self, step: str, key: str) -> ItemRecord | None:
        """The checkpoint of one item, without its result (see ``result``)."""
        return self.lookup_many(step, [key]).get(key)

    def lookup_many(self, step: str, keys: Sequence[str]) -> dict[str, ItemRecord]:
        """The checkpoints of ``keys`` that exist, in one query (at most ``LOOKUP_BATCH``
        keys: a resume of a large step reuses thousands of items, and one query per item
        was most of its time before the first new request)."""
        if not self._exists:
            self._exists = self.path.exists()  # once it exists it stays; no stat per item
            if not self._exists:
                return {}
        marks = ", ".join("?" * len(keys))
        with self._reader.connect(write=False) as db:
            rows = db.execute(
                "SELECT key, position, fingerprint, status, error, metrics FROM items "
                f"WHERE step = ? AND key IN ({marks})",
                (step, *keys),
            ).fetchall()
        return {
            key: ItemRecord(
                key=key,
                position=position,
                fingerprint=fingerprint,
                status=ItemStatus(status),
                error=error,
                metrics=json.loads(metrics) if metrics else None,
            )
            for key, position, fingerprint, status, error, metrics in rows
        }

    def has_rows(self, step: str) -> bool:
        """Whether any item of this step was ever checkpointed (else none needs a lookup)."""
        if not self._exists and not self.path.exists():
            return False
        with self._reader.connect(write=False) as db:
            return (
                db.execute("SELECT 1 FROM items WHERE step = ? LIMIT 1", (step,)).fetchone()
                is not None
            )

    def result(self, step: str, key: str) -> Any:
        """One finished item's result."""
        with self._reader.connect(write=False) as db:
            row = db.execute(
                "SELECT result FROM items WHERE step = ? AND key = ?", (step, key)
            ).fetchone()
        return json.loads(row[0]) if row and row[0] is not None else None

    def marked(self, step: str, mark: str) -> Iterator[ItemRecord]:
        """The rows one execution of a step wrote or confirmed, in input order, results
        included, read a batch at a time (the output is never held whole for this)."""
        with self._reader.connect(write=False) as db:
            cursor = db.execute(
                "SELECT key, position, fingerprint, status, result, error FROM items "
                "WHERE step = ? AND mark = ? ORDER BY position",
                (step, mark),
            )
            while rows := cursor.fetchmany(500):
                for key, position, fingerprint, status, result, error in rows:
                    yield ItemRecord(
                        key=key,
                        position=position,
                        fingerprint=fingerprint,
                        status=ItemStatus(status),
                        result=json.loads(result) if result is not None else None,
                        error=error,
                    )

    async def start(self, step: str, key: str, position: int, fingerprint: str, mark: str) -> None:
        """Commit the intent to call an LLM for this item (before the call), durably."""
        row = (step, key, position, fingerprint, ItemStatus.STARTED, None, None, None, mark)
        await self._put(UPSERT, row)

    async def finish(
        self,
        step: str,
        key: str,
        position: int,
        fingerprint: str,
        result: Any,
        metrics: dict[str, Any],
        mark: str,
        *,
        durable: bool = True,
    ) -> None:
        """Commit a finished item. ``durable=False`` for items that are cheap to redo (no
        LLM call): they survive a killed process, only a power cut may lose them."""
        encoded = json.dumps(result, ensure_ascii=False)
        metrics_json = json.dumps(metrics) if metrics else None
        row = (step, key, position, fingerprint, ItemStatus.DONE, encoded, None, metrics_json)
        await self._put(UPSERT, (*row, mark), durable=durable)

    async def fail(
        self, step: str, key: str, position: int, fingerprint: str, error: str, mark: str
    ) -> None:
        row = (step, key, position, fingerprint, ItemStatus.FAILED, None, error, None, mark)
        await self._put(UPSERT, row)

    async def forget(self, step: str, key: str) -> None:
        """Drop an item's row (an intent whose call was never sent): it runs afresh later."""
        await self._put(FORGET, (), tail=(step, key), stamped=False)

    def confirm(self, step: str, key: str, position: int, mark: str) -> asyncio.Future[None]:
        """Count a reused checkpoint as part of this execution's output. Not awaited one by
        one: the caller gathers a batch, so reuse costs a commit per batch, not per item (and
        it is not durable: a lost confirmation only means the item is looked up again)."""
        return self._enqueue(CONFIRM, (position, mark), tail=(step, key), durable=False)

    def write(self, sql: str, row: tuple[Any, ...]) -> asyncio.Future[None]:
        """Queue one statement of another table in this file (``store.batches``) behind the
        item rows already queued; the future settles when it has committed, durably."""
        return self._enqueue(sql, row, stamped=False)

    def read(self, sql: str, row: tuple[Any, ...]) -> list[tuple[Any, ...]]:
        """Rows of a query on this file; none before the file exists."""
        if not self._exists and not self.path.exists():
            return []
        with self._reader.connect(write=False) as db:
            return list(db.execute(sql, row).fetchall())

    def close(self) -> None:
        """Finish the pending writes and stop the writer."""
        if self._writer is not None:
            self._writes.put(None)
            self._writer.join()
            self._writer = None
        self._reader.close()

    async def _put(
        self,
        sql: str,
        row: tuple[Any, ...],
        *,
        tail: tuple[Any, ...] = (),
        durable: bool = True,
        stamped: bool = True,
    ) -> None:
        """Write one statement and wait until its transaction has committed."""
        done = self._enqueue(sql, row, tail=tail, durable=durable, stamped=stamped)
        await asyncio.shield(done)  # a cancelled item still gets its row written

    def _enqueue(
        self,
        sql: str,
        row: tuple[Any, ...],
        *,
        tail: tuple[Any, ...] = (),
        durable: bool = True,
        stamped: bool = True,
    ) -> asyncio.Future[None]:
        """Queue one statement for the writer; ``updated_at`` goes between ``row`` and
        ``tail`` (the column order of UPSERT and CONFIRM) unless not ``stamped``. The future
        settles on commit."""
        if self._writer is None:
            self._writer = threading.Thread(target=self._write_batches, name="stepline-items")
            self._writer.daemon = True
            self._writer.start()
        done: asyncio.Future[None] = asyncio.get_running_loop().create_future()
        stamp = (time.time(),) if stamped else ()
        self._writes.put(_Write(sql, (*row, *stamp, *tail), durable, done))
        self._exists = True
        return done

    def _write_batches(self) -> None:
        """The writer thread: commit every waiting row in one transaction, then report back."""
        database = Database(self.path, MIGRATIONS, damaged_hint=DAMAGED_HINT)
        try:
            while (first := self._writes.get()) is not None:
                batch = [first]
                stop = False
                while len(batch) < MAX_BATCH and not self._writes.empty():
                    write = self._writes.get()
                    if write is None:
                        stop = True
                        break
                    batch.append(write)
                self._commit(database, batch)
                if stop:
                    break
        finally:
            database.close()

    @staticmethod
    def _commit(database: Database, batch: list[_Write]) -> None:
        error: BaseException | None = None
        try:
            with database.connect(durable=any(write.durable for write in batch)) as db:
                for write in batch:
                    db.execute(write.sql, write.row)
        except Exception as exc:  # reported to every waiting item; the run fails cleanly
            error = exc
        # One wake-up of the event loop per batch, not one per row (each is a syscall).
        loops: dict[asyncio.AbstractEventLoop, list[asyncio.Future[None]]] = {}
        for write in batch:
            loops.setdefault(write.done.get_loop(), []).append(write.done)
        for loop, waiting in loops.items():
            loop.call_soon_threadsafe(_settle, waiting, error)


def _settle(waiting: list[asyncio.Future[None]], error: BaseException | None) -> None:
    for done in waiting:
        if done.done():
            continue
        if error is None:
            done.set_result(None)
        else:
            done.set_exception(error)
