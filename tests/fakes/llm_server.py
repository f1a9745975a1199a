"""A fake LLM HTTP server that speaks the real Anthropic and OpenAI wire formats.

Why a real HTTP server instead of mocking the SDK: stepline talks to providers through the
official ``anthropic`` SDK (and OpenAI-compatible clients). Mocking at the Python level would
skip exactly the parts that break in production -- SSE parsing, status-code to exception
mapping, ``retry-after`` handling, connection drops, headers the SDK adds. This fake listens on
``127.0.0.1`` on a random free port and the real SDK is pointed at it with ``base_url``, so the
whole client stack runs for real.

Usage::

    with FakeLLMServer() as server:
        server.script(ErrorReply.rate_limited(retry_after=0), Reply(text="hello"))
        client = anthropic.Anthropic(api_key="test-key", base_url=server.base_url)
        ...
        assert server.count("/v1/messages") == 2

How a request is answered, in order:

1. Protocol checks the real API performs (unknown path -> 404; Anthropic: missing API key ->
   401, missing ``model``/``max_tokens``/``messages`` -> 400, a setting the model refuses,
   per :mod:`tests.fakes.anthropic_models` -> 400). These do not consume scripted
   responses, so a script describes only what the "model" does.
2. The script queue (:meth:`FakeLLMServer.script`), first in first out.
3. Routing rules (:meth:`FakeLLMServer.when`), first matching rule wins.
4. :attr:`FakeLLMServer.responder` (default: :func:`echo_responder`).

Every request, including rejected ones, is appended to :attr:`FakeLLMServer.requests`.

Two Anthropic features beyond plain Messages calls are simulated, so that code using them can be
tested against the real SDK:

- **Message Batches** (``/v1/messages/batches``): create, retrieve, results, cancel. Each
  request in a batch is answered at creation time by the same machinery as a live call (steps
  2-4 above) and recorded in :attr:`FakeLLMServer.batch_requests`, not in ``requests``. The
  batch then stays ``in_progress`` for :attr:`FakeLLMServer.batch_processing_time` seconds.
  :meth:`FakeLLMServer.script_batch_api` makes the batch endpoints themselves fail.
  See :class:`FakeBatch`.
- **Prompt caching**: a request whose content blocks carry ``cache_control`` reports
  ``cache_creation_input_tokens`` the first time a prefix is seen and
  ``cache_read_input_tokens`` afterwards (see :attr:`FakeLLMServer.simulate_prompt_cache`).

And one thing the models do unasked: a model that thinks by default (the Claude 5.x models, per
:func:`tests.fakes.anthropic_models.default_thinking`) answers a request that leaves thinking to
it with a thinking block before the text, as the real API does, even where the script says only
``Reply(text=...)``. Its tokens (:attr:`FakeLLMServer.default_thinking_tokens`) are billed as
output and count against ``max_tokens``: a ``max_tokens`` they fill gets a reply of thinking
alone, cut off (``stop_reason: "max_tokens"``). ``Reply(thinking="")`` or
:attr:`FakeLLMServer.think_by_default` ``= False`` opts out.

The server uses only the standard library so that it cannot drift with, or depend on, the
client stack under test.
"""

from __future__ import annotations

import base64
import contextlib
import hashlib
import json
import math
import re
import socket
import sys
import threading
import time
import uuid
from collections import deque
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field, replace
from datetime import UTC, datetime
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from types import TracebackType
from typing import Any, Literal, TypeAlias
from urllib.parse import urlsplit

from tests.fakes.anthropic_models import default_thinking
from tests.fakes.anthropic_models import refusal as model_refusal

__all__ = [
    "ANTHROPIC_BATCHES_PATH",
    "ANTHROPIC_COUNT_TOKENS_PATH",
    "ANTHROPIC_MESSAGES_PATH",
    "DEFAULT_THINKING",
    "OPENAI_CHAT_PATH",
    "BatchExpired",
    "Disconnect",
    "ErrorReply",
    "FakeBatch",
    "FakeLLMServer",
    "RecordedRequest",
    "Reply",
    "Responder",
    "Response",
    "ResponseSpec",
    "StreamError",
    "counted_tokens",
    "echo_responder",
    "iter_sse_events",
]

ANTHROPIC_MESSAGES_PATH = "/v1/messages"
ANTHROPIC_COUNT_TOKENS_PATH = "/v1/messages/count_tokens"
ANTHROPIC_BATCHES_PATH = "/v1/messages/batches"
OPENAI_CHAT_PATH = "/v1/chat/completions"

#: The HTTP status the real Anthropic API uses for each error type. Used when a failure has to be
#: expressed as a plain HTTP error (a :class:`StreamError` answered to a non-streaming request).
ANTHROPIC_STATUS_FOR_ERROR_TYPE: dict[str, int] = {
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

#: Anthropic ``stop_reason`` -> OpenAI ``finish_reason``. Unknown values pass through unchanged.
OPENAI_FINISH_REASON: dict[str, str] = {
    "end_turn": "stop",
    "stop_sequence": "stop",
    "max_tokens": "length",
    "tool_use": "tool_calls",
    "refusal": "content_filter",
}


# --------------------------------------------------------------------------------------------
# Response specifications
# --------------------------------------------------------------------------------------------


@dataclass
class Reply:
    """One successful completion.

    Token counts are given in Anthropic terms (``input_tokens`` excludes cached tokens). On the
    OpenAI endpoint ``prompt_tokens`` is ``input_tokens + cache_read_input_tokens`` and
    ``prompt_tokens_details.cached_tokens`` is ``cache_read_input_tokens``, matching OpenAI's
    convention that cached tokens are part of the prompt total.
    """

    text: str = "ok"
    #: Anthropic ``stop_reason``; mapped for OpenAI via :data:`OPENAI_FINISH_REASON`.
    stop_reason: str = "end_turn"
    input_tokens: int = 10
    output_tokens: int = 5
    #: ``None`` echoes the request's ``model``, as the real APIs do.
    model: str | None = None
    #: Anthropic only: emitted as a ``thinking`` content block *before* the text block (and
    #: its tokens are taken to be in ``output_tokens``). ``None``: what the model does unasked
    #: (see the module docstring: a default thinking block on the 5.x models, none before);
    #: ``""``: no thinking block. A reply cut off at ``max_tokens`` with thinking and no text
    #: has no text block.
    thinking: str | None = None
    #: Anthropic only: ``"omitted"`` sends the thinking block with an empty ``thinking`` text
    #: (and its signature), as with the request's ``thinking.display: "omitted"``.
    thinking_display: Literal["summarized", "omitted"] = "summarized"
    cache_creation_input_tokens: int = 0
    #: The part of ``cache_creation_input_tokens`` written with the 1-hour lifetime
    #: (``cache_control: {"ttl": "1h"}``), reported under ``usage.cache_creation``.
    cache_creation_1h_input_tokens: int = 0
    cache_read_input_tokens: int = 0
    #: Seconds to wait before answering (concurrency and timeout tests). Cut short by ``stop()``.
    delay: float = 0.0
    #: Streaming only: seconds to wait before each thinking and text delta, after the status
    #: line and ``message_start`` have gone out (a slow stream: progress, interrupts, read
    #: timeouts mid-body). Ignored for non-streaming requests. Cut short by ``stop()``.
    chunk_delay: float = 0.0
    #: Streaming only: how many text deltas the reply is split into.
    chunks: int = 3


@dataclass
class ErrorReply:
    """An HTTP error carrying the provider's real error body.

    Anthropic error types: ``invalid_request_error`` (400), ``authentication_error`` (401),
    ``permission_error`` (403), ``not_found_error`` (404), ``request_too_large`` (413),
    ``rate_limit_error`` (429), ``api_error`` (500), ``overloaded_error`` (529). The status is not
    derived from the type, so tests can also build deliberately odd combinations.
    """

    status: int = 500
    type: str = "api_error"
    message: str = "Internal server error"
    #: Extra response headers, e.g. ``{"retry-after": "2"}`` or ``{"retry-after-ms": "10"}``.
    headers: dict[str, str] = field(default_factory=dict)
    #: Seconds to wait before answering.
    delay: float = 0.0

    @classmethod
    def rate_limited(
        cls, retry_after: float | None = None, message: str = "Rate limited"
    ) -> ErrorReply:
        """A 429 ``rate_limit_error``, optionally with a ``retry-after`` header (seconds)."""
        headers = {} if retry_after is None else {"retry-after": _format_seconds(retry_after)}
        return cls(status=429, type="rate_limit_error", message=message, headers=headers)

    @classmethod
    def overloaded(cls, message: str = "Overloaded") -> ErrorReply:
        """A 529 ``overloaded_error``, as Anthropic returns under load."""
        return cls(status=529, type="overloaded_error", message=message)


@dataclass
class StreamError:
    """Streaming only: send ``partial_text`` as text deltas, then an SSE ``error`` event.

    This is how the real Anthropic API reports failures that happen after the ``200`` status
    line has been sent (typically ``overloaded_error``). Answered to a *non-streaming* request,
    it degrades to the equivalent :class:`ErrorReply` (status from
    :data:`ANTHROPIC_STATUS_FOR_ERROR_TYPE`), so a responder does not need to know which mode
    the client uses.
    """

    partial_text: str = "par"
    type: str = "overloaded_error"
    message: str = "Overloaded"

    def as_error_reply(self) -> ErrorReply:
        """The same failure, as a non-streaming request would see it."""
        status = ANTHROPIC_STATUS_FOR_ERROR_TYPE.get(self.type, 500)
        return ErrorReply(status=status, type=self.type, message=self.message)


@dataclass
class Disconnect:
    """Close the connection without a (complete) response; the client sees a connection error.

    With ``partial_text`` set and a streaming request, the status line, headers and some text
    deltas are sent first and the connection is then dropped mid-body -- a network failure in
    the middle of a stream, as opposed to :class:`StreamError`, which is a clean protocol-level
    error event. For non-streaming requests ``partial_text`` is ignored.
    """

    partial_text: str | None = None


@dataclass
class BatchExpired:
    """Batch requests only: the request was not processed before its batch expired.

    The real API expires whatever is unprocessed 24 hours after a batch was created; this lets
    a test produce that outcome (result ``{"type": "expired"}``) without waiting. Answered to a
    live ``/v1/messages`` call it is a mistake in the test: the call gets a 500 and the
    mistake lands in :attr:`FakeLLMServer.errors`.
    """


Response: TypeAlias = Reply | ErrorReply | StreamError | Disconnect | BatchExpired
#: What a live (non-batch) request can be answered with.
_LiveResponse: TypeAlias = Reply | ErrorReply | StreamError | Disconnect
Responder: TypeAlias = Callable[["RecordedRequest"], Response]
#: What :meth:`FakeLLMServer.script` and :meth:`FakeLLMServer.when` accept: a fixed response, or
#: a responder called with the request (for answers that depend on it).
ResponseSpec: TypeAlias = Response | Responder


# --------------------------------------------------------------------------------------------
# Recorded requests
# --------------------------------------------------------------------------------------------


def _content_text(content: Any) -> str:
    """Text of a message ``content`` that is either a string or a list of blocks/parts.

    Both Anthropic content blocks and OpenAI content parts use ``{"type": "text", "text": ...}``
    for text; other block types (images, tool results) are ignored. Multiple text blocks are
    joined with newlines.
    """
    if isinstance(content, str):
        return content
    if isinstance(content, list):
        return "\n".join(
            block["text"]
            for block in content
            if isinstance(block, dict)
            and block.get("type") == "text"
            and isinstance(block.get("text"), str)
        )
    return ""


def counted_tokens(body: dict[str, Any]) -> int:
    """What the fake token-counting endpoint answers: one token per word, plus 3 per message.

    Deliberately unlike stepline's characters-per-token heuristic, so a test can tell which
    of the two produced an estimate.
    """
    system = body.get("system")
    words = len(_content_text(system).split()) if system else 0
    messages = body.get("messages") or []
    for message in messages:
        if isinstance(message, dict):
            words += len(_content_text(message.get("content")).split()) + 3
    return words


@dataclass
class RecordedRequest:
    """One HTTP request as received by the fake, for assertions in tests."""

    path: str
    #: Header names are lower-cased; values are exactly as sent (including API keys).
    headers: dict[str, str]
    #: The parsed JSON body; ``{}`` if the body was empty or not a JSON object.
    body: dict[str, Any]
    method: str = "POST"
    #: The raw query string (without ``?``), usually empty.
    query: str = ""
    #: Wall-clock time (``time.time()``) when the request was fully read.
    received_at: float = field(default_factory=time.time)
    #: For a request inside a Message Batch: its ``custom_id`` (``None`` for live calls).
    custom_id: str | None = None

    @property
    def model(self) -> str | None:
        """The requested model, if any."""
        model = self.body.get("model")
        return model if isinstance(model, str) else None

    @property
    def stream(self) -> bool:
        """Whether the client asked for a streaming response."""
        return self.body.get("stream") is True

    @property
    def messages(self) -> list[dict[str, Any]]:
        """The request's ``messages`` list (empty if absent or malformed)."""
        messages = self.body.get("messages")
        if not isinstance(messages, list):
            return []
        return [m for m in messages if isinstance(m, dict)]

    @property
    def prompt(self) -> str:
        """Text of the last ``user`` message (``""`` if there is none).

        Content may be a plain string or a list of blocks, for both providers.
        """
        for message in reversed(self.messages):
            if message.get("role") == "user":
                return _content_text(message.get("content"))
        return ""

    @property
    def system(self) -> str | None:
        """The system prompt, or ``None`` if the request has none.

        The top-level ``system`` (Anthropic; string or list of text blocks) if present,
        otherwise the ``system``/``developer`` role messages joined with newlines (OpenAI, and
        the ``SystemMessageParam`` messages that anthropic SDK 2.x also accepts).
        """
        if "system" in self.body:
            return _content_text(self.body["system"])
        parts = [
            _content_text(m.get("content"))
            for m in self.messages
            if m.get("role") in ("system", "developer")
        ]
        return "\n".join(parts) if parts else None


def echo_responder(request: RecordedRequest) -> Response:
    """The default responder: ``Reply(text="echo: " + first 40 characters of the prompt)``."""
    return Reply(text="echo: " + request.prompt[:40])


@dataclass
class _Rule:
    """A routing rule registered with :meth:`FakeLLMServer.when`."""

    predicate: Callable[[RecordedRequest], bool]
    responses: deque[ResponseSpec]


# --------------------------------------------------------------------------------------------
# Small helpers
# --------------------------------------------------------------------------------------------


def _format_seconds(seconds: float) -> str:
    """``2`` rather than ``2.0`` for whole seconds, as servers send them."""
    return str(int(seconds)) if float(seconds).is_integer() else str(seconds)


def _new_id(prefix: str) -> str:
    return prefix + uuid.uuid4().hex[:24]


def _chunks(text: str, parts: int = 3) -> list[str]:
    """Split ``text`` into at most ``parts`` non-empty pieces (none for empty text).

    Several deltas per block make sure clients really concatenate them instead of keeping the
    last one.
    """
    if not text:
        return []
    size = max(1, math.ceil(len(text) / parts))
    return [text[i : i + size] for i in range(0, len(text), size)]


def _signature(thinking: str) -> str:
    """A stable, opaque-looking stand-in for a thinking block's signature."""
    return base64.b64encode(hashlib.sha256(thinking.encode()).digest()).decode()


#: The thinking a model writes unasked (its tokens: :attr:`FakeLLMServer.default_thinking_tokens`).
DEFAULT_THINKING = "The notes ask for an answer; weigh what they say, then answer briefly."


def _thinks(reply: Reply) -> bool:
    return bool(reply.thinking)


def _has_text_block(reply: Reply) -> bool:
    """False for a reply cut off while still thinking: the API sends no empty text block."""
    return not (_thinks(reply) and not reply.text and reply.stop_reason == "max_tokens")


def _shown_thinking(reply: Reply) -> str:
    return "" if reply.thinking_display == "omitted" else reply.thinking or ""


def _think_first(
    reply: Reply, display: Literal["summarized", "omitted"], max_tokens: Any, tokens: int
) -> Reply:
    """``reply`` after ``tokens`` of thinking, thinking and text together within ``max_tokens``.

    Thinking that fills ``max_tokens`` leaves no text; thinking that leaves less room than the
    text needs cuts the text (a share of its characters) and the reply ends at ``max_tokens``.
    """
    thought = replace(
        reply,
        thinking=DEFAULT_THINKING,
        thinking_display=display,
        output_tokens=tokens + reply.output_tokens,
    )
    if not isinstance(max_tokens, int) or thought.output_tokens <= max_tokens:
        return thought
    room = max(0, max_tokens - tokens)
    kept = len(reply.text) * room // reply.output_tokens if reply.output_tokens else 0
    return replace(
        thought, text=reply.text[:kept], stop_reason="max_tokens", output_tokens=max_tokens
    )


def _sse(event: str, data: dict[str, Any]) -> bytes:
    """One Anthropic-style SSE event: ``event: NAME`` and a JSON ``data`` line."""
    return f"event: {event}\ndata: {json.dumps(data)}\n\n".encode()


def _sse_data(data: dict[str, Any] | str) -> bytes:
    """One OpenAI-style SSE event: a ``data`` line only."""
    payload = data if isinstance(data, str) else json.dumps(data)
    return f"data: {payload}\n\n".encode()


def _anthropic_error_body(type_: str, message: str, request_id: str) -> dict[str, Any]:
    return {
        "type": "error",
        "error": {"type": type_, "message": message},
        "request_id": request_id,
    }


def _openai_error_body(type_: str, message: str) -> dict[str, Any]:
    return {"error": {"message": message, "type": type_, "param": None, "code": None}}


class _ClientGone(Exception):
    """The client closed the connection while we were writing (e.g. it timed out)."""


# --------------------------------------------------------------------------------------------
# Prompt caching
# --------------------------------------------------------------------------------------------


def _cache_prefix(body: dict[str, Any]) -> list[tuple[str, str]] | None:
    """The ``(where, text)`` pairs a request asks to cache, or ``None`` if it marks nothing.

    Blocks are taken in the order the API builds its prompt -- ``system`` first, then each
    message's content -- and the prefix runs up to and including the *last* block carrying
    ``cache_control``. A plain-string ``system`` or message content counts as one unmarked text
    block: it cannot carry a marker but is still part of the prefix before a later one. Only
    text contributes (``where`` is ``"system"`` or the message role, so equal text in
    different places is a different prefix); tools and images are ignored.
    """
    blocks: list[tuple[str, Any]] = [("system", block) for block in _as_blocks(body.get("system"))]
    for message in body.get("messages") or []:
        if isinstance(message, dict):
            role = str(message.get("role"))
            blocks += [(role, block) for block in _as_blocks(message.get("content"))]
    marked = [i for i, (_, block) in enumerate(blocks) if block.get("cache_control")]
    if not marked:
        return None
    return [
        (where, block["text"])
        for where, block in blocks[: marked[-1] + 1]
        if block.get("type") == "text" and isinstance(block.get("text"), str)
    ]


def _marker_ttl(body: dict[str, Any]) -> str:
    """The lifetime the last ``cache_control`` marker asks for: ``5m`` (default) or ``1h``."""
    blocks = _as_blocks(body.get("system"))
    for message in body.get("messages") or []:
        if isinstance(message, dict):
            blocks += _as_blocks(message.get("content"))
    markers = [block["cache_control"] for block in blocks if block.get("cache_control")]
    last = markers[-1] if markers else {}
    return str(last.get("ttl", "5m")) if isinstance(last, dict) else "5m"


def _as_blocks(content: Any) -> list[dict[str, Any]]:
    """``content`` as a list of block dicts (a string becomes one text block)."""
    if isinstance(content, str):
        return [{"type": "text", "text": content}]
    if isinstance(content, list):
        return [block for block in content if isinstance(block, dict)]
    return []


# --------------------------------------------------------------------------------------------
# Message Batches
# --------------------------------------------------------------------------------------------

#: What the real API accepts as a batch request's ``custom_id``.
_CUSTOM_ID = re.compile(r"^[a-zA-Z0-9_-]{1,64}$")


def _batch_route(method: str, path: str) -> tuple[str, str | None] | None:
    """``(action, batch id)`` for a Message Batches call, or ``None`` if there is no such call.

    Actions: ``create``, ``retrieve``, ``results``, ``cancel``.
    """
    if path == ANTHROPIC_BATCHES_PATH:
        return ("create", None) if method == "POST" else None
    parts = path.removeprefix(ANTHROPIC_BATCHES_PATH + "/").split("/")
    if not path.startswith(ANTHROPIC_BATCHES_PATH + "/") or not parts[0] or len(parts) > 2:
        return None
    batch_id = parts[0]
    routes = {("GET", ""): "retrieve", ("GET", "results"): "results", ("POST", "cancel"): "cancel"}
    action = routes.get((method, parts[1] if len(parts) == 2 else ""))
    return None if action is None else (action, batch_id)


def _batch_body_problem(body: dict[str, Any], max_requests: int) -> str | None:
    """Why a create-batch body would be refused with a 400, or ``None`` if it is valid."""
    requests = body.get("requests")
    if not isinstance(requests, list) or not requests:
        return "requests: a non-empty list of requests is required"
    if len(requests) > max_requests:
        return f"requests: a batch may hold at most {max_requests} requests, not {len(requests)}"
    seen: set[str] = set()
    for index, item in enumerate(requests):
        where = f"requests.{index}"
        if not isinstance(item, dict):
            return f"{where}: Input should be an object"
        custom_id = item.get("custom_id")
        if not isinstance(custom_id, str) or not _CUSTOM_ID.match(custom_id):
            return f"{where}.custom_id: String should match pattern '{_CUSTOM_ID.pattern}'"
        if custom_id in seen:
            return f"{where}.custom_id: {custom_id!r} is used twice; custom_id must be unique"
        seen.add(custom_id)
        params = item.get("params")
        if not isinstance(params, dict):
            return f"{where}.params: Field required"
        for name in ("model", "max_tokens", "messages"):
            if name not in params:
                return f"{where}.params.{name}: Field required"
        if not isinstance(params["messages"], list) or not params["messages"]:
            return f"{where}.params.messages: at least one message is required"
    return None


def _batch_result(response: Response, request: RecordedRequest) -> dict[str, Any]:
    """A batch request's ``result`` object for a response chosen by the usual machinery.

    Failures that only make sense on a live connection (a mid-stream error, a dropped
    connection) become ``api_error``: inside a batch, the API reports them as errored results.
    """
    if isinstance(response, Reply):
        return {"type": "succeeded", "message": _anthropic_message(request, response)}
    if isinstance(response, BatchExpired):
        return {"type": "expired"}
    if isinstance(response, ErrorReply):
        error = {"type": response.type, "message": response.message}
    elif isinstance(response, StreamError):
        error = {"type": "api_error", "message": response.message}
    else:
        error = {"type": "api_error", "message": "Internal server error"}
    return {"type": "errored", "error": {"type": "error", "error": error}}


def _rfc3339(timestamp: float) -> str:
    """``2024-08-20T18:37:24.100435Z``: how the real API writes times."""
    return datetime.fromtimestamp(timestamp, UTC).strftime("%Y-%m-%dT%H:%M:%S.%fZ")


@dataclass
class FakeBatch:
    """The fake's state for one Message Batch (read it through :attr:`FakeLLMServer.batches`).

    Every request is answered when the batch is created, so ``results`` never changes; what
    changes with time is only whether the batch has *ended* (``processing_time`` elapsed, or
    canceled) and so whether the results can be seen. A canceled batch reports every request
    as canceled, even though answers were chosen: the fake has no partial progress to report.
    """

    id: str
    #: ``time.time()`` at creation.
    created_at: float
    #: Seconds the batch stays ``in_progress`` (``FakeLLMServer.batch_processing_time`` at
    #: creation).
    processing_time: float
    #: The requests, in the order they were sent (each with its ``custom_id``).
    requests: list[RecordedRequest]
    #: ``custom_id`` -> the ``result`` object chosen at creation (before any cancel).
    results: dict[str, dict[str, Any]]
    #: ``time.time()`` when a cancel arrived before the batch ended; ``None`` otherwise.
    cancel_initiated_at: float | None = None

    @property
    def is_canceled(self) -> bool:
        return self.cancel_initiated_at is not None

    @property
    def ended_at(self) -> float:
        """When processing ends (or ended): at cancel, else after ``processing_time``."""
        if self.cancel_initiated_at is not None:
            return self.cancel_initiated_at
        return self.created_at + self.processing_time

    def is_ended(self, now: float) -> bool:
        return self.is_canceled or now >= self.ended_at

    def final_results(self) -> list[tuple[str, dict[str, Any]]]:
        """``(custom_id, result)`` per request, in request order, as seen once ended."""
        canceled = {"type": "canceled"}
        return [
            (custom_id, dict(canceled) if self.is_canceled else result)
            for custom_id, result in self.results.items()
        ]

    def as_message_batch(
        self,
        *,
        now: float,
        base_url: str,
        unended: Literal["in_progress", "canceling"] | None = None,
    ) -> dict[str, Any]:
        """The ``MessageBatch`` object the API returns for this batch at time ``now``.

        ``unended`` renders the answer to a create or cancel call, which the real API gives
        (as ``in_progress`` or ``canceling``) before processing has ended, even for a batch
        that ends at once.
        """
        ended = self.is_ended(now) and unended is None
        counts = {"processing": 0, "succeeded": 0, "errored": 0, "canceled": 0, "expired": 0}
        if ended:
            for _, result in self.final_results():
                counts[result["type"]] += 1
        else:
            # Like the real API, counts move only when the whole batch has ended.
            counts["processing"] = len(self.results)
        status = "ended" if ended else unended or "in_progress"
        return {
            "id": self.id,
            "type": "message_batch",
            "processing_status": status,
            "request_counts": counts,
            "ended_at": _rfc3339(self.ended_at) if ended else None,
            "created_at": _rfc3339(self.created_at),
            "expires_at": _rfc3339(self.created_at + 24 * 3600),
            "cancel_initiated_at": (
                None if self.cancel_initiated_at is None else _rfc3339(self.cancel_initiated_at)
            ),
            "archived_at": None,
            "results_url": f"{base_url}{ANTHROPIC_BATCHES_PATH}/{self.id}/results"
            if ended
            else None,
        }


# --------------------------------------------------------------------------------------------
# HTTP handler
# --------------------------------------------------------------------------------------------


class _Handler(BaseHTTPRequestHandler):
    """Parses one request, asks the owning :class:`FakeLLMServer` what to do, writes it."""

    # HTTP/1.1 so the SDK's keep-alive connection pool is exercised like against the real API.
    protocol_version = "HTTP/1.1"
    # Headers and body go out in separate writes; with Nagle's algorithm on, the body waits for
    # the client's delayed ACK (~40 ms per request on Linux), which adds up across a test suite.
    disable_nagle_algorithm = True
    server: _HTTPServer

    # -- plumbing --------------------------------------------------------------------------

    def setup(self) -> None:
        super().setup()
        self.server.owner._track(self.connection, add=True)

    def finish(self) -> None:
        with contextlib.suppress(OSError):
            super().finish()
        self.server.owner._track(self.connection, add=False)

    def log_message(self, format: str, *args: Any) -> None:
        """Silence the default per-request logging to stderr; tests inspect ``requests``."""

    def do_POST(self) -> None:
        self._handle()

    def do_GET(self) -> None:
        self._handle()

    def do_PUT(self) -> None:
        self._handle()

    def do_PATCH(self) -> None:
        self._handle()

    def do_DELETE(self) -> None:
        self._handle()

    def _handle(self) -> None:
        try:
            self._dispatch()
        except _ClientGone:
            self.close_connection = True
        except (BrokenPipeError, ConnectionResetError, ConnectionAbortedError):
            self.close_connection = True

    def _read_body(self) -> bytes:
        if self.headers.get("transfer-encoding", "").lower() == "chunked":
            body = bytearray()
            while True:
                size = int(self.rfile.readline().split(b";")[0].strip() or b"0", 16)
                if size == 0:
                    # Trailer section ends with an empty line.
                    while self.rfile.readline() not in (b"\r\n", b"\n", b""):
                        pass
                    return bytes(body)
                body += self.rfile.read(size)
                self.rfile.readline()  # CRLF after each chunk
        length = int(self.headers.get("content-length") or 0)
        return self.rfile.read(length) if length > 0 else b""

    # -- dispatch --------------------------------------------------------------------------

    def _dispatch(self) -> None:
        owner = self.server.owner
        split = urlsplit(self.path)
        raw = self._read_body()
        body: dict[str, Any] = {}
        body_error: str | None = None
        if raw:
            try:
                parsed = json.loads(raw)
            except ValueError as exc:
                body_error = f"There was an error parsing the body: {exc}"
            else:
                if isinstance(parsed, dict):
                    body = parsed
                else:
                    body_error = "Request body must be a JSON object"
        request = RecordedRequest(
            path=split.path,
            headers={name.lower(): value for name, value in self.headers.items()},
            body=body,
            method=self.command,
            query=split.query,
        )
        owner._record(request)

        if self.command == "POST" and split.path == ANTHROPIC_MESSAGES_PATH:
            self._anthropic(request, body_error)
        elif self.command == "POST" and split.path == ANTHROPIC_COUNT_TOKENS_PATH:
            self._send_json(200, {"input_tokens": counted_tokens(body)})
        elif self.command == "POST" and split.path == OPENAI_CHAT_PATH:
            self._openai(request, body_error)
        elif (route := _batch_route(self.command, split.path)) is not None:
            self._batches(request, body_error, *route)
        else:
            self._send_anthropic_error(
                ErrorReply(404, "not_found_error", f"Not found: {self.command} {split.path}")
            )

    def _wait(self, delay: float) -> None:
        """Sleep ``delay`` seconds, but give up at once when the server is stopping."""
        if delay > 0 and self.server.owner._stopping.wait(delay):
            raise _ClientGone

    # -- Anthropic Messages API ------------------------------------------------------------

    def _refuse_without_key(self, request: RecordedRequest) -> bool:
        """Answer 401 and return ``True`` if the request carries no API key."""
        headers = request.headers
        if headers.get("x-api-key") or headers.get("authorization", "").startswith("Bearer "):
            return False
        # Only presence is checked: tests use sentinel keys and assert on what was sent.
        self._send_anthropic_error(
            ErrorReply(401, "authentication_error", "x-api-key header is required")
        )
        return True

    def _anthropic(self, request: RecordedRequest, body_error: str | None) -> None:
        if self._refuse_without_key(request):
            return
        if body_error is not None:
            self._send_anthropic_error(ErrorReply(400, "invalid_request_error", body_error))
            return
        for name in ("model", "max_tokens", "messages"):
            if name not in request.body:
                self._send_anthropic_error(
                    ErrorReply(400, "invalid_request_error", f"{name}: Field required")
                )
                return
        if not request.messages:
            self._send_anthropic_error(
                ErrorReply(
                    400, "invalid_request_error", "messages: at least one message is required"
                )
            )
            return
        refused = model_refusal(request.body, request.headers.get("anthropic-version"))
        if refused is not None:
            self._send_anthropic_error(ErrorReply(400, "invalid_request_error", refused))
            return

        response = self.server.owner._next_response(request)
        if isinstance(response, StreamError) and not request.stream:
            response = response.as_error_reply()
        if isinstance(response, Reply):
            response = self.server.owner._apply_prompt_cache(request, response)
            response = self.server.owner._apply_default_thinking(request, response)

        if isinstance(response, Disconnect):
            self._disconnect(request, response, self._anthropic_stream_prefix)
        elif isinstance(response, ErrorReply):
            self._wait(response.delay)
            self._send_anthropic_error(response)
        elif isinstance(response, StreamError):
            self._anthropic_stream_error(request, response)
        elif request.stream:
            self._wait(response.delay)
            self._anthropic_stream(request, response)
        else:
            self._wait(response.delay)
            self._send_json(200, _anthropic_message(request, response))

    def _anthropic_message_start(self, request: RecordedRequest, reply: Reply) -> dict[str, Any]:
        message = _anthropic_message(request, reply)
        message["content"] = []
        message["stop_reason"] = None
        # Like the real API: message_start reports a provisional output count; the total
        # arrives in message_delta and replaces it (clients must not add the two).
        message["usage"]["output_tokens"] = min(1, reply.output_tokens)
        return {"type": "message_start", "message": message}

    def _anthropic_stream_prefix(self, request: RecordedRequest, partial_text: str) -> bytes:
        """message_start, the model's default thinking if any, a text block start, a ping
        (after the first block start) and ``partial_text`` as deltas."""
        reply = self.server.owner._apply_default_thinking(request, Reply(text="", output_tokens=0))
        events = [_sse("message_start", self._anthropic_message_start(request, reply))]
        index = 0
        if _thinks(reply):
            events.append(_sse("content_block_start", _thinking_block_start(index)))
            events.append(_sse("ping", {"type": "ping"}))
            events += [
                _sse("content_block_delta", delta) for delta in _thinking_deltas(index, reply)
            ]
            events.append(_sse("content_block_stop", _block_stop(index)))
            index += 1
        events.append(
            _sse(
                "content_block_start",
                {"type": "content_block_start", "index": index, "content_block": _text_block()},
            )
        )
        if index == 0:
            events.append(_sse("ping", {"type": "ping"}))
        events += [
            _sse("content_block_delta", _text_delta(index, c)) for c in _chunks(partial_text)
        ]
        return b"".join(events)

    def _anthropic_stream(self, request: RecordedRequest, reply: Reply) -> None:
        self._start_stream()
        self._write_chunk(_sse("message_start", self._anthropic_message_start(request, reply)))
        index = 0
        pinged = False

        def ping_once() -> None:
            nonlocal pinged
            if not pinged:
                pinged = True
                self._write_chunk(_sse("ping", {"type": "ping"}))

        if _thinks(reply):
            self._write_chunk(_sse("content_block_start", _thinking_block_start(index)))
            ping_once()
            for delta in _thinking_deltas(index, reply):
                if delta["delta"]["type"] == "thinking_delta":
                    self._wait(reply.chunk_delay)
                self._write_chunk(_sse("content_block_delta", delta))
            self._write_chunk(_sse("content_block_stop", _block_stop(index)))
            index += 1

        if _has_text_block(reply):
            self._write_chunk(
                _sse(
                    "content_block_start",
                    {"type": "content_block_start", "index": index, "content_block": _text_block()},
                )
            )
            ping_once()
            for piece in _chunks(reply.text, reply.chunks):
                self._wait(reply.chunk_delay)
                self._write_chunk(_sse("content_block_delta", _text_delta(index, piece)))
            self._write_chunk(_sse("content_block_stop", _block_stop(index)))
        self._write_chunk(
            _sse(
                "message_delta",
                {
                    "type": "message_delta",
                    "delta": {"stop_reason": reply.stop_reason, "stop_sequence": None},
                    # Cumulative, as the real API sends them; clients overwrite, not add.
                    "usage": _anthropic_usage(reply),
                },
            )
        )
        self._write_chunk(_sse("message_stop", {"type": "message_stop"}))
        self._end_stream()

    def _anthropic_stream_error(self, request: RecordedRequest, error: StreamError) -> None:
        self._start_stream()
        self._write_chunk(self._anthropic_stream_prefix(request, error.partial_text))
        self._write_chunk(
            _sse(
                "error",
                {"type": "error", "error": {"type": error.type, "message": error.message}},
            )
        )
        # The real API ends the HTTP response cleanly after an error event.
        self._end_stream()

    def _send_anthropic_error(self, error: ErrorReply) -> None:
        request_id = _new_id("req_")
        self._send_json(
            error.status,
            _anthropic_error_body(error.type, error.message, request_id),
            {"request-id": request_id, **error.headers},
        )

    # -- Anthropic Message Batches API -----------------------------------------------------

    def _batches(
        self, request: RecordedRequest, body_error: str | None, action: str, batch_id: str | None
    ) -> None:
        """One Message Batches call: the key check, then a scripted failure, then the action.

        Scripted failures (:meth:`FakeLLMServer.script_batch_api`) come after the key check,
        like the script for model calls, but before validation and id lookup: they stand for
        the service failing, whatever was asked.
        """
        owner = self.server.owner
        if self._refuse_without_key(request):
            return
        failure = owner._next_batch_api_failure()
        if isinstance(failure, Disconnect):
            self._disconnect(request, failure, self._anthropic_stream_prefix)
            return
        if isinstance(failure, ErrorReply):
            self._wait(failure.delay)
            self._send_anthropic_error(failure)
            return
        if action == "create":
            self._create_batch(request, body_error)
            return
        batch = owner.batches.get(batch_id or "")
        if batch is None:
            message = f"No message batch with id {batch_id!r}"
            self._send_anthropic_error(ErrorReply(404, "not_found_error", message))
        elif action == "results":
            self._batch_results(batch)
        elif action == "cancel":
            self._send_json(200, owner._cancel_batch(batch))
        else:
            self._send_json(200, owner._message_batch(batch))

    def _create_batch(self, request: RecordedRequest, body_error: str | None) -> None:
        owner = self.server.owner
        problem = body_error or _batch_body_problem(request.body, owner.max_batch_requests)
        if problem is not None:
            self._send_anthropic_error(ErrorReply(400, "invalid_request_error", problem))
            return
        batch = owner._create_batch(request)
        answer = batch.as_message_batch(
            now=batch.created_at, base_url=owner.base_url, unended="in_progress"
        )
        self._send_json(200, answer)

    def _batch_results(self, batch: FakeBatch) -> None:
        """JSON Lines, one per request, in *reversed* request order.

        The real API promises no order; reversing (deterministic, and different from request
        order whenever there are two requests) catches clients that match by position instead
        of by ``custom_id``.
        """
        if not batch.is_ended(time.time()):
            message = (
                f"Message batch {batch.id} is still processing; its results are available once"
                " processing_status is 'ended'"
            )
            self._send_anthropic_error(ErrorReply(400, "invalid_request_error", message))
            return
        lines = [
            json.dumps({"custom_id": custom_id, "result": result}) + "\n"
            for custom_id, result in reversed(batch.final_results())
        ]
        data = "".join(lines).encode()
        self.send_response(200)
        self.send_header("Content-Type", "application/binary")
        self.send_header("Content-Length", str(len(data)))
        self.send_header("request-id", _new_id("req_"))
        self.end_headers()
        self._write(data)

    # -- OpenAI chat completions -----------------------------------------------------------

    def _openai(self, request: RecordedRequest, body_error: str | None) -> None:
        if body_error is not None:
            self._send_openai_error(ErrorReply(400, "invalid_request_error", body_error))
            return
        if "model" not in request.body:
            self._send_openai_error(
                ErrorReply(400, "invalid_request_error", "you must provide a model parameter")
            )
            return
        if not request.messages:
            self._send_openai_error(
                ErrorReply(400, "invalid_request_error", "'messages' is a required property")
            )
            return

        response = self.server.owner._next_response(request)
        if isinstance(response, StreamError) and not request.stream:
            response = response.as_error_reply()

        if isinstance(response, Disconnect):
            self._disconnect(request, response, self._openai_stream_prefix)
        elif isinstance(response, ErrorReply):
            self._wait(response.delay)
            self._send_openai_error(response)
        elif isinstance(response, StreamError):
            self._start_stream()
            self._write_chunk(self._openai_stream_prefix(request, response.partial_text))
            # OpenAI-compatible servers report mid-stream failures as a data line holding an
            # ``error`` object, and then end the stream without ``[DONE]``.
            self._write_chunk(_sse_data(_openai_error_body(response.type, response.message)))
            self._end_stream()
        elif request.stream:
            self._wait(response.delay)
            self._openai_stream(request, response)
        else:
            self._wait(response.delay)
            self._send_json(200, self._openai_completion(request, response))

    @staticmethod
    def _openai_usage(reply: Reply) -> dict[str, Any]:
        prompt_tokens = reply.input_tokens + reply.cache_read_input_tokens
        return {
            "prompt_tokens": prompt_tokens,
            "completion_tokens": reply.output_tokens,
            "total_tokens": prompt_tokens + reply.output_tokens,
            "prompt_tokens_details": {"cached_tokens": reply.cache_read_input_tokens},
        }

    def _openai_completion(self, request: RecordedRequest, reply: Reply) -> dict[str, Any]:
        return {
            "id": _new_id("chatcmpl-"),
            "object": "chat.completion",
            "created": int(time.time()),
            "model": reply.model or request.model or "unknown-model",
            "choices": [
                {
                    "index": 0,
                    "message": {"role": "assistant", "content": reply.text},
                    "finish_reason": OPENAI_FINISH_REASON.get(reply.stop_reason, reply.stop_reason),
                }
            ],
            "usage": self._openai_usage(reply),
        }

    def _openai_chunk_factory(
        self, request: RecordedRequest, model: str | None
    ) -> Callable[[list[dict[str, Any]]], dict[str, Any]]:
        """Build chunks sharing one id/created/model, as a real stream does."""
        chunk_id = _new_id("chatcmpl-")
        created = int(time.time())
        include_usage = _include_usage(request)

        def chunk(choices: list[dict[str, Any]]) -> dict[str, Any]:
            data: dict[str, Any] = {
                "id": chunk_id,
                "object": "chat.completion.chunk",
                "created": created,
                "model": model or request.model or "unknown-model",
                "choices": choices,
            }
            if include_usage:
                data["usage"] = None
            return data

        return chunk

    def _openai_stream_prefix(self, request: RecordedRequest, partial_text: str) -> bytes:
        chunk = self._openai_chunk_factory(request, None)
        events = [_sse_data(chunk([_choice({"role": "assistant", "content": ""})]))]
        events += [_sse_data(chunk([_choice({"content": c})])) for c in _chunks(partial_text)]
        return b"".join(events)

    def _openai_stream(self, request: RecordedRequest, reply: Reply) -> None:
        chunk = self._openai_chunk_factory(request, reply.model)
        self._start_stream()
        self._write_chunk(_sse_data(chunk([_choice({"role": "assistant", "content": ""})])))
        for piece in _chunks(reply.text, reply.chunks):
            self._wait(reply.chunk_delay)
            self._write_chunk(_sse_data(chunk([_choice({"content": piece})])))
        finish = OPENAI_FINISH_REASON.get(reply.stop_reason, reply.stop_reason)
        self._write_chunk(_sse_data(chunk([_choice({}, finish)])))
        if _include_usage(request):
            final = chunk([])
            final["usage"] = self._openai_usage(reply)
            self._write_chunk(_sse_data(final))
        self._write_chunk(_sse_data("[DONE]"))
        self._end_stream()

    def _send_openai_error(self, error: ErrorReply) -> None:
        self._send_json(error.status, _openai_error_body(error.type, error.message), error.headers)

    # -- wire helpers ----------------------------------------------------------------------

    def _send_json(
        self, status: int, payload: dict[str, Any], headers: dict[str, str] | None = None
    ) -> None:
        data = json.dumps(payload).encode()
        self.send_response(status)
        self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", str(len(data)))
        if "request-id" not in {k.lower() for k in (headers or {})}:
            self.send_header("request-id", _new_id("req_"))
        for name, value in (headers or {}).items():
            self.send_header(name, value)
        self.end_headers()
        self._write(data)

    def _start_stream(self) -> None:
        # Chunked transfer encoding keeps the connection reusable, as with the real API.
        self.send_response(200)
        self.send_header("Content-Type", "text/event-stream; charset=utf-8")
        self.send_header("Cache-Control", "no-cache")
        self.send_header("Transfer-Encoding", "chunked")
        self.send_header("request-id", _new_id("req_"))
        self.end_headers()
        self._flush()

    def _write_chunk(self, data: bytes) -> None:
        """Write one HTTP chunk and flush, so the client sees each event as it is produced."""
        if data:
            self._write(b"%x\r\n%s\r\n" % (len(data), data))
            self._flush()

    def _end_stream(self) -> None:
        self._write(b"0\r\n\r\n")
        self._flush()

    def _write(self, data: bytes) -> None:
        try:
            self.wfile.write(data)
        except OSError as exc:
            raise _ClientGone from exc

    def _flush(self) -> None:
        try:
            self.wfile.flush()
        except OSError as exc:
            raise _ClientGone from exc

    def _disconnect(
        self,
        request: RecordedRequest,
        disconnect: Disconnect,
        prefix: Callable[[RecordedRequest, str], bytes],
    ) -> None:
        """Drop the connection: before any response, or mid-stream after ``partial_text``."""
        if disconnect.partial_text is not None and request.stream:
            self._start_stream()
            self._write_chunk(prefix(request, disconnect.partial_text))
        self.close_connection = True
        # shutdown() rather than just close(): the FIN goes out now, not when the handler's
        # file objects are garbage collected.
        with contextlib.suppress(OSError):
            self.connection.shutdown(socket.SHUT_RDWR)


def _anthropic_message(request: RecordedRequest, reply: Reply) -> dict[str, Any]:
    """The ``Message`` object a non-streaming reply (or a succeeded batch request) carries."""
    content: list[dict[str, Any]] = []
    if _thinks(reply):
        content.append(
            {
                "type": "thinking",
                "thinking": _shown_thinking(reply),
                "signature": _signature(reply.thinking or ""),
            }
        )
    if _has_text_block(reply):
        content.append({"type": "text", "text": reply.text})
    return {
        "id": _new_id("msg_"),
        "type": "message",
        "role": "assistant",
        "model": reply.model or request.model or "unknown-model",
        "content": content,
        "stop_reason": reply.stop_reason,
        "stop_sequence": None,
        "usage": _anthropic_usage(reply),
    }


def _anthropic_usage(reply: Reply) -> dict[str, Any]:
    return {
        "input_tokens": reply.input_tokens,
        "output_tokens": reply.output_tokens,
        "cache_creation_input_tokens": reply.cache_creation_input_tokens,
        "cache_read_input_tokens": reply.cache_read_input_tokens,
        "cache_creation": {
            "ephemeral_5m_input_tokens": reply.cache_creation_input_tokens
            - reply.cache_creation_1h_input_tokens,
            "ephemeral_1h_input_tokens": reply.cache_creation_1h_input_tokens,
        },
    }


def _text_block() -> dict[str, Any]:
    return {"type": "text", "text": ""}


def _thinking_block_start(index: int) -> dict[str, Any]:
    block = {"type": "thinking", "thinking": "", "signature": ""}
    return {"type": "content_block_start", "index": index, "content_block": block}


def _thinking_deltas(index: int, reply: Reply) -> list[dict[str, Any]]:
    """The thinking as the API streams it: its text (none when omitted), then the signature."""
    deltas = [
        _delta(index, {"type": "thinking_delta", "thinking": piece})
        for piece in _chunks(_shown_thinking(reply))
    ]
    signature = {"type": "signature_delta", "signature": _signature(reply.thinking or "")}
    return [*deltas, _delta(index, signature)]


def _delta(index: int, delta: dict[str, Any]) -> dict[str, Any]:
    return {"type": "content_block_delta", "index": index, "delta": delta}


def _text_delta(index: int, text: str) -> dict[str, Any]:
    return _delta(index, {"type": "text_delta", "text": text})


def _block_stop(index: int) -> dict[str, Any]:
    return {"type": "content_block_stop", "index": index}


def _choice(delta: dict[str, Any], finish_reason: str | None = None) -> dict[str, Any]:
    return {"index": 0, "delta": delta, "logprobs": None, "finish_reason": finish_reason}


def _include_usage(request: RecordedRequest) -> bool:
    options = request.body.get("stream_options")
    return isinstance(options, dict) and options.get("include_usage") is True


class _HTTPServer(ThreadingHTTPServer):
    """``ThreadingHTTPServer`` that knows its :class:`FakeLLMServer`."""

    # Worker threads must never keep the test process alive.
    daemon_threads = True
    # A real API accepts hundreds of connections at once; the default backlog of 5 would
    # reset connections under fan-out and turn a benchmark into a test of retries.
    request_queue_size = 1024

    def __init__(self, owner: FakeLLMServer) -> None:
        self.owner = owner
        super().__init__(("127.0.0.1", 0), _Handler)

    def handle_error(self, request: Any, client_address: Any) -> None:
        """Keep tracebacks of dropped connections off stderr; record anything else.

        A non-network exception here is a bug in the fake itself; it lands in
        :attr:`FakeLLMServer.errors` (and the client sees a dropped connection).
        """
        exc = sys.exc_info()[1]
        if exc is not None and not isinstance(exc, OSError):
            self.owner._record_error(exc)


# --------------------------------------------------------------------------------------------
# Public server
# --------------------------------------------------------------------------------------------


class FakeLLMServer:
    """A fake Anthropic/OpenAI endpoint on ``127.0.0.1`` for tests. See the module docstring.

    Thread-safe: requests are handled on worker threads while the test thread scripts
    responses and inspects :attr:`requests`.
    """

    def __init__(self) -> None:
        self._lock = threading.Lock()
        #: Every request received, in arrival order, including rejected ones.
        self.requests: list[RecordedRequest] = []
        #: Exceptions raised by responders/predicates (each also answered with a 500), so a test
        #: can tell "the code under test mishandled an error" from "the test's responder broke".
        self.errors: list[BaseException] = []
        #: Answers requests when neither the script queue nor a rule applies.
        self.responder: Responder = echo_responder
        self._script: deque[ResponseSpec] = deque()
        self._rules: list[_Rule] = []
        #: Requests inside Message Batches, in the order they were answered (at batch
        #: creation). Kept apart from :attr:`requests` so ``count("/v1/messages")`` still
        #: counts live calls only.
        self.batch_requests: list[RecordedRequest] = []
        #: Seconds a new batch stays ``in_progress`` before it ends.
        self.batch_processing_time: float = 0.0
        #: Most requests one batch may hold (the real API's limit); more is a 400.
        self.max_batch_requests: int = 100_000
        #: Report cache writes and reads for requests that mark blocks with ``cache_control``
        #: (unless the chosen :class:`Reply` sets cache tokens itself).
        self.simulate_prompt_cache: bool = True
        #: Shortest prefix, in words, that is cached; shorter ones are silently not cached,
        #: as the real API does below its per-model minimum.
        self.cache_min_tokens: int = 1024
        #: Seconds a cached prefix lives after it was last written or read.
        self.prompt_cache_ttl: float = 300.0
        #: Whether a model that thinks by default does so (see the module docstring); False
        #: gives every reply only what its script says.
        self.think_by_default: bool = True
        #: Output tokens of that default thinking: few, so a small ``max_tokens`` is cut off.
        self.default_thinking_tokens: int = 40
        #: How many prefixes were written to, and read from, the simulated prompt cache.
        self.prompt_cache_writes: int = 0
        self.prompt_cache_reads: int = 0
        # prefix key -> (when written or last read, whether it lives an hour instead of ttl)
        self._prompt_cache: dict[str, tuple[float, bool]] = {}
        self._batches: dict[str, FakeBatch] = {}
        self._batch_api_script: deque[ErrorReply | Disconnect] = deque()
        self._stopping = threading.Event()
        self._connections: set[socket.socket] = set()
        self._httpd: _HTTPServer | None = None
        self._thread: threading.Thread | None = None

    # -- lifecycle -------------------------------------------------------------------------

    def start(self) -> FakeLLMServer:
        """Bind a free port and serve on a daemon thread. Returns ``self`` for chaining."""
        if self._httpd is not None:
            raise RuntimeError("FakeLLMServer already started")
        self._stopping.clear()
        self._httpd = _HTTPServer(self)
        self._thread = threading.Thread(
            target=self._httpd.serve_forever,
            # A short poll interval keeps stop() fast; serve_forever() only notices shutdown()
            # between polls.
            kwargs={"poll_interval": 0.01},
            name=f"FakeLLMServer:{self.port}",
            daemon=True,
        )
        self._thread.start()
        return self

    def stop(self) -> None:
        """Stop serving and drop open connections (idle keep-alives, delayed replies).

        Safe to call more than once.
        """
        httpd, self._httpd = self._httpd, None
        if httpd is None:
            return
        self._stopping.set()
        httpd.shutdown()
        with self._lock:
            connections = list(self._connections)
        for conn in connections:
            with contextlib.suppress(OSError):
                conn.shutdown(socket.SHUT_RDWR)
        httpd.server_close()
        if self._thread is not None:
            self._thread.join(timeout=5)
            self._thread = None

    def __enter__(self) -> FakeLLMServer:
        return self.start()

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.stop()

    @property
    def port(self) -> int:
        if self._httpd is None:
            raise RuntimeError("FakeLLMServer is not running; call start() first")
        return int(self._httpd.server_address[1])

    @property
    def base_url(self) -> str:
        """``http://127.0.0.1:PORT``: the Anthropic SDK's ``base_url``.

        OpenAI-compatible clients use :attr:`openai_base_url` (``base_url + "/v1"``).
        """
        return f"http://127.0.0.1:{self.port}"

    @property
    def openai_base_url(self) -> str:
        return self.base_url + "/v1"

    # -- scripting -------------------------------------------------------------------------

    def script(self, *responses: ResponseSpec) -> None:
        """Queue responses answered in order (FIFO) to the next model requests, any endpoint.

        Each entry is a :data:`Response` or a responder called with the request. Scripted
        responses take precedence over rules and the default responder. Calls append.
        """
        with self._lock:
            self._script.extend(responses)

    def when(self, predicate: Callable[[RecordedRequest], bool], *responses: ResponseSpec) -> None:
        """Answer requests matching ``predicate`` with ``responses``.

        The responses are used in order and the last one then repeats, so
        ``when(p, ErrorReply(...), Reply("ok"))`` means "fail once, then succeed" for matching
        requests. Rules are consulted after the script queue, first registered first.
        """
        if not responses:
            raise ValueError("when() needs at least one response")
        with self._lock:
            self._rules.append(_Rule(predicate, deque(responses)))

    def when_prompt_contains(self, needle: str, *responses: ResponseSpec) -> None:
        """:meth:`when` for the common case of routing on the last user message."""
        self.when(lambda request: needle in request.prompt, *responses)

    def script_batch_api(self, *responses: ErrorReply | Disconnect) -> None:
        """Make the next Message Batches calls (create, retrieve, results, cancel) fail.

        Each call with an API key takes one response (FIFO) before anything else happens, so
        ``script_batch_api(ErrorReply.overloaded())`` makes the next poll a 529. This queue is
        separate from :meth:`script`, which answers the model requests inside batches.
        """
        for response in responses:
            if not isinstance(response, ErrorReply | Disconnect):
                raise TypeError(
                    f"script_batch_api() takes ErrorReply or Disconnect, not {response!r}"
                )
        with self._lock:
            self._batch_api_script.extend(responses)

    def reset(self) -> None:
        """Forget requests, errors, batches and the prompt cache; clear scripts and rules.

        The :attr:`responder` and settings (``batch_processing_time``, ``cache_min_tokens``,
        ...) are left as they are. Lists are cleared in place, so references obtained earlier
        stay valid.
        """
        with self._lock:
            self.requests.clear()
            self.batch_requests.clear()
            self.errors.clear()
            self._script.clear()
            self._rules.clear()
            self._batches.clear()
            self._batch_api_script.clear()
            self._prompt_cache.clear()
            self.prompt_cache_writes = 0
            self.prompt_cache_reads = 0

    @property
    def pending(self) -> int:
        """Scripted responses not used yet (assert ``== 0`` to catch unused scripts)."""
        with self._lock:
            return len(self._script)

    # -- inspection ------------------------------------------------------------------------

    def count(self, path: str | None = None) -> int:
        """Number of requests received, optionally only those for ``path``."""
        with self._lock:
            if path is None:
                return len(self.requests)
            return sum(1 for request in self.requests if request.path == path)

    def requests_for(self, path: str) -> list[RecordedRequest]:
        """A snapshot of the requests received for ``path``."""
        with self._lock:
            return [request for request in self.requests if request.path == path]

    @property
    def last(self) -> RecordedRequest:
        """The most recent request (``IndexError`` if none)."""
        with self._lock:
            return self.requests[-1]

    @property
    def batches(self) -> dict[str, FakeBatch]:
        """A snapshot of the batches created, by id (the :class:`FakeBatch` objects are live)."""
        with self._lock:
            return dict(self._batches)

    # -- used by the handler ---------------------------------------------------------------

    def _record(self, request: RecordedRequest) -> None:
        with self._lock:
            self.requests.append(request)

    def _record_error(self, exc: BaseException) -> None:
        with self._lock:
            self.errors.append(exc)

    def _track(self, conn: socket.socket, *, add: bool) -> None:
        with self._lock:
            if add:
                self._connections.add(conn)
            else:
                self._connections.discard(conn)

    def _next_response(self, request: RecordedRequest) -> _LiveResponse:
        """The answer to a live call; a :class:`BatchExpired` here is the test's mistake."""
        response = self._next_batch_response(request)
        if not isinstance(response, BatchExpired):
            return response
        exc = TypeError("BatchExpired answers requests inside a batch, not live calls")
        self._record_error(exc)
        return ErrorReply(500, "api_error", f"FakeLLMServer responder failed: {exc!r}")

    def _next_batch_response(self, request: RecordedRequest) -> Response:
        """Pick the answer: script queue, then rules, then the responder.

        A responder that raises is answered with a 500 ``api_error`` naming the exception,
        and the exception is kept in :attr:`errors`.
        """
        try:
            spec = self._pick_spec(request)
            response = spec(request) if callable(spec) else spec
            if not isinstance(
                response, Reply | ErrorReply | StreamError | Disconnect | BatchExpired
            ):
                raise TypeError(f"responder returned {response!r}, not a response object")
            return response
        except Exception as exc:
            self._record_error(exc)
            return ErrorReply(500, "api_error", f"FakeLLMServer responder failed: {exc!r}")

    def _apply_prompt_cache(self, request: RecordedRequest, reply: Reply) -> Reply:
        """``reply`` with the cache tokens the real API would report (a copy; scripts repeat).

        Only the prefix up to the last ``cache_control`` marker is looked up, as one entry
        keyed by the model and the prefix's text; the real API also tries earlier markers.
        """
        if not self.simulate_prompt_cache or (
            reply.cache_creation_input_tokens or reply.cache_read_input_tokens
        ):
            return reply
        prefix = _cache_prefix(request.body)
        if prefix is None:
            return reply
        tokens = sum(len(text.split()) for _, text in prefix)
        if tokens < self.cache_min_tokens:
            return reply
        key = hashlib.sha256(json.dumps([request.model, prefix]).encode()).hexdigest()
        long_lived = _marker_ttl(request.body) == "1h"
        now = time.monotonic()
        with self._lock:
            written, was_long = self._prompt_cache.get(key, (None, False))
            lifetime = 3600.0 if was_long else self.prompt_cache_ttl
            is_hit = written is not None and now - written < lifetime
            self._prompt_cache[key] = (now, long_lived or (is_hit and was_long))  # refreshed
            if is_hit:
                self.prompt_cache_reads += 1
            else:
                self.prompt_cache_writes += 1
        if is_hit:
            return replace(reply, cache_read_input_tokens=tokens)
        return replace(
            reply,
            cache_creation_input_tokens=tokens,
            cache_creation_1h_input_tokens=tokens if long_lived else 0,
        )

    def _apply_default_thinking(self, request: RecordedRequest, reply: Reply) -> Reply:
        """``reply`` as a model that thinks unasked writes it (a copy); else ``reply`` itself.

        Only a reply whose script leaves thinking to the model (``thinking=None``) gets it.
        """
        display = default_thinking(request.body) if self.think_by_default else None
        if display is None or reply.thinking is not None:
            return reply
        max_tokens = request.body.get("max_tokens")
        return _think_first(reply, display, max_tokens, self.default_thinking_tokens)

    def _next_batch_api_failure(self) -> ErrorReply | Disconnect | None:
        with self._lock:
            return self._batch_api_script.popleft() if self._batch_api_script else None

    def _create_batch(self, request: RecordedRequest) -> FakeBatch:
        """Answer every request of a (validated) create call now, and keep the batch."""
        created_at = time.time()
        inner = [
            RecordedRequest(
                path=ANTHROPIC_MESSAGES_PATH,
                headers=request.headers,
                body=item["params"],
                received_at=created_at,
                custom_id=item["custom_id"],
            )
            for item in request.body["requests"]
        ]
        with self._lock:
            self.batch_requests.extend(inner)
        results: dict[str, dict[str, Any]] = {}
        for item in inner:
            refused = model_refusal(item.body, request.headers.get("anthropic-version"))
            if refused is not None:  # inside a batch, a refused request is an errored result
                results[str(item.custom_id)] = _batch_result(
                    ErrorReply(400, "invalid_request_error", refused), item
                )
                continue
            response = self._next_batch_response(item)
            if isinstance(response, Reply):
                response = self._apply_prompt_cache(item, response)
                response = self._apply_default_thinking(item, response)
            results[str(item.custom_id)] = _batch_result(response, item)
        batch = FakeBatch(
            id=_new_id("msgbatch_"),
            created_at=created_at,
            processing_time=self.batch_processing_time,
            requests=inner,
            results=results,
        )
        with self._lock:
            self._batches[batch.id] = batch
        return batch

    def _message_batch(self, batch: FakeBatch) -> dict[str, Any]:
        with self._lock:
            return batch.as_message_batch(now=time.time(), base_url=self.base_url)

    def _cancel_batch(self, batch: FakeBatch) -> dict[str, Any]:
        """Start canceling ``batch`` unless it has ended (then nothing changes, as in the API)."""
        with self._lock:
            now = time.time()
            if batch.is_ended(now):
                return batch.as_message_batch(now=now, base_url=self.base_url)
            batch.cancel_initiated_at = now
            return batch.as_message_batch(now=now, base_url=self.base_url, unended="canceling")

    def _pick_spec(self, request: RecordedRequest) -> ResponseSpec:
        with self._lock:
            if self._script:
                return self._script.popleft()
            rules = list(self._rules)
        # Predicates run outside the lock: they are test code and may be slow or re-entrant.
        for rule in rules:
            if rule.predicate(request):
                with self._lock:
                    responses = rule.responses
                    return responses.popleft() if len(responses) > 1 else responses[0]
        return self.responder


def iter_sse_events(raw: bytes) -> Iterator[tuple[str | None, str]]:
    """Split an SSE body into ``(event, data)`` pairs; for tests that read streams by hand."""
    for block in raw.decode().replace("\r\n", "\n").split("\n\n"):
        event: str | None = None
        data: list[str] = []
        for line in block.split("\n"):
            if line.startswith("event:"):
                event = line[len("event:") :].strip()
            elif line.startswith("data:"):
                data.append(line[len("data:") :].removeprefix(" "))
        if event is not None or data:
            yield event, "\n".join(data)
