"""Per-item checkpoints of fan-out steps: ``<run>/items.sqlite``.

Each item's result is committed the moment it finishes, so a run killed at any instant loses
at most the items in flight. Before an item that calls an LLM starts, an intent row
(``started``) is committed too: after a crash the rows still ``started`` are exactly the calls
that may be sent a second time, and the resume says how many. Rows are keyed by step and item
key and carry the item's fingerprint, so an item is reused only while nothing it depends on
has changed.
"""

from __future__ import annotations

import json
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


class ItemStore:
    """The item checkpoints of one run."""

    def __init__(self, path: Path) -> None:
        self.path = path
        self._database = Database(
            path,
            MIGRATIONS,
            damaged_hint="re-run the fan-out step with --from-step; finished items are "
            "lost with the file, other steps' outputs are not",
        )

    def records(self, step: str) -> Iterator[ItemRecord]:
        """Every checkpoint of ``step``, in input order."""
        if not self.path.exists():
            return
        with self._database.connect(write=False) as db:
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

    def start(self, step: str, key: str, position: int, fingerprint: str) -> None:
        """Commit the intent to call an LLM for this item (before the call)."""
        self._put(step, key, position, fingerprint, ItemStatus.STARTED, None, None, None)

    def finish(
        self,
        step: str,
        key: str,
        position: int,
        fingerprint: str,
        result: Any,
        metrics: dict[str, Any],
    ) -> None:
        self._put(
            step,
            key,
            position,
            fingerprint,
            ItemStatus.DONE,
            json.dumps(result, ensure_ascii=False),
            None,
            json.dumps(metrics) if metrics else None,
        )

    def fail(self, step: str, key: str, position: int, fingerprint: str, error: str) -> None:
        self._put(step, key, position, fingerprint, ItemStatus.FAILED, None, error, None)

    def close(self) -> None:
        self._database.close()

    def _put(
        self,
        step: str,
        key: str,
        position: int,
        fingerprint: str,
        status: ItemStatus,
        result: str | None,
        error: str | None,
        metrics: str | None,
    ) -> None:
        with self._database.connect() as db:
            db.execute(
                "INSERT OR REPLACE INTO items (step, key, position, fingerprint, status, "
                "result, error, metrics, updated_at) VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?)",
                (
                    step,
                    key,
                    position,
                    fingerprint,
                    status.value,
                    result,
                    error,
                    metrics,
                    time.time(),
                ),
            )
