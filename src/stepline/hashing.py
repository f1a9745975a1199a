"""Tagged content hashes (``sha256:<hex>``) and the canonical JSON they are computed over.

The tag lets a later version change the algorithm and still recognise old hashes. Values are
hashed through canonical JSON (sorted keys, no whitespace) so that re-indenting an output file
by hand does not count as an edit, while changing any value does.
"""

from __future__ import annotations

import hashlib
import json
from collections.abc import Sequence
from typing import Any

HASH_TAG = "sha256:"


def as_plain_json(value: Any) -> Any:
    """``json.dumps(default=...)`` for lazy outputs: a read-only sequence (a JSON Lines
    output) is written as the list it holds; anything else is not JSON data."""
    if isinstance(value, Sequence) and not isinstance(value, str | bytes):
        return list(value)
    raise TypeError(f"Object of type {type(value).__name__} is not JSON serializable")


def canonical_json(value: Any) -> str:
    """JSON with sorted keys and no insignificant whitespace."""
    return json.dumps(value, sort_keys=True, separators=(",", ":"), ensure_ascii=False)


def hash_bytes(data: bytes) -> str:
    return HASH_TAG + hashlib.sha256(data).hexdigest()


def hash_text(text: str) -> str:
    return hash_bytes(text.encode("utf-8"))


def hash_value(value: Any) -> str:
    """Hash a JSON-compatible value by its canonical JSON."""
    return hash_text(canonical_json(value))
