"""Any OpenAI-compatible ``/v1/chat/completions`` server: Ollama, vLLM, llama.cpp, OpenAI.

Built on the official ``openai`` SDK rather than hand-written HTTP: it already speaks the wire
format, streaming included, and gives typed errors with the response headers we need for
``retry-after``. Its own retries are off (``max_retries=0``) so stepline's policy is the only
retry layer. Local servers need no key; a placeholder is sent where none is set.
"""

from __future__ import annotations

import time
from typing import Any

import httpx2
import openai

from stepline.errors import ProviderError, RetryableProviderError
from stepline.providers.base import (
    Completion,
    Delivery,
    LLMRequest,
    ReplyMeter,
    StreamProgress,
    Usage,
)
from stepline.providers.retry import error_for_status
from stepline.providers.shards import ClientShards, shared_ssl_context

API_KEY_VARIABLE = "OPENAI_API_KEY"
API_NAME = "OpenAI-compatible API"
NO_KEY = "no-key"  # local servers ignore the header; the SDK insists on one
STOP_REASONS = {"stop": "end_turn", "length": "max_tokens", "content_filter": "refusal"}
STATUS_FOR_ERROR_TYPE = {
    "invalid_request_error": 400,
    "authentication_error": 401,
    "permission_error": 403,
    "not_found_error": 404,
    "rate_limit_error": 429,
    "rate_limit_exceeded": 429,
    "server_error": 500,
    "overloaded_error": 529,
}
"""An error event's type (or string code) as the HTTP status it stands for; others: 500."""


class OpenAICompatibleProvider:
    """Chat completions, streamed or not; one HTTP request per ``complete``."""

    name = "openai"

    def __init__(self, *, api_key: str | None, base_url: str | None) -> None:
        self._clients = ClientShards(
            lambda: openai.AsyncOpenAI(
                api_key=api_key or NO_KEY,
                base_url=base_url,
                max_retries=0,
                http_client=openai.DefaultAsyncHttpxClient(verify=shared_ssl_context()),
            )
        )

    async def complete(self, request: LLMRequest, delivery: Delivery) -> Completion:
        with self._clients.lease() as client:
            return await self._complete(client, request, delivery)

    async def _complete(
        self, client: openai.AsyncOpenAI, request: LLMRequest, delivery: Delivery
    ) -> Completion:
        arguments = _request_arguments(request, delivery)
        try:
            if delivery.stream:
                return await self._stream(client, arguments, request, delivery)
            response = await client.chat.completions.create(**arguments)
        except openai.APIStatusError as exc:
            raise translate_status_error(exc) from exc
        except openai.APITimeoutError as exc:
            raise RetryableProviderError("OpenAI-compatible API: the request timed out") from exc
        except openai.APIConnectionError as exc:
            raise RetryableProviderError(f"OpenAI-compatible API: cannot connect ({exc})") from exc
        if not response.choices:
            raise ProviderError("OpenAI-compatible API: the response has no choices")
        choice = response.choices[0]
        ReplyMeter(API_NAME).add(choice.message.content or "")
        return Completion(
            text=choice.message.content or "",
            model=response.model or request.model,
            stop_reason=STOP_REASONS.get(choice.finish_reason or "", choice.finish_reason),
            usage=_usage(response.usage),
        )

    async def _stream(
        self,
        client: openai.AsyncOpenAI,
        arguments: dict[str, Any],
        request: LLMRequest,
        delivery: Delivery,
    ) -> Completion:
        """Collect a streamed reply; usage arrives in a last chunk with no choices."""
        started = time.monotonic()
        parts: list[str] = []
        model, finish_reason, usage = request.model, None, None
        chunks = 0
        meter = ReplyMeter(API_NAME)
        stream = await client.chat.completions.create(
            **arguments, stream=True, stream_options={"include_usage": True}
        )
        try:
            async with stream:
                async for chunk in stream:
                    model = chunk.model or model
                    usage = chunk.usage or usage
                    for choice in chunk.choices[:1]:
                        finish_reason = choice.finish_reason or finish_reason
                        if choice.delta.content:
                            meter.add(choice.delta.content)  # past the cap: stop reading
                            parts.append(choice.delta.content)
                            chunks += 1
                            if delivery.on_progress is not None:
                                elapsed = time.monotonic() - started
                                delivery.on_progress(StreamProgress(model, chunks, elapsed))
        except (openai.APIError, httpx2.TransportError) as exc:
            raise _mid_stream_error(exc) from exc
        return Completion(
            text="".join(parts),
            model=model,
            stop_reason=STOP_REASONS.get(finish_reason or "", finish_reason),
            usage=_usage(usage),
        )

    async def count_tokens(self, request: LLMRequest) -> int | None:
        """None: chat-completions servers have no standard token-counting endpoint."""
        return None

    async def aclose(self) -> None:
        await self._clients.aclose()


def _request_arguments(request: LLMRequest, delivery: Delivery) -> dict[str, Any]:
    messages: list[dict[str, str]] = []
    if request.system is not None:
        messages.append({"role": "system", "content": request.system})
    messages.extend(request.messages())
    arguments: dict[str, Any] = {
        "model": request.model,
        "messages": messages,
        "max_tokens": request.max_tokens,
    }
    if request.temperature is not None:
        arguments["temperature"] = request.temperature
    if request.stop:
        arguments["stop"] = list(request.stop)
    if request.extra:
        arguments["extra_body"] = dict(request.extra)
    if delivery.timeout is not None:
        arguments["timeout"] = delivery.timeout
    return arguments


def _usage(usage: Any) -> Usage:
    if usage is None:
        return Usage()
    details = getattr(usage, "prompt_tokens_details", None)
    cached = int(getattr(details, "cached_tokens", 0) or 0)
    return Usage(
        input_tokens=int(usage.prompt_tokens or 0) - cached,
        output_tokens=int(usage.completion_tokens or 0),
        cache_read_tokens=cached,
    )


def _mid_stream_error(exc: Exception) -> ProviderError:
    """A failure after the status line: an error event, a stall, or a dropped connection.

    The SDK wraps read errors in its own timeout and connection errors, though the
    connection was made; the message says what really happened.
    """
    if isinstance(exc, openai.APITimeoutError | httpx2.TimeoutException):
        return RetryableProviderError("OpenAI-compatible API: the reply stalled and timed out")
    if isinstance(exc, openai.APIConnectionError | httpx2.TransportError):
        return RetryableProviderError(
            "OpenAI-compatible API: the connection broke during the reply"
        )
    assert isinstance(exc, openai.APIError)
    error = exc.body if isinstance(exc.body, dict) else {}
    code, kind = error.get("code"), str(error.get("type") or "")
    status = code if isinstance(code, int) and 400 <= code < 600 else None
    status = status or STATUS_FOR_ERROR_TYPE.get(kind or str(code or ""), 500)
    message = f"OpenAI-compatible API error during the reply ({kind or status}): {exc.message}"
    return error_for_status(status, message, {}, key_variable=API_KEY_VARIABLE)


def translate_status_error(exc: openai.APIStatusError) -> ProviderError:
    """Map an HTTP error to the provider error that says what to do about it."""
    status = exc.status_code
    body = exc.body
    detail = exc.message
    if isinstance(body, dict):
        error = body.get("error", body)
        if isinstance(error, dict) and error.get("message"):
            detail = str(error["message"])
    message = f"OpenAI-compatible API {status}: {detail}"
    return error_for_status(status, message, exc.response.headers, key_variable=API_KEY_VARIABLE)
