"""YAML syntax errors told in a person's terms: what went wrong on the line, and what to do.

PyYAML names the token it did not expect (``expected <block end>, but found '?'``), which says
nothing to someone who indented one key by three spaces instead of four. The mistakes people
make writing a config by hand are recognised here from the kind of error and the line it
points at (a tab in the indentation, a ``key: value`` inside a plain value, an unquoted
template, a quote or bracket never closed); any other error keeps the parser's own words. The
line and column are PyYAML's, so an editor can jump to them.
"""

from __future__ import annotations

import re
from collections.abc import Callable
from dataclasses import dataclass

import yaml

QUOTE_HINT = 'put the whole value in quotes, e.g. prompt: "Summarise: the text"'
INDENT_HINT = (
    "the keys of one mapping, and the '- ' items of one list, start in the same column; "
    "indent with spaces"
)
_TEMPLATE_VALUE = re.compile(r"(^|:\s|-\s)\s*\{[{%]")


@dataclass(frozen=True)
class YamlProblem:
    """What is wrong (``message``), what to do (``hint``) and where (``mark``)."""

    message: str
    hint: str | None
    mark: yaml.Mark | None


def explain(exc: yaml.MarkedYAMLError, text: str) -> YamlProblem:
    """The problem behind ``exc`` as a person would put it, pointing where PyYAML points."""
    mark = exc.problem_mark or exc.context_mark
    for rule in _RULES:
        problem = rule(exc, text)
        if problem is not None:
            return problem
    return YamlProblem(exc.problem or exc.context or "invalid YAML", None, mark)


def _line(text: str, mark: yaml.Mark | None) -> str:
    lines = text.splitlines()
    return lines[mark.line] if mark is not None and mark.line < len(lines) else ""


def _starts_its_line(text: str, mark: yaml.Mark) -> bool:
    """Whether ``mark`` is at the first character of its line that is not indentation."""
    line = _line(text, mark)
    return len(line) - len(line.lstrip()) == mark.column


def _char_at(text: str, mark: yaml.Mark | None) -> str:
    return text[mark.index] if mark is not None and mark.index < len(text) else ""


def _unquoted_template(exc: yaml.MarkedYAMLError, text: str) -> YamlProblem | None:
    """``prompt: {{ input.text }}``: YAML reads ``{`` as the start of a mapping."""
    for mark in (exc.problem_mark, exc.context_mark):
        if _TEMPLATE_VALUE.search(_line(text, mark)):
            return YamlProblem(
                "a value that starts with { is read as a YAML mapping, so a template at the "
                "start of a value needs quotes",
                'quote the whole value, e.g. prompt: "{{ ... }} and the rest"',
                exc.problem_mark,
            )
    return None


def _tab(exc: yaml.MarkedYAMLError, text: str) -> YamlProblem | None:
    mark = exc.problem_mark
    line = _line(text, mark)
    indentation = line[: len(line) - len(line.lstrip())]
    if mark is None or ("\t" not in indentation and _char_at(text, mark) != "\t"):
        return None
    return YamlProblem(
        "a tab is used to indent this line; YAML indents with spaces only",
        "replace the tab with spaces (set your editor to insert spaces)",
        mark,
    )


def _unclosed(exc: yaml.MarkedYAMLError, text: str) -> YamlProblem | None:
    """A quote, ``[`` or ``{`` opened at the context mark and not closed where it should."""
    opened, mark = exc.context_mark, exc.problem_mark
    char = _char_at(text, opened)
    context = exc.context or ""
    if opened is None or mark is None or not char or char not in "\"'[{":
        return None
    if "quoted" not in context and "flow" not in context:
        return None
    where = f"line {opened.line + 1}, column {opened.column + 1}"
    if char in "\"'":
        if "escape" in (exc.problem or ""):
            return YamlProblem(
                'inside "double quotes" a backslash starts an escape such as \\n or \\t',
                "write \\\\ for a backslash, or use 'single quotes', where \\ is plain text",
                mark,
            )
        return YamlProblem(
            f"the {char} opened on {where} is never closed",
            f"close it with {char}, or use a block (prompt: |) for text over several lines",
            mark,
        )
    closing = "]" if char == "[" else "}"
    if opened.line == mark.line:
        return YamlProblem(
            f'this "{char}...{closing}" holds something YAML cannot read as its items',
            f'separate items with commas, and quote any item that holds {closing}, ":" or ","',
            mark,
        )
    return YamlProblem(
        f'the "{char}" opened on {where} is never closed (or an item in it lacks a comma)',
        f"close it with {closing}, or write the items one per line as '- item'",
        mark,
    )


def _mapping_value(exc: yaml.MarkedYAMLError, text: str) -> YamlProblem | None:
    """``mapping values are not allowed here``: a second ``: `` on a line, or a ``key:`` line
    indented under a line that already has a value."""
    mark = exc.problem_mark
    if mark is None or "mapping values are not allowed" not in (exc.problem or ""):
        return None
    before = _line(text, mark)[: mark.column]
    if ": " in before:
        return YamlProblem(
            'this value holds ": ", which YAML reads as the start of another key',
            QUOTE_HINT,
            mark,
        )
    return YamlProblem(
        "this line is indented deeper than the line before it, which already has a value",
        "line it up with the keys it belongs with; " + INDENT_HINT,
        mark,
    )


def _sequence_entry(exc: yaml.MarkedYAMLError, text: str) -> YamlProblem | None:
    mark = exc.problem_mark
    if mark is None or "sequence entries are not allowed" not in (exc.problem or ""):
        return None
    if _starts_its_line(text, mark):
        return YamlProblem(
            "this '- ' item is indented under a key that already has a value",
            "line it up with the other items of its list, or remove the value on the key",
            mark,
        )
    return YamlProblem(
        "a '- ' list item cannot start on the same line as its key",
        "start the list on the next line, each item indented under the key",
        mark,
    )


def _misplaced(exc: yaml.MarkedYAMLError, text: str) -> YamlProblem | None:
    """``expected <block end>``, ``did not find expected key`` / ``'-' indicator``: the parser
    met something where the mapping or list it was reading should have continued or ended."""
    mark = exc.problem_mark
    problem = exc.problem or ""
    kinds = ("expected <block end>", "did not find expected key", "did not find expected '-'")
    if mark is None or not any(kind in problem for kind in kinds):
        return None
    if _starts_its_line(text, mark):
        return YamlProblem(
            f"line {mark.line + 1} is indented differently from the lines above it "
            f"(it starts in column {mark.column + 1})",
            INDENT_HINT,
            mark,
        )
    return YamlProblem(
        "unexpected text after the value on this line",
        "quote the whole value if it is text, or move what follows to a line of its own",
        mark,
    )


def _no_colon(exc: yaml.MarkedYAMLError, text: str) -> YamlProblem | None:
    """``could not find expected ':'``: the context mark is the line that lacks its colon."""
    line = exc.context_mark
    if line is None or "could not find expected ':'" not in (exc.problem or ""):
        return None
    return YamlProblem(
        'this line has no "key: value" colon, but the mapping around it needs one',
        'write it as "key: value", or indent it under the value it continues',
        line,
    )


def _cannot_start(exc: yaml.MarkedYAMLError, text: str) -> YamlProblem | None:
    mark = exc.problem_mark
    char = _char_at(text, mark)
    if mark is None or "cannot start any token" not in (exc.problem or "") or not char:
        return None
    return YamlProblem(
        f"a plain value cannot start with {char} (YAML keeps it for itself)",
        "put the value in quotes",
        mark,
    )


def _alias(exc: yaml.MarkedYAMLError, text: str) -> YamlProblem | None:
    problem, mark = exc.problem or "", exc.problem_mark
    if "undefined alias" not in problem and "while scanning an alias" not in (exc.context or ""):
        return None
    return YamlProblem(
        "a value that starts with * is an alias, and no &anchor above has this name",
        "put the value in quotes if the * is text; else define the &anchor before it",
        mark,
    )


def _more_documents(exc: yaml.MarkedYAMLError, text: str) -> YamlProblem | None:
    if "another document" not in (exc.problem or ""):
        return None
    return YamlProblem(
        "the file holds a second YAML document (after a --- line)",
        "a config is one document: remove the --- line, or the second document",
        exc.problem_mark,
    )


def _unhashable(exc: yaml.MarkedYAMLError, text: str) -> YamlProblem | None:
    if "unhashable key" not in (exc.problem or ""):
        return None
    return YamlProblem(
        "a key here is a list or a mapping; keys are plain text",
        "put the key in quotes",
        exc.problem_mark,
    )


_RULES: tuple[Callable[[yaml.MarkedYAMLError, str], YamlProblem | None], ...] = (
    _unquoted_template,  # first: its errors look like any of the others
    _tab,
    _unclosed,
    _mapping_value,
    _sequence_entry,
    _no_colon,
    _misplaced,
    _cannot_start,
    _alias,
    _more_documents,
    _unhashable,
)
