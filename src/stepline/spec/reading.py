"""Reading config files as plain data, whatever they hold: the caps and the safe YAML reader.

A config (and the prompt, system and schema files it names) may come from anyone, so it is
read as data only, and refused quickly and with its line when it is too large on disk, nests
too deep, expands too far through YAML anchors and aliases (a "billion laughs", or merge keys
``<<`` that repeat each other), or carries a tag that would build a Python object
(``!!python/object/apply:os.system``). Every refusal is a ``SpecError``.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import yaml

from stepline.errors import SpecError
from stepline.spec.yaml_errors import explain

Location = tuple[str | int, ...]

MAX_CONFIG_BYTES = 1024 * 1024
MAX_STEP_FILE_BYTES = 8 * 1024 * 1024
MAX_CONFIG_VALUES = 100_000
MAX_CONFIG_DEPTH = 100
"""Caps that keep a hostile or broken config from exhausting memory or the stack: its size on
disk (a prompt, system or schema file may be larger: long prompts belong there), the number of
values it expands to once aliases are followed (a bomb is tiny on disk), and how deep its lists
and mappings nest (Python's own recursion limit would otherwise end the process's patience
with an internal error)."""

ALLOWED_TAGS = frozenset(yaml.SafeLoader.yaml_constructors) - {None} | {
    "tag:yaml.org,2002:merge",  # the << key
    "tag:yaml.org,2002:value",  # the = key
}
"""The standard YAML tags (``!!str``, ``!!int``, ``!!binary``, ``!!timestamp``...): data only."""


def read_capped(path: Path, limit: int, *, what: str, hint: str) -> str:
    """The UTF-8 text of ``path``, refusing more than ``limit`` bytes.

    Reads at most ``limit + 1`` bytes, so a device or a pipe (``-c /dev/zero``) is refused as
    quickly as a large file. ``FileNotFoundError`` is left to the caller, which knows what the
    file is for; other read errors are a ``SpecError``.
    """
    try:
        with path.open("rb") as handle:
            raw = handle.read(limit + 1)
    except FileNotFoundError:
        raise
    except OSError as exc:
        raise SpecError(f"cannot read {what} {path}: {exc.strerror or exc}") from None
    if len(raw) > limit:
        raise SpecError(f"{what} {path} is larger than {_size(limit)}", hint=hint)
    try:
        return raw.decode("utf-8")
    except UnicodeDecodeError as exc:
        line = raw[: exc.start].count(b"\n") + 1
        raise SpecError(
            f"{what} {path} is not UTF-8 text (line {line}, byte {exc.start})",
            hint="save it as UTF-8",
        ) from None


def compose(text: str, label: str) -> tuple[Any, dict[Location, int]]:
    """Parse YAML ``text`` into plain data, and the line of every value in it.

    The nodes are checked (tags, expansion, duplicate keys) before anything is constructed:
    merge keys are expanded by the constructor, so a merge bomb must be stopped first. A syntax
    error keeps PyYAML's line and column, told in words with a hint (``yaml_errors.py``).
    """
    try:
        loader = _CappedLoader(text, label)  # reads the first characters already
    except yaml.reader.ReaderError as exc:
        raise _unreadable(exc, text, label) from None
    try:
        node = loader.get_single_node()
        lines: dict[Location, int] = {}
        if node is not None:
            _index_lines(node, (), lines, label)
        data = loader.construct_document(node) if node is not None else None
    except yaml.MarkedYAMLError as exc:
        problem = explain(exc, text)
        mark = problem.mark
        where = f"{label}:{mark.line + 1}:{mark.column + 1}" if mark else label
        raise SpecError(f"{where}: invalid YAML: {problem.message}", hint=problem.hint) from None
    except yaml.reader.ReaderError as exc:
        raise _unreadable(exc, text, label) from None
    except yaml.YAMLError as exc:
        raise SpecError(f"{label}: invalid YAML: {exc}") from None
    finally:
        loader.dispose()
    return data, lines


def _unreadable(exc: yaml.reader.ReaderError, text: str, label: str) -> SpecError:
    """A control character YAML does not allow in a document (it names no line itself)."""
    line = text.count("\n", 0, exc.position) + 1
    return SpecError(
        f"{label}:{line}: invalid YAML: character U+{exc.character:04X} is not allowed in YAML "
        "(control characters must be written as escapes inside double quotes, like \\x1f)"
    )


class _CappedLoader(yaml.SafeLoader):
    """The safe loader, refusing lists and mappings nested deeper than ``MAX_CONFIG_DEPTH``.

    PyYAML composes nested nodes recursively, so the depth must be checked while composing.
    """

    def __init__(self, text: str, label: str) -> None:
        super().__init__(text)
        self._label = label
        self._depth = 0

    def compose_node(self, parent: yaml.Node | None, index: Any) -> yaml.Node | None:
        self._depth += 1
        try:
            if self._depth > MAX_CONFIG_DEPTH:
                mark = self.peek_event().start_mark  # type: ignore[no-untyped-call]
                raise SpecError(
                    f"{self._label}:{mark.line + 1}: lists and mappings nest more than "
                    f"{MAX_CONFIG_DEPTH} levels deep; refusing the config",
                    hint="a pipeline config nests a few levels; check the brackets",
                )
            return super().compose_node(parent, index)
        finally:
            self._depth -= 1


def _index_lines(
    node: yaml.Node, location: Location, lines: dict[Location, int], label: str
) -> None:
    """Record the line of every value; refuse tags that build objects, duplicate keys (YAML
    would silently keep the last), and more than ``MAX_CONFIG_VALUES`` values once aliases
    and merge keys are followed."""
    if len(lines) >= MAX_CONFIG_VALUES:
        raise SpecError(
            f"{label}: the config expands to more than {MAX_CONFIG_VALUES:,} values "
            "(through YAML anchors and aliases); refusing it",
            hint="use fewer nested aliases",
        )
    _check_tag(node, label)
    lines.setdefault(location, node.start_mark.line + 1)
    if isinstance(node, yaml.MappingNode):
        seen: set[str] = set()
        for key_node, value_node in node.value:
            key = str(key_node.value)
            if key in seen:
                raise SpecError(
                    f'{label}:{key_node.start_mark.line + 1}: key "{key}" appears twice'
                )
            seen.add(key)
            lines[location + (key,)] = key_node.start_mark.line + 1
            _check_tag(key_node, label)
            _index_lines(value_node, location + (key,), lines, label)
    elif isinstance(node, yaml.SequenceNode):
        for index, item in enumerate(node.value):
            _index_lines(item, location + (index,), lines, label)


def _check_tag(node: yaml.Node, label: str) -> None:
    if node.tag not in ALLOWED_TAGS:
        raise SpecError(
            f"{label}:{node.start_mark.line + 1}: the YAML tag {_short_tag(node.tag)} is not "
            "allowed: a config holds plain data (text, numbers, lists, mappings), never "
            "Python objects",
            hint="remove the tag; quote the value if it is meant as text",
        )


def _short_tag(tag: str) -> str:
    """``tag:yaml.org,2002:python/name:os.system`` as it was written: ``!!python/name:...``."""
    prefix = "tag:yaml.org,2002:"
    return "!!" + tag.removeprefix(prefix) if tag.startswith(prefix) else tag


def _size(limit: int) -> str:
    return f"{limit // 1024} KiB" if limit % 1024 == 0 else f"{limit:,} bytes"
