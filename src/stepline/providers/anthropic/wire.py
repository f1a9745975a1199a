"""The Messages API's wire format: request bodies, replies, error bodies and batch results.

Both ways of calling the API (stepline's own HTTP client and the SDK) build requests and read
replies here, so they send the same bodies and raise the same errors. Nothing here imports the
SDK: what the direct path needs to know (the API version to send, deprecated models, and how
many tokens a model may produce unstreamed) is data stepline owns and dates in
``api-tables.json``; a test checks that the installed SDK would refuse no call it lets through.
"""

from __future__ import annotations

import datetime
import functools
import json
import re
from collections.abc import Mapping
from importlib import resources
from typing import Any

from stepline.errors import ProviderError, RetryableProviderError
from stepline.providers.base import Completion, LLMRequest, ReplyMeter, Usage
from stepline.providers.batches import COUNTED_OUTCOMES, BatchResult, BatchStatus
from stepline.providers.failures import error_body, redirect_error
from stepline.providers.retry import error_for_status

API_KEY_VARIABLE = "ANTHROPIC_API_KEY"
API_NAME = "Anthropic API"
DEFAULT_BASE_URL = "https://api.anthropic.com"
MESSAGES_PATH = "/v1/messages"

STATUS_FOR_ERROR_TYPE = {
    "invalid_request_error": 400,
    "authentication_error": 401,
    "billing_error": 402,
    "permission_error": 403,
    "not_found_error": 404,
    "request_too_large": 413,
    "rate_limit_error": 429,
    "api_error": 500,
    "timeout_error": 504,
    "overloaded_error": 529,
}
"""The HTTP status each Anthropic error type is sent with (for errors inside a stream)."""

NONSTREAMING_MAX_TOKENS = 21_333
"""Above this a call is streamed: at 128k tokens an hour, the reply could take over 10 minutes,
and the SDK refuses such calls unstreamed (idle connections that long get cut by proxies)."""

CACHE_MARKER = {"type": "ephemeral"}
CACHE_MARKER_1H = {"type": "ephemeral", "ttl": "1h"}


@functools.cache
def _api_tables() -> dict[str, Any]:
    text = resources.files(__package__).joinpath("api-tables.json").read_text()
    tables: dict[str, Any] = json.loads(text)
    return tables


def api_version() -> str:
    """The ``anthropic-version`` header to send."""
    return str(_api_tables()["api_version"])


def must_stream(request: LLMRequest) -> bool:
    """Whether the call must be streamed because its reply may take longer than ten minutes."""
    limit = _api_tables()["nonstreaming_max_tokens"].get(request.model, NONSTREAMING_MAX_TOKENS)
    return request.max_tokens > min(int(limit), NONSTREAMING_MAX_TOKENS)


def deprecation_notice(model: str, today: datetime.date | None = None) -> str | None:
    """A deprecated model's end-of-life date, as a sentence for the step's log.

    The SDK says so with a ``DeprecationWarning``, which Python hides by default; our own
    table puts the notice where a user of a run looks, and says whether the date has passed.
    """
    end_of_life = _api_tables()["deprecated"].get(model)
    if end_of_life is None:
        return None
    if end_of_life_date(end_of_life) < (today or datetime.date.today()):
        return f"model {model} was retired on {end_of_life}; migrate"
    return f"model {model} is deprecated and reaches end of life on {end_of_life}; migrate"


def end_of_life_date(text: str) -> datetime.date:
    """A date as the deprecations table writes it (``February 19th, 2026``)."""
    plain = re.sub(r"(\d+)(st|nd|rd|th)\b", r"\1", text)
    return datetime.datetime.strptime(plain, "%B %d, %Y").date()


def sdk_arguments(request: LLMRequest, timeout: float | None = None) -> dict[str, Any]:
    """The keyword arguments of the SDK's ``messages.create`` (and ``stream``) for ``request``."""
    arguments: dict[str, Any] = {"model": request.model, "max_tokens": request.max_tokens}
    arguments.update(message_fields(request))
    if request.stop:
        arguments["stop_sequences"] = list(request.stop)
    if timeout is not None:
        arguments["timeout"] = timeout
    # The SDK (2.x) no longer types sampling parameters; the wire format still takes them, and
    # a model that refuses one answers 400 with its own message. ``extra`` goes the same way.
    body = dict(request.extra)
    if request.temperature is not None:
        body["temperature"] = request.temperature
    if request.effort is not None:
        body["output_config"] = {**body.get("output_config", {}), "effort": request.effort}
    if body:
        arguments["extra_body"] = body
    return arguments


def request_body(request: LLMRequest) -> dict[str, Any]:
    """The JSON body of a Messages request (``extra`` merged in, as the SDK's ``extra_body``)."""
    arguments = sdk_arguments(request)
    extra = arguments.pop("extra_body", {})
    return {**arguments, **extra}


def message_fields(request: LLMRequest) -> dict[str, Any]:
    """``system`` and ``messages`` as the Messages API takes them, with a cache breakpoint.

    One breakpoint is enough: the provider caches everything before the marked block, so the
    marker goes on the prompt's cached first part when there is one, else on the system
    prompt. Sent this way the prompt is two text blocks; the model reads them as one text.
    """
    messages: list[dict[str, Any]] = list(request.messages())
    fields: dict[str, Any] = {"messages": messages}
    if request.system is not None:
        fields["system"] = request.system
    cached = request.cached_chars
    if cached is None:
        return fields
    if 0 < cached <= len(request.prompt):
        blocks = [_text_block(request.prompt[:cached], cache=_marker(request))]
        if cached < len(request.prompt):  # the API refuses empty text blocks
            blocks.append(_text_block(request.prompt[cached:]))
        messages[0] = {"role": "user", "content": blocks}
    elif request.system:
        fields["system"] = [_text_block(request.system, cache=_marker(request))]
    return fields


def _marker(request: LLMRequest) -> dict[str, str]:
    return CACHE_MARKER_1H if request.cache_ttl == "1h" else CACHE_MARKER


def _text_block(text: str, *, cache: dict[str, str] | None = None) -> dict[str, Any]:
    block: dict[str, Any] = {"type": "text", "text": text}
    if cache is not None:
        block["cache_control"] = cache
    return block


def completion_from_body(body: bytes | dict[str, Any]) -> Completion:
    """The parts of a Messages reply stepline keeps; a reply of another shape is retried."""
    try:
        message = json.loads(body) if isinstance(body, bytes) else body
        text = "".join(block["text"] for block in message["content"] if block.get("type") == "text")
        usage = message["usage"]
        return Completion(
            text=text,
            model=str(message["model"]),
            stop_reason=message.get("stop_reason"),
            usage=Usage(
                input_tokens=int(usage["input_tokens"]),
                output_tokens=int(usage["output_tokens"]),
                cache_write_tokens=int(usage.get("cache_creation_input_tokens") or 0),
                cache_read_tokens=int(usage.get("cache_read_input_tokens") or 0),
                cache_write_1h_tokens=int(
                    (usage.get("cache_creation") or {}).get("ephemeral_1h_input_tokens") or 0
                ),
            ),
        )
    except (ValueError, TypeError, KeyError, AttributeError) as exc:
        preview = body[:200].decode("utf-8", "replace") if isinstance(body, bytes) else "?"
        raise RetryableProviderError(
            f"{API_NAME}: the reply is not a Messages response ({type(exc).__name__}: "
            f"{exc}); it began {preview!r}"
        ) from None


def api_error(
    status: int, error: object, fallback: str, headers: Mapping[str, str]
) -> ProviderError:
    """The provider error for an error reply (or an error event inside a stream).

    ``error`` is the body's ``error`` object where it has one; its message is the API's own
    words, and ``fallback`` is said where it has none. A status below 400 means the error came
    as an event after the stream's ``200``: its type then says which status it stands for.
    """
    details = error if isinstance(error, dict) else {}
    error_type = details.get("type") if isinstance(details.get("type"), str) else None
    message = str(details["message"]) if details.get("message") else fallback
    if status < 400:
        status = STATUS_FOR_ERROR_TYPE.get(error_type or "", 500)
        text = f"{API_NAME} error during the reply ({error_type}): {message}"
    else:
        text = f"{API_NAME} {status}: {message}"
    return error_for_status(status, text, headers, key_variable=API_KEY_VARIABLE)


def error_from_reply(status: int, body: bytes, headers: Mapping[str, str]) -> ProviderError:
    """The provider error a non-2xx reply means, worded as the SDK's errors are."""
    if 300 <= status < 400:
        return redirect_error(API_NAME, status, headers)
    parsed, fallback = error_body(status, body)
    error = parsed.get("error") if isinstance(parsed, dict) else None
    return api_error(status, error, fallback, headers)


def batch_status(body: bytes) -> BatchStatus:
    """A Message Batch object (create, retrieve and cancel all answer with one)."""
    try:
        batch = json.loads(body)
        counts = batch.get("request_counts") or {}
        return BatchStatus(
            id=str(batch["id"]),
            processing_status=str(batch["processing_status"]),
            counts={name: int(counts.get(name) or 0) for name in COUNTED_OUTCOMES},
        )
    except (ValueError, TypeError, KeyError, AttributeError) as exc:
        raise RetryableProviderError(
            f"{API_NAME}: the reply is not a Message Batch ({type(exc).__name__}: {exc}); "
            f"it began {body[:200].decode('utf-8', 'replace')!r}"
        ) from None


def batch_result(line: str | bytes) -> BatchResult:
    """One line of a batch's results file."""
    try:
        entry = json.loads(line)
        custom_id, result = str(entry["custom_id"]), entry["result"]
        outcome = result["type"]
    except (ValueError, TypeError, KeyError) as exc:
        preview = line[:200] if isinstance(line, str) else line[:200].decode("utf-8", "replace")
        raise ProviderError(
            f"{API_NAME}: a batch result line is not JSON of the expected shape "
            f"({type(exc).__name__}: {exc}); it began {preview!r}"
        ) from None
    if outcome == "succeeded":
        completion = completion_from_body(result["message"])
        ReplyMeter(API_NAME).add(completion.text)
        return BatchResult(custom_id, "succeeded", completion=completion)
    if outcome == "errored":
        error = (result.get("error") or {}).get("error") or {}
        error_type = str(error.get("type") or "api_error")
        return BatchResult(
            custom_id,
            "errored",
            error=f"{API_NAME} ({error_type}): {error.get('message') or 'no message'}",
            status_code=STATUS_FOR_ERROR_TYPE.get(error_type, 500),
        )
    if outcome in ("expired", "canceled"):
        return BatchResult(custom_id, outcome)
    return BatchResult(custom_id, "errored", error=f"unknown batch result type {outcome!r}")
