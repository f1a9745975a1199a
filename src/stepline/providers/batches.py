"""The batch seam: many requests sent as one job, answered within hours at half price.

A provider that has a batch API (Anthropic's Message Batches) implements ``BatchProvider``.
The engine submits a fan-out step's items with one ``custom_id`` each, keeps the batch id in
the run's ``items.sqlite`` before it first polls, and matches results back by ``custom_id``;
nothing here knows about items, steps or state.
"""

from __future__ import annotations

import hashlib
import re
from collections.abc import AsyncIterator, Iterable, Sequence
from dataclasses import dataclass, field
from typing import Literal, Protocol

from stepline.providers.base import Completion, LLMRequest

BatchOutcome = Literal["succeeded", "errored", "expired", "canceled"]
COUNTED_OUTCOMES: tuple[str, ...] = ("processing", "succeeded", "errored", "canceled", "expired")
_CUSTOM_ID = re.compile(r"^[A-Za-z0-9_-]{1,64}$")


@dataclass(frozen=True)
class BatchRequest:
    """One request of a batch and the id its result comes back under."""

    custom_id: str
    request: LLMRequest


@dataclass(frozen=True)
class BatchStatus:
    """Where a batch stands: ``in_progress``, ``canceling`` or ``ended``, and its counts (the
    provider moves requests out of ``processing`` only when the whole batch ends)."""

    id: str
    processing_status: str
    counts: dict[str, int] = field(default_factory=dict)

    @property
    def ended(self) -> bool:
        return self.processing_status == "ended"


@dataclass(frozen=True)
class BatchResult:
    """One request's result: a completion, or why there is none."""

    custom_id: str
    outcome: BatchOutcome
    completion: Completion | None = None
    error: str | None = None
    status_code: int | None = None


class BatchProvider(Protocol):
    """A provider's batch API. Errors are stepline's provider errors, as for ``complete``."""

    async def submit_batch(self, requests: Sequence[BatchRequest]) -> BatchStatus: ...

    async def batch_status(self, batch_id: str) -> BatchStatus: ...

    def batch_results(self, batch_id: str) -> AsyncIterator[BatchResult]: ...

    async def cancel_batch(self, batch_id: str) -> BatchStatus: ...


def custom_ids(keys: Iterable[str]) -> dict[str, str]:
    """A ``custom_id`` for each item key: the key itself where the API accepts it (letters,
    digits, ``_`` and ``-``, at most 64), else a hash of it; unique within one batch."""
    ids: dict[str, str] = {}
    taken: set[str] = set()
    for key in keys:
        candidate = key if _CUSTOM_ID.match(key) else "h-" + _digest(key)
        while candidate in taken:  # a literal key that equals another key's hash form
            candidate = "h-" + _digest(candidate)
        taken.add(candidate)
        ids[key] = candidate
    return ids


def _digest(text: str) -> str:
    return hashlib.sha256(text.encode("utf-8", "surrogatepass")).hexdigest()[:40]
