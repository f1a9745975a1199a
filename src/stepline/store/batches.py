"""Which provider batches a fan-out step submitted, and which batch holds each item.

Kept in the run's ``items.sqlite`` beside the item checkpoints, through the same writer, so
the order of commits is the order of events. A submission is written *before* its batch is
created (status ``submitting``, its requests listed) and gets its batch id in one statement
right after: a run killed in between knows those items may have been sent, and one killed
after polls the batch on resume instead of submitting it again.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import sqlite3
import time
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from stepline.store.items import ItemStore

SUBMITTING = "submitting"  # written before the create request; no batch id yet
COLLECTED = "collected"  # every result is committed to the item rows
OPEN_STATUSES = ("in_progress", "canceling", "ended")  # has an id, results not all taken


@dataclass(frozen=True)
class SubmittedBatch:
    """One submission of a step's items: a batch once the provider has given its id."""

    step: str
    submission: int
    batch_id: str | None
    status: str
    requests: int
    counts: dict[str, int] = field(default_factory=dict)
    submitted_at: float = 0.0

    @property
    def is_open(self) -> bool:
        """Submitted, with results still to collect."""
        return self.batch_id is not None and self.status in OPEN_STATUSES


@dataclass(frozen=True)
class BatchedItem:
    """Where an item's request went: its submission, ``custom_id`` and fingerprint then."""

    submission: int
    custom_id: str
    fingerprint: str


class BatchLedger:
    """The batch records of one run (read and written through its ``ItemStore``)."""

    def __init__(self, store: ItemStore) -> None:
        self.store = store

    def batches(self, step: str | None = None) -> list[SubmittedBatch]:
        """Every submission of ``step`` (or of the run), oldest first."""
        where, row = ("WHERE step = ?", (step,)) if step is not None else ("", ())
        return _batches(self.store.read(f"{_SELECT_BATCHES} {where} {_IN_ORDER}", row))

    def item(self, step: str, key: str) -> BatchedItem | None:
        """The submission holding this item's last batch request, if any."""
        rows = self.store.read(
            "SELECT submission, custom_id, fingerprint FROM batch_requests "
            "WHERE step = ? AND key = ?",
            (step, key),
        )
        return BatchedItem(*rows[0]) if rows else None

    async def submitting(
        self,
        step: str,
        submission: int,
        entries: Sequence[tuple[str, str, str]],
    ) -> None:
        """Record a submission about to be sent: its (item key, custom_id, fingerprint)s."""
        now = time.time()
        writes: list[asyncio.Future[None]] = [
            self.store.write(
                "INSERT OR REPLACE INTO batches (step, submission, batch_id, status, requests, "
                "counts, submitted_at, updated_at) VALUES (?, ?, NULL, ?, ?, NULL, ?, ?)",
                (step, submission, SUBMITTING, len(entries), now, now),
            )
        ]
        writes += [
            self.store.write(
                "INSERT OR REPLACE INTO batch_requests (step, key, submission, custom_id, "
                "fingerprint) VALUES (?, ?, ?, ?, ?)",
                (step, key, submission, custom_id, fingerprint),
            )
            for key, custom_id, fingerprint in entries
        ]
        await _committed(writes)

    async def submitted(self, step: str, submission: int, batch_id: str, status: str) -> None:
        """The provider accepted the submission as ``batch_id``: from now on it is polled."""
        await self._update(step, submission, "batch_id = ?, status = ?", (batch_id, status))

    async def progress(
        self, step: str, submission: int, status: str, counts: dict[str, int]
    ) -> None:
        await self._update(step, submission, "status = ?, counts = ?", (status, json.dumps(counts)))

    async def collected(self, step: str, submission: int) -> None:
        """Every result of the batch is in the item rows; it is never polled again."""
        await self._update(step, submission, "status = ?", (COLLECTED,))

    async def refused(self, step: str, submission: int) -> None:
        """The provider refused the submission (nothing was sent): drop its records."""
        await _committed(
            [
                self.store.write(
                    "DELETE FROM batch_requests WHERE step = ? AND submission = ?",
                    (step, submission),
                ),
                self.store.write(
                    "DELETE FROM batches WHERE step = ? AND submission = ?", (step, submission)
                ),
            ]
        )

    async def _update(
        self, step: str, submission: int, assignments: str, values: tuple[Any, ...]
    ) -> None:
        await asyncio.shield(
            self.store.write(
                f"UPDATE batches SET {assignments}, updated_at = ? "
                "WHERE step = ? AND submission = ?",
                (*values, time.time(), step, submission),
            )
        )


_SELECT_BATCHES = (
    "SELECT step, submission, batch_id, status, requests, counts, submitted_at FROM batches"
)
_IN_ORDER = "ORDER BY step, submission"


def read_batches(items_path: Path) -> list[SubmittedBatch]:
    """A run's batches for ``pipeline show``, through a read-only connection: showing a run
    never migrates or writes its files (a run without batches has no table yet)."""
    if not items_path.exists():
        return []
    uri = f"{items_path.resolve().as_uri()}?mode=ro"
    try:
        with contextlib.closing(sqlite3.connect(uri, uri=True)) as db:
            return _batches(db.execute(f"{_SELECT_BATCHES} {_IN_ORDER}").fetchall())
    except sqlite3.Error:  # an older run without the table, or a damaged file: no batches
        return []


def _batches(rows: Iterable[tuple[Any, ...]]) -> list[SubmittedBatch]:
    return [
        SubmittedBatch(
            step=name,
            submission=submission,
            batch_id=batch_id,
            status=status,
            requests=requests,
            counts=json.loads(counts) if counts else {},
            submitted_at=submitted_at,
        )
        for name, submission, batch_id, status, requests, counts, submitted_at in rows
    ]


async def _committed(writes: list[asyncio.Future[None]]) -> None:
    await asyncio.shield(asyncio.gather(*writes))
