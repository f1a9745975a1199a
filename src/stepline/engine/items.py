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
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Protocol

from stepline.context import InputData, Item
from stepline.errors import StepFailed
from stepline.hashing import hash_value
from stepline.spec import StepBase
from stepline.steps.base import item_context
from stepline.store.jsonl import JsonLines
from stepline.templates import evaluate, render, truthy


class ItemSource(Protocol):
    """What a fan-out step's items are read from: the run's input and the template context
    (a step's environment, or what a dry run knows before anything runs)."""

    @property
    def input(self) -> InputData: ...

    def template_context(self) -> dict[str, Any]: ...


@dataclass(frozen=True)
class ResolvedItems:
    """A fan-out step's items: how many run (groups, with ``group_size``), how many its
    ``filter`` left out, and the items themselves (read lazily, in order; each keeps its
    position in the ``for_each`` list)."""

    count: int
    filtered: int
    items: Generator[Item]


def resolve_items(step: StepBase, env: ItemSource) -> ResolvedItems:
    """The items of ``step`` that its ``filter`` keeps, with their stable keys, in order.

    Two passes over the values: the first asks the filter, counts the items and refuses
    duplicate keys (before any item runs), the second hands them out. Keys are checked in a
    temporary on-disk table, and the input sources are read a line at a time, so neither
    pass holds the items in memory. An item keeps its position in the list (``item_index``),
    so leaving one out never changes another's.
    """
    values = _item_values(step, env)
    seen = SeenKeys()
    try:
        count, filtered = _check_keys(step, env, values(), seen)
    except BaseException:
        seen.close()
        raise

    def keyed() -> Generator[Item]:
        # The keys the first pass rendered, read back in order: rendering each twice was a
        # good part of a large step's start (and of a resume's time to its first request).
        with contextlib.closing(seen):
            kept = seen.in_order()
            position, key = next(kept, (None, ""))
            for index, value in enumerate(values()):
                if index == position:
                    yield Item(value, index, key)
                    position, key = next(kept, (None, ""))

    if step.group_size is not None:
        groups = -(-count // step.group_size)  # rounded up
        return ResolvedItems(groups, filtered, grouped(keyed(), step.group_size))
    return ResolvedItems(count, filtered, keyed())


def grouped(items: Generator[Item], size: int) -> Generator[Item]:
    """``items`` ``size`` at a time, each group one item: its value the members' values, its
    index the group's number, its key ``first..last`` of the members' keys (unique, since
    theirs are and groups never overlap)."""
    try:
        for number, members in enumerate(_chunks(items, size)):
            key = members[0].key if len(members) == 1 else f"{members[0].key}..{members[-1].key}"
            yield Item([member.value for member in members], number, key)
    finally:
        items.close()  # a step that stops early closes the input with it


def _chunks(items: Iterator[Item], size: int) -> Iterator[list[Item]]:
    chunk: list[Item] = []
    for item in items:
        chunk.append(item)
        if len(chunk) == size:
            yield chunk
            chunk = []
    if chunk:
        yield chunk


def _check_keys(
    step: StepBase, env: ItemSource, values: Iterable[Any], seen: SeenKeys
) -> tuple[int, int]:
    """Count the items the filter keeps and those it leaves out, remembering the kept ones'
    keys; fail naming the duplicates if any repeats."""
    duplicates: list[str] = []
    count = filtered = 0
    base = env.template_context()  # the same for every item; only the item's names change
    for index, value in enumerate(values):
        if step.filter is not None and not keeps(step, base, value, index):
            filtered += 1
            continue
        count += 1
        key = item_key(step, base, value, index)
        first = seen.add(key, index)
        if first is not None:
            duplicates.append(f'"{key}" (items {first + 1} and {index + 1})')
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
    return count, filtered


def keeps(step: StepBase, base: dict[str, Any], value: Any, index: int) -> bool:
    """Whether ``step``'s ``filter`` keeps the item (``item`` and ``item_index`` over
    ``base``, the step's template context); false words count as false, as in ``when``."""
    assert step.filter is not None
    context = {**base, "item": value, "item_index": index}
    result = evaluate(step.filter, context, where=f'step "{step.id}" filter (item {index + 1})')
    return truthy(result)


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

    def in_order(self) -> Iterator[tuple[int, str]]:
        """The positions and keys in order, read from disk as they are consumed."""
        for position, key in self._db.execute("SELECT position, key FROM keys ORDER BY position"):
            yield int(position), key

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
