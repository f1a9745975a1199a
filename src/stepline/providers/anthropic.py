"""Anthropic Messages API through the official SDK's async client.

The SDK is imported only when a run needs it, so ``pipeline --help`` and ``pipeline list`` stay
fast. SDK exceptions are translated here into stepline's provider errors, with the provider's
own message and, for authentication failures, the name of the variable to set.

Streaming matters for two reasons besides live progress: the SDK refuses non-streaming calls
whose ``max_tokens`` could take longer than ten minutes, and a long reply that is streamed keeps
the connection busy, so idle-connection timeouts in proxies do not cut it off. A stream can fail
after its ``200`` status line: the API then sends an SSE ``error`` event (the SDK raises an
``APIStatusError`` carrying status 200 and the error's type), or the connection drops (the SDK
lets the transport's own exception through). Both are mapped to the status the error type
stands for, so the retry policy treats them like their non-streaming equivalents.
"""

from __future__ import annotations

import contextlib
import dataclasses
import json
import time
from collections.abc import AsyncIterator, Iterator, Sequence
from typing import Any

import anthropic
import httpx2
from anthropic.resources.messages import messages as messages_resource

from stepline.errors import ProviderError, RetryableProviderError
from stepline.providers.base import (
    Completion,
    Delivery,
    LLMRequest,
    ReplyMeter,
    StreamProgress,
    Usage,
)
from stepline.providers.batches import COUNTED_OUTCOMES, BatchRequest, BatchResult, BatchStatus
from stepline.providers.retry import error_for_status
from stepline.providers.shards import ClientShards, shared_ssl_context

try:  # the SDK's per-model limits for unstreamed calls; private, so optional
    from anthropic._constants import MODEL_NONSTREAMING_TOKENS
except ImportError:  # pragma: no cover - depends on the SDK version
    MODEL_NONSTREAMING_TOKENS = {}

API_KEY_VARIABLE = "ANTHROPIC_API_KEY"
API_NAME = "Anthropic API"

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
"""Above this the SDK refuses a non-streaming call: 128k tokens an hour would pass 10 minutes."""

CHARS_PER_TOKEN = 4  # a progress estimate only; the final count comes from the API


class AnthropicProvider:
    """Messages calls, streamed or not; one HTTP request per ``complete`` (no SDK retries)."""

    name = "anthropic"

    def __init__(self, *, api_key: str, base_url: str | None = None) -> None:
        # max_retries=0: stepline's retry policy is the only retry layer, so the number of
        # requests a provider sees is exactly the configured attempts.
        self._clients = ClientShards(
            lambda: anthropic.AsyncAnthropic(
                api_key=api_key,
                base_url=base_url,
                max_retries=0,
                http_client=anthropic.DefaultAsyncHttpxClient(verify=shared_ssl_context()),
            )
        )

    async def complete(self, request: LLMRequest, delivery: Delivery) -> Completion:
        with self._clients.lease() as client:
            return await self._complete(client, request, delivery)

    async def _complete(
        self, client: anthropic.AsyncAnthropic, request: LLMRequest, delivery: Delivery
    ) -> Completion:
        arguments = _request_arguments(request, delivery)
        with translated_errors():
            if delivery.stream or must_stream(request):
                message = await self._stream(client, arguments, request.model, delivery)
                completion = _completion(message)
            else:
                # The raw response skips the SDK's response models (about a sixth of its CPU per
                # call at a wide fan-out); errors are raised exactly as without it.
                raw = await client.messages.with_raw_response.create(**arguments)
                completion = _completion_from_body(await raw.read())
        ReplyMeter(API_NAME).add(completion.text)  # an unstreamed reply is only seen whole
        notice = deprecation_notice(request.model)
        return dataclasses.replace(completion, notices=(notice,)) if notice else completion

    async def _stream(
        self,
        client: anthropic.AsyncAnthropic,
        arguments: dict[str, Any],
        model: str,
        delivery: Delivery,
    ) -> Any:
        started = time.monotonic()
        characters = 0
        meter = ReplyMeter(API_NAME)
        async with client.messages.stream(**arguments) as stream:
            async for event in stream:
                if event.type == "text":
                    meter.add(event.text)  # past the cap: stop reading, close the stream
                if event.type == "text" and delivery.on_progress is not None:
                    characters += len(event.text)
                    delivery.on_progress(
                        StreamProgress(
                            model=model,
                            output_tokens=characters // CHARS_PER_TOKEN,
                            elapsed_s=time.monotonic() - started,
                        )
                    )
            return await stream.get_final_message()

    async def submit_batch(self, requests: Sequence[BatchRequest]) -> BatchStatus:
        """Create a Message Batch of ``requests`` (one HTTP request, however many items)."""
        body: list[Any] = [
            {"custom_id": each.custom_id, "params": _batch_params(each.request)}
            for each in requests
        ]
        with self._clients.lease() as client, translated_errors():
            raw = await client.messages.batches.with_raw_response.create(requests=body)
            return _batch_status(await raw.read())

    async def batch_status(self, batch_id: str) -> BatchStatus:
        with self._clients.lease() as client, translated_errors():
            raw = await client.messages.batches.with_raw_response.retrieve(batch_id)
            return _batch_status(await raw.read())

    async def cancel_batch(self, batch_id: str) -> BatchStatus:
        with self._clients.lease() as client, translated_errors():
            raw = await client.messages.batches.with_raw_response.cancel(batch_id)
            return _batch_status(await raw.read())

    async def batch_results(self, batch_id: str) -> AsyncIterator[BatchResult]:
        """An ended batch's results, one JSON line at a time (never the whole file held)."""
        with self._clients.lease() as client, translated_errors():
            results = client.messages.batches.with_streaming_response.results(batch_id)
            async with results as response:
                async for line in response.iter_lines():
                    if line.strip():
                        yield _batch_result(line)

    async def count_tokens(self, request: LLMRequest) -> int | None:
        """The free token-counting endpoint's count (used by --dry-run); None on any failure."""
        arguments: dict[str, Any] = {"model": request.model, **message_fields(request)}
        try:
            with self._clients.lease() as client:
                counted = await client.messages.count_tokens(**arguments, timeout=10.0)
        except (anthropic.APIError, httpx2.HTTPError):
            return None
        return int(counted.input_tokens)

    async def aclose(self) -> None:
        await self._clients.aclose()


def must_stream(request: LLMRequest) -> bool:
    """Whether the SDK would refuse this call unstreamed (it may run past ten minutes)."""
    limit = MODEL_NONSTREAMING_TOKENS.get(request.model, NONSTREAMING_MAX_TOKENS)
    return request.max_tokens > min(limit, NONSTREAMING_MAX_TOKENS)


def _request_arguments(request: LLMRequest, delivery: Delivery) -> dict[str, Any]:
    arguments: dict[str, Any] = {"model": request.model, "max_tokens": request.max_tokens}
    arguments.update(message_fields(request))
    if request.stop:
        arguments["stop_sequences"] = list(request.stop)
    if delivery.timeout is not None:
        arguments["timeout"] = delivery.timeout
    # The SDK (2.x) no longer types sampling parameters; the wire format still takes them, and
    # a model that refuses one answers 400 with its own message. ``extra`` goes the same way.
    body = dict(request.extra)
    if request.temperature is not None:
        body["temperature"] = request.temperature
    if body:
        arguments["extra_body"] = body
    return arguments


@contextlib.contextmanager
def translated_errors() -> Iterator[None]:
    """The SDK's and the transport's exceptions as stepline's provider errors."""
    try:
        yield
    except anthropic.APIStatusError as exc:
        raise translate_status_error(exc) from exc
    except anthropic.APITimeoutError as exc:
        raise RetryableProviderError("Anthropic API: the request timed out") from exc
    except anthropic.APIConnectionError as exc:
        raise RetryableProviderError(f"Anthropic API: cannot connect ({exc})") from exc
    except httpx2.TimeoutException as exc:  # a stream that stalled after its status line
        raise RetryableProviderError(
            "Anthropic API: the reply stalled and timed out (timeout: bounds each wait)"
        ) from exc
    except httpx2.TransportError as exc:  # a stream cut off after its status line
        reason = str(exc) or type(exc).__name__
        raise RetryableProviderError(
            f"Anthropic API: the connection broke during the reply ({reason})"
        ) from exc


def _batch_params(request: LLMRequest) -> dict[str, Any]:
    """One batch request's ``params``: a Messages request body (``extra`` merged in, as the
    live path's ``extra_body`` is)."""
    arguments = _request_arguments(request, Delivery())
    extra = arguments.pop("extra_body", {})
    return {**arguments, **extra}


def _batch_status(body: bytes) -> BatchStatus:
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
            f"Anthropic API: the reply is not a Message Batch ({type(exc).__name__}: {exc}); "
            f"it began {body[:200].decode('utf-8', 'replace')!r}"
        ) from None


def _batch_result(line: str | bytes) -> BatchResult:
    """One line of a batch's results file."""
    try:
        entry = json.loads(line)
        custom_id, result = str(entry["custom_id"]), entry["result"]
        outcome = result["type"]
    except (ValueError, TypeError, KeyError) as exc:
        preview = line[:200] if isinstance(line, str) else line[:200].decode("utf-8", "replace")
        raise ProviderError(
            f"Anthropic API: a batch result line is not JSON of the expected shape "
            f"({type(exc).__name__}: {exc}); it began {preview!r}"
        ) from None
    if outcome == "succeeded":
        completion = _completion_from_body(result["message"])
        ReplyMeter(API_NAME).add(completion.text)
        return BatchResult(custom_id, "succeeded", completion=completion)
    if outcome == "errored":
        error = (result.get("error") or {}).get("error") or {}
        error_type = str(error.get("type") or "api_error")
        return BatchResult(
            custom_id,
            "errored",
            error=f"Anthropic API ({error_type}): {error.get('message') or 'no message'}",
            status_code=STATUS_FOR_ERROR_TYPE.get(error_type, 500),
        )
    if outcome in ("expired", "canceled"):
        return BatchResult(custom_id, outcome)
    return BatchResult(custom_id, "errored", error=f"unknown batch result type {outcome!r}")


CACHE_MARKER = {"type": "ephemeral"}
CACHE_MARKER_1H = {"type": "ephemeral", "ttl": "1h"}


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


def _completion(message: Any) -> Completion:
    """A streamed reply, as the SDK assembled it."""
    return _completion_from_body(message.model_dump())


def _completion_from_body(body: bytes | dict[str, Any]) -> Completion:
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
            f"Anthropic API: the reply is not a Messages response ({type(exc).__name__}: "
            f"{exc}); it began {preview!r}"
        ) from None


def deprecation_notice(model: str) -> str | None:
    """The SDK's end-of-life date for a deprecated model, as a sentence for the step's log.

    The SDK says so with a ``DeprecationWarning``, which Python hides by default; reading its
    table instead puts the notice where a user of a run looks.
    """
    table = getattr(messages_resource, "DEPRECATED_MODELS", {})
    end_of_life = table.get(model) if isinstance(table, dict) else None
    if end_of_life is None:
        return None
    return f"model {model} is deprecated and reaches end of life on {end_of_life}; migrate"


def translate_status_error(exc: anthropic.APIStatusError) -> ProviderError:
    """Map an HTTP error (or an error event inside a stream) to what to do about it."""
    status = exc.status_code
    error_type = _error_type(exc)
    if status < 400:  # an SSE error event: the status line said 200 before the error
        status = STATUS_FOR_ERROR_TYPE.get(error_type or "", 500)
        message = f"Anthropic API error during the reply ({error_type}): {_api_message(exc)}"
    else:
        message = f"Anthropic API {status}: {_api_message(exc)}"
    return error_for_status(status, message, exc.response.headers, key_variable=API_KEY_VARIABLE)


def _error_type(exc: anthropic.APIStatusError) -> str | None:
    body = exc.body
    if isinstance(body, dict):
        error = body.get("error")
        if isinstance(error, dict) and isinstance(error.get("type"), str):
            return str(error["type"])
    return None


def _api_message(exc: anthropic.APIStatusError) -> str:
    body = exc.body
    if isinstance(body, dict):
        error = body.get("error")
        if isinstance(error, dict) and error.get("message"):
            return str(error["message"])
    return exc.message
