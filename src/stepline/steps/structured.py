"""Structured replies: parse JSON leniently about presentation, validate it strictly, and say
what is wrong in words a model can act on when it is asked to repair its reply.

Validation always happens here, locally, even where a provider offers native structured output:
the schema in the config is the contract, whichever model or server answered.
"""

from __future__ import annotations

import functools
import json
import re
from typing import Any

from stepline.hashing import canonical_json

_FENCE = re.compile(r"^\s*```[\w-]*\s*\n(.*?)\n\s*```\s*$", re.DOTALL)
MAX_SCHEMA_IN_REPAIR = 4000  # characters of schema quoted back to the model


class ReplyProblem(Exception):
    """A reply that is not the JSON the step asked for; a repair turn may fix it."""

    def __init__(self, message: str, *, path: str | None = None) -> None:
        super().__init__(message)
        self.message = message
        self.path = path


def parse_json_reply(text: str) -> Any:
    """Parse a reply as JSON, tolerating a surrounding Markdown code fence."""
    match = _FENCE.match(text)
    return json.loads(match.group(1) if match else text)


def structured_value(text: str, schema: dict[str, Any] | None) -> Any:
    """The reply's JSON value, checked against ``schema``; ``ReplyProblem`` says what is wrong."""
    try:
        value = parse_json_reply(text)
    except json.JSONDecodeError as exc:
        raise ReplyProblem(
            f"the reply is not JSON ({exc.msg} at line {exc.lineno} column {exc.colno})"
        ) from None
    if schema is not None:
        _check(value, schema)
    return value


def _check(value: Any, schema: dict[str, Any]) -> None:
    problem = schema_problem(value, schema)
    if problem is not None:
        raise ReplyProblem(f"the reply {problem.message}", path=problem.path)


def schema_problem(value: Any, schema: dict[str, Any]) -> ReplyProblem | None:
    """What is wrong with ``value`` under ``schema`` ("does not match the schema at /path:
    ..."), the first problem by path; None when it matches. Also for outputs a person edited."""
    errors = sorted(
        _validator(canonical_json(schema)).iter_errors(value),
        key=lambda error: [_path_order(part) for part in error.absolute_path],
    )
    if not errors:
        return None
    first = errors[0]
    path = "/" + "/".join(str(part) for part in first.absolute_path)
    more = f" (and {len(errors) - 1} more problem(s))" if len(errors) > 1 else ""
    return ReplyProblem(f"does not match the schema at {path}: {first.message}{more}", path=path)


def _path_order(part: str | int) -> tuple[int, int, str]:
    """Sort array indexes as numbers (``/items/2`` before ``/items/10``), before keys."""
    return (0, part, "") if isinstance(part, int) else (1, 0, part)


@functools.lru_cache(maxsize=64)
def _validator(schema_json: str) -> Any:
    """A compiled validator per distinct schema (fan-out validates thousands of replies)."""
    import jsonschema  # only pipelines with schemas pay for the import

    schema = json.loads(schema_json)
    cls = jsonschema.validators.validator_for(schema)
    return cls(schema, format_checker=cls.FORMAT_CHECKER)


def repair_request_text(problem: ReplyProblem, schema: dict[str, Any] | None) -> str:
    """What we tell the model after a reply we could not use."""
    text = (
        f"Your reply could not be used: {problem.message}.\n"
        "Reply again with only the corrected JSON, no other text."
    )
    if schema is not None:
        quoted = json.dumps(schema, ensure_ascii=False)
        if len(quoted) <= MAX_SCHEMA_IN_REPAIR:
            text += f"\nThe JSON must match this JSON Schema:\n{quoted}"
    return text
