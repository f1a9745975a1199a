"""Per-item checkpoints of fan-out steps: ``<run>/items.sqlite``.

Each item's result is committed the moment it finishes, so a run killed at any instant loses
at most the items in flight. Before an item that calls an LLM starts, an intent row
(``started``) is committed too: after a crash the rows still ``started`` are exactly the calls
that may be sent a second time, and the resume says how many. Rows are keyed by step and item
key and carry the item's fingerprint, so an item is reused only while nothing it depends on
has changed.

Writes go through one writer thread that commits whatever rows are waiting in one transaction
(group commit): a hundred concurrent items cost a handful of fsyncs instead of a hundred, and
the event loop never blocks on the disk. Each write is awaited until its transaction has
committed, so "committed" still means on disk before the item moves on.
"""

from __future__ import annotations

import asyncio
import json
import queue
import threading
import time
from collections.abc import Iterator
from dataclasses import dataclass
from enum import StrEnum
from pathlib import Path
from typing import Any

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
)
DAMAGED_HINT = (
    "re-run the fan-out step with --from-step; finished items are lost with the file, "
    "other steps' outputs are not"
)
UPSERT = (
    "INSERT OR REPLACE INTO items (step, key, position, fingerprint, status, result, error, "
    "metrics, updated_at) VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?)"
)
MAX_BATCH = 1000


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
class _Write:
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

    def records(self, step: str) -> Iterator[ItemRecord]:
        """Every checkpoint of ``step``, in input order."""
        if not self.path.exists():
            return
        with self._reader.connect(write=False) as db:
            rows = db.execute(
                "SELECT key, position, fingerprint, status, result, error, metrics "
                "FROM items WHERE step = ? ORDER BY position",
                (step,),
            ).fetchall()
        for key, position, fingerprint, status, result, error, metrics in rows:
            yield ItemRecord(
                key=key,
                position=position,
                fingerprint=fingerprint,
                status=ItemStatus(status),
                result=json.loads(result) if result is not None else None,
                error=error,
                metrics=json.loads(metrics) if metrics else None,
            )

    async def start(self, step: str, key: str, position: int, fingerprint: str) -> None:
        """Commit the intent to call an LLM for this item (before the call), durably."""
        await self._put((step, key, position, fingerprint, ItemStatus.STARTED, None, None, None))

    async def finish(
        self,
        step: str,
        key: str,
        position: int,
        fingerprint: str,
        result: Any,
        metrics: dict[str, Any],
        *,
        durable: bool = True,
    ) -> None:
        """Commit a finished item. ``durable=False`` for items that are cheap to redo (no
        LLM call): they survive a killed process, only a power cut may lose them."""
        encoded = json.dumps(result, ensure_ascii=False)
        row = (step, key, position, fingerprint, ItemStatus.DONE, encoded, None)
        await self._put((*row, json.dumps(metrics) if metrics else None), durable=durable)

    async def fail(self, step: str, key: str, position: int, fingerprint: str, error: str) -> None:
        await self._put((step, key, position, fingerprint, ItemStatus.FAILED, None, error, None))

    def close(self) -> None:
        """Finish the pending writes and stop the writer."""
        if self._writer is not None:
            self._writes.put(None)
            self._writer.join()
            self._writer = None
        self._reader.close()

    async def _put(self, row: tuple[Any, ...], *, durable: bool = True) -> None:
        if self._writer is None:
            self._writer = threading.Thread(target=self._write_batches, name="stepline-items")
            self._writer.daemon = True
            self._writer.start()
        done: asyncio.Future[None] = asyncio.get_running_loop().create_future()
        self._writes.put(_Write((*row, time.time()), durable, done))
        await asyncio.shield(done)  # a cancelled item still gets its row written

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
                db.executemany(UPSERT, [write.row for write in batch])
        except Exception as exc:  # reported to every waiting item; the run fails cleanly
            error = exc
        for write in batch:
            write.done.get_loop().call_soon_threadsafe(_settle, write.done, error)


def _settle(done: asyncio.Future[None], error: BaseException | None) -> None:
    if done.done():
        return
    if error is None:
        done.set_result(None)
    else:
        done.set_exception(error)
