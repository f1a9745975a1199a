"""Outputs as JSON Lines: one value per line, written and read without holding the list.

A fan-out step over many items writes its output as ``steps/NN-id.jsonl``. Readers get a
``JsonLines``: iterating it streams the file, so the next fan-out step can walk millions of
items in constant memory. Its hash equals the hash of the same list as a JSON output, so a
step's identity does not depend on the format its output was stored in.
"""

from __future__ import annotations

import hashlib
import json
from collections.abc import Callable, Iterable, Iterator, Sequence
from pathlib import Path
from typing import Any, overload

from stepline.errors import RunStoreError
from stepline.hashing import HASH_TAG, canonical_json, hash_value


class RowStream:
    """A list to be written as JSON Lines, produced on demand (``rows()`` may run once)."""

    def __init__(self, rows: Callable[[], Iterable[Any]]) -> None:
        self.rows = rows


class JsonLines(Sequence[Any]):
    """A JSON Lines output file as a read-only list: iterating streams it; indexing or
    ``len`` reads it once."""

    def __init__(self, path: Path) -> None:
        self.path = path
        self._loaded: list[Any] | None = None

    def __reduce__(self) -> tuple[type[JsonLines], tuple[Path]]:
        """Pickled as its path (for a worker process), never as the rows read so far."""
        return JsonLines, (self.path,)

    def __iter__(self) -> Iterator[Any]:
        if self._loaded is not None:
            yield from self._loaded
            return
        try:
            handle = self.path.open(encoding="utf-8")
        except FileNotFoundError:
            raise RunStoreError(f"output file {self.path} is missing") from None
        with handle:
            for number, line in enumerate(handle, start=1):
                if line.strip():
                    yield _parse(line, self.path, number)

    def __len__(self) -> int:
        return len(self._list())

    @overload
    def __getitem__(self, index: int) -> Any: ...

    @overload
    def __getitem__(self, index: slice) -> list[Any]: ...

    def __getitem__(self, index: int | slice) -> Any:
        return self._list()[index]

    def __add__(self, other: Iterable[Any]) -> list[Any]:
        return [*self, *other]

    def __radd__(self, other: Iterable[Any]) -> list[Any]:
        return [*other, *self]

    def __eq__(self, other: object) -> bool:
        if isinstance(other, JsonLines | list | tuple):
            return list(self) == list(other)
        return NotImplemented

    __hash__ = None  # type: ignore[assignment]  # mutable-list semantics: not hashable

    def hash(self) -> str:
        """The hash of this list as canonical JSON, computed a line at a time."""
        digest = hashlib.sha256()
        for chunk in _canonical_chunks(self):
            digest.update(chunk)
        return HASH_TAG + digest.hexdigest()

    def _list(self) -> list[Any]:
        if self._loaded is None:
            self._loaded = [row for row in self]  # not list(self): that would ask len() first
        return self._loaded


def hash_output(value: Any) -> str:
    """The hash of an output value, whichever way it is stored."""
    return value.hash() if isinstance(value, JsonLines) else hash_value(value)


def jsonl_chunks(rows: Iterable[Any], hashed: Any) -> Iterator[bytes]:
    """Each row as a JSON line, feeding ``hashed`` (a sha256) the list's canonical JSON."""
    hashed.update(b"[")
    for number, row in enumerate(rows):
        hashed.update((b"," if number else b"") + canonical_json(row).encode("utf-8"))
        yield (json.dumps(row, ensure_ascii=False) + "\n").encode("utf-8")
    hashed.update(b"]")


def _canonical_chunks(rows: Iterable[Any]) -> Iterator[bytes]:
    yield b"["
    for number, row in enumerate(rows):
        yield (b"," if number else b"") + canonical_json(row).encode("utf-8")
    yield b"]"


def _parse(line: str, path: Path, number: int) -> Any:
    try:
        return json.loads(line)
    except json.JSONDecodeError as exc:
        raise RunStoreError(
            f"{path}:{number} is not valid JSON ({exc.msg})",
            hint="each line of a .jsonl output is one JSON value; fix the line, or re-run "
            "that step with --from-step",
        ) from None
