"""The LLM response cache: ``<workdir>/cache.sqlite``, shared by every run in the work folder.

Opened through ``store.sqlite`` (WAL, a busy timeout for several runs at once, and
``synchronous=FULL``: an entry that exists survives a crash, so a resumed run never pays twice
for a reply it already received). Keys are the caller's tagged request hashes; SQL is
parameterised.
"""

from __future__ import annotations

import json
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from stepline.store.sqlite import Database

CACHE_FILE = "cache.sqlite"

MIGRATIONS = (
    """
    CREATE TABLE responses (
        key TEXT PRIMARY KEY,
        model TEXT NOT NULL,
        completion TEXT NOT NULL,
        created_at REAL NOT NULL
    )
    """,
    "CREATE INDEX responses_created_at ON responses (created_at)",
    # 3: which pipeline step stored the entry, so a dry run can tell "key changed" from "new"
    "ALTER TABLE responses ADD COLUMN label TEXT",
    "CREATE INDEX responses_label ON responses (label)",
)


@dataclass(frozen=True)
class CacheLookup:
    """A cached completion (as a dict), or why there is none.

    ``reason`` is ``hit``, ``expired``, ``key changed`` (the same step has entries, none for
    this request: the prompt, model or settings differ) or ``no entry``.
    """

    completion: dict[str, Any] | None
    reason: str


@dataclass(frozen=True)
class CacheStats:
    entries: int
    bytes: int
    oldest: float | None
    newest: float | None


class ResponseCache:
    """Cached completions by request hash, with a time-to-live chosen at lookup."""

    def __init__(self, path: Path) -> None:
        self.path = path
        self._database = Database(
            path,
            MIGRATIONS,
            damaged_hint="delete the file; it only holds copies of replies (the runs keep theirs)",
        )
        self._connect = self._database.connect

    def get(self, key: str, *, ttl_s: float) -> dict[str, Any] | None:
        """The cached completion for ``key`` if it is younger than ``ttl_s``."""
        return self.lookup(key, ttl_s=ttl_s).completion

    def lookup(self, key: str, *, ttl_s: float, label: str | None = None) -> CacheLookup:
        """Like ``get``, saying why there is no usable entry (``label``: the asking step)."""
        if not self.path.exists():
            return CacheLookup(None, "no entry")  # a dry run creates no cache file
        with self._connect(write=False) as db:
            row = db.execute(
                "SELECT completion, created_at FROM responses WHERE key = ?", (key,)
            ).fetchone()
            if row is None:
                known = (
                    label is not None
                    and db.execute(
                        "SELECT 1 FROM responses WHERE label = ? LIMIT 1", (label,)
                    ).fetchone()
                )
                return CacheLookup(None, "key changed" if known else "no entry")
        if time.time() - row[1] > ttl_s:
            return CacheLookup(None, "expired")
        return CacheLookup(json.loads(row[0]), "hit")

    def put(
        self, key: str, model: str, completion: dict[str, Any], *, label: str | None = None
    ) -> None:
        """Store a completion; ``label`` names the step that asked (pipeline/step)."""
        with self._connect() as db:
            db.execute(
                "INSERT OR REPLACE INTO responses (key, model, completion, created_at, label) "
                "VALUES (?, ?, ?, ?, ?)",
                (key, model, json.dumps(completion, ensure_ascii=False), time.time(), label),
            )

    def delete(self, key: str) -> None:
        with self._connect() as db:
            db.execute("DELETE FROM responses WHERE key = ?", (key,))

    def stats(self) -> CacheStats:
        if not self.path.exists():
            return CacheStats(0, 0, None, None)
        with self._connect(write=False) as db:
            entries, oldest, newest = db.execute(
                "SELECT COUNT(*), MIN(created_at), MAX(created_at) FROM responses"
            ).fetchone()
        return CacheStats(entries, self.path.stat().st_size, oldest, newest)

    def clear(self) -> int:
        """Remove every entry; return how many there were."""
        return self._delete("DELETE FROM responses", ())

    def prune(self, *, older_than_s: float) -> int:
        """Remove entries older than ``older_than_s``; return how many."""
        return self._delete(
            "DELETE FROM responses WHERE created_at < ?", (time.time() - older_than_s,)
        )

    def _delete(self, sql: str, parameters: tuple[Any, ...]) -> int:
        if not self.path.exists():
            return 0
        with self._connect() as db:
            removed = db.execute(sql, parameters).rowcount
        with self._connect(write=False) as db:
            db.execute("VACUUM")  # give the space back; VACUUM cannot run in a transaction
        return int(removed)

    def close(self) -> None:
        self._database.close()
