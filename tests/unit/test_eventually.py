"""``eventually``: the one way tests wait for what another process or thread does."""

from __future__ import annotations

import json
from collections.abc import Iterator

import pytest

from tests.helpers import eventually


def answers(*values: object) -> Iterator[object]:
    """A condition's successive results: an exception instance is raised, a value returned."""
    yield from values
    raise AssertionError("called again after it held")


def condition_from(values: Iterator[object], calls: list[int]):
    def condition() -> object:
        calls.append(1)
        value = next(values)
        if isinstance(value, Exception):
            raise value
        return value

    return condition


def test_returns_the_value_once_the_condition_holds():
    calls: list[int] = []

    found = eventually(condition_from(answers(None, [], 0, {"id": 7}), calls))

    assert found == {"id": 7}
    assert len(calls) == 4


def test_a_timeout_names_what_was_awaited_and_the_last_value():
    with pytest.raises(AssertionError) as raised:
        eventually(lambda: [], timeout=0.05, what="the batch to be polled")

    assert "waiting for the batch to be polled" in str(raised.value)
    assert "last value: []" in str(raised.value)


def test_without_what_the_conditions_name_is_used():
    def the_file_appeared() -> bool:
        return False

    with pytest.raises(AssertionError, match="waiting for the_file_appeared; last value: False"):
        eventually(the_file_appeared, timeout=0.05)


def test_ignored_exceptions_are_retried():
    calls: list[int] = []
    half_written = json.JSONDecodeError("Expecting value", '{"a": ', 6)
    condition = condition_from(answers(FileNotFoundError("x"), half_written, "done"), calls)

    assert eventually(condition, ignoring=(FileNotFoundError, json.JSONDecodeError)) == "done"
    assert len(calls) == 3


def test_a_timeout_reports_the_last_ignored_exception():
    def read() -> str:
        raise FileNotFoundError("state.json")

    with pytest.raises(AssertionError) as raised:
        eventually(read, timeout=0.05, what="the state", ignoring=(FileNotFoundError,))

    assert "waiting for the state" in str(raised.value)
    assert "last exception: FileNotFoundError('state.json')" in str(raised.value)
    assert isinstance(raised.value.__cause__, FileNotFoundError)


def test_other_exceptions_propagate_at_once():
    calls: list[int] = []
    condition = condition_from(answers(ValueError("broken"), "never reached"), calls)

    with pytest.raises(ValueError, match="broken"):
        eventually(condition, ignoring=(FileNotFoundError,))
    assert len(calls) == 1
