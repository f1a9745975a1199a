"""Where a fan-out step's items come from, and their keys.

``for_each`` is a ``{{ expression }}`` giving a list, or ``input.lines`` / ``input.records``,
which read the input a line (or a row) at a time. Every item gets a stable key (``item_key:``,
else a hash of its value); duplicate keys fail the step before any item runs, and they are
checked in a temporary on-disk table, so neither reading nor checking holds the items in
memory.
"""

from __future__ import annotations

import contextlib
import csv
import json
import sqlite3
from collections.abc import Callable, Generator, Iterable, Iterator
from pathlib import Path
from typing import Any, Protocol

from stepline.errors import StepFailed
from stepline.hashing import hash_value
from stepline.spec import StepBase
from stepline.steps.base import InputData, Item, item_context
from stepline.store.jsonl import JsonLines
from stepline.templates import evaluate, render


class ItemSource(Protocol):
    """What a fan-out step's items are read from: the run's input and the template context
    (a step's environment, or what a dry run knows before anything runs)."""

    @property
    def input(self) -> InputData: ...

    def template_context(self) -> dict[str, Any]: ...


def resolve_items(step: StepBase, env: ItemSource) -> tuple[int, Generator[Item]]:
    """How many items the step has, and the items with their stable keys, in order.

    Two passes over the values: the first counts them and refuses duplicate keys (before any
    item runs), the second hands them out. Keys are checked in a temporary on-disk table, and
    the input sources are read a line at a time, so neither pass holds the items in memory.
    """
    values = _item_values(step, env)
    seen = SeenKeys()
    try:
        count = _check_keys(step, env, values(), seen)
    except BaseException:
        seen.close()
        raise

    def keyed() -> Generator[Item]:
        # The keys the first pass rendered, read back in order: rendering each twice was a
        # good part of a large step's start (and of a resume's time to its first request).
        with contextlib.closing(seen):
            pairs = zip(enumerate(values()), seen.in_order(), strict=True)
            for (index, value), key in pairs:
                yield Item(value, index, key)

    return count, keyed()


def _check_keys(step: StepBase, env: ItemSource, values: Iterable[Any], seen: SeenKeys) -> int:
    """Count the items, remembering their keys; fail naming the duplicates if any repeats."""
    duplicates: list[str] = []
    count = 0
    base = env.template_context()  # the same for every item; only the item's names change
    for count, value in enumerate(values, start=1):
        key = item_key(step, base, value, count - 1)
        first = seen.add(key, count - 1)
        if first is not None:
            duplicates.append(f'"{key}" (items {first + 1} and {count})')
    if duplicates:
        raise StepFailed(
            step.id,
            "duplicate item keys: "
            + ", ".join(duplicates[:5])
            + (f" and {len(duplicates) - 5} more" if len(duplicates) > 5 else ""),
            hint="set item_key: to a template unique per item, e.g. {{ item.id }}"
            if step.item_key is None
            else "make item_key unique per item",
        )
    return count


class SeenKeys:
    """The item keys met so far, on disk (SQLite's temporary file, not RAM): a million keys
    must not cost a million strings in memory."""

    def __init__(self) -> None:
        # "": a temporary file, deleted on close. Any thread may close it: a step that stops
        # early leaves the generator reading it to be finalised wherever it is collected.
        self._db = sqlite3.connect("", check_same_thread=False)
        self._db.execute("CREATE TABLE keys (position INTEGER PRIMARY KEY, key TEXT UNIQUE)")

    def add(self, key: str, position: int) -> int | None:
        """Remember ``key`` at ``position``; if it was seen before, the position it was
        first seen at."""
        try:
            self._db.execute("INSERT INTO keys VALUES (?, ?)", (position, key))
        except sqlite3.IntegrityError:
            (first,) = self._db.execute(
                "SELECT position FROM keys WHERE key = ?", (key,)
            ).fetchone()
            return int(first)
        return None

    def in_order(self) -> Iterator[str]:
        """The keys by position, read from disk as they are consumed."""
        for (key,) in self._db.execute("SELECT key FROM keys ORDER BY position"):
            yield key

    def close(self) -> None:
        self._db.close()


def _item_values(step: StepBase, env: ItemSource) -> Callable[[], Iterable[Any]]:
    """The step's values, as a function that reads them afresh each time it is called."""
    if step.for_each == "input.lines":
        return lambda: _lines(env.input.path)
    if step.for_each == "input.records":
        return lambda: _records(step, env)
    assert step.for_each is not None
    value = evaluate(step.for_each, env.template_context(), where=f'step "{step.id}" for_each')
    if not isinstance(value, list | tuple | JsonLines):  # a JsonLines streams its file
        raise StepFailed(
            step.id,
            f"for_each must give a list, but it gave {_kind(value)}",
            hint="point it at a list, e.g. {{ steps.extract.items }}",
        )
    return lambda: value


def _lines(path: Path) -> Iterator[str]:
    """The input's non-blank lines, read one at a time."""
    with path.open(encoding="utf-8") as handle:
        for line in handle:
            text = line.rstrip("\r\n")
            if text.strip():
                yield text


def _records(step: StepBase, env: ItemSource) -> Iterator[Any]:
    """The input as records: CSV rows, JSON Lines, or a JSON array (by the file's suffix,
    then by its first character). CSV and JSON Lines are read a row at a time."""
    path, name = env.input.path, env.input.name
    suffix = name.lower().rsplit(".", 1)[-1] if "." in name else ""
    if suffix == "csv":
        with path.open(encoding="utf-8", newline="") as handle:
            yield from csv.DictReader(handle)
        return
    if suffix != "jsonl" and _first_character(path) == "[" and isinstance(env.input.json, list):
        yield from env.input.json
        return
    with path.open(encoding="utf-8") as handle:
        for number, line in enumerate(handle, start=1):
            if not line.strip():
                continue
            try:
                yield json.loads(line)
            except json.JSONDecodeError as exc:
                raise StepFailed(
                    step.id,
                    f"input.records: line {number} of {name} is not JSON ({exc.msg})",
                    hint="input.records reads a JSON array, JSON Lines (one object per line) "
                    "or a .csv file",
                ) from None


def _first_character(path: Path) -> str:
    with path.open(encoding="utf-8") as handle:
        while chunk := handle.read(4096):
            stripped = chunk.lstrip()
            if stripped:
                return stripped[0]
    return ""


def item_key(step: StepBase, base: dict[str, Any], value: Any, index: int) -> str:
    """The item's key: its ``item_key`` template rendered over ``base`` (the step's template
    context) and the item, else a hash of its value."""
    if step.item_key is None:
        return hash_value(value).split(":", 1)[-1][:16]
    context = {**base, **item_context(Item(value, index, ""))}
    key = render(step.item_key, context, where=f'step "{step.id}" item_key').strip()
    if not key:
        raise StepFailed(step.id, f"item_key is empty for item {index + 1}")
    return key


def _kind(value: Any) -> str:
    if isinstance(value, dict):
        return "a mapping (use one of its lists, e.g. {{ steps.x.items }})"
    if isinstance(value, str):
        return "text"
    return f"a {type(value).__name__}"
