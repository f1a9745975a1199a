"""What goes through the official ``openai`` SDK: streamed replies, and every call when a proxy
is configured.

Importing this module imports the SDK (over a second), so the provider does so on first need.
Its own retries are off (``max_retries=0``) so stepline's policy is the only retry layer.
"""

from __future__ import annotations

from typing import Any

import httpx2
import openai

from stepline import clock
from stepline.errors import ProviderError, RetryableProviderError
from stepline.providers.base import Completion, Delivery, LLMRequest, ReplyMeter, StreamProgress
from stepline.providers.failures import transport_failure
from stepline.providers.openai import wire
from stepline.providers.retry import error_for_status
from stepline.providers.shards import ClientShards, shared_ssl_context


class OpenAISDK:
    """The SDK's async clients (sharded: see ``shards``), one HTTP request per call."""

    def __init__(self, *, api_key: str | None, base_url: str | None) -> None:
        self._clients = ClientShards(
            lambda: openai.AsyncOpenAI(
                api_key=api_key or wire.NO_KEY,
                base_url=base_url,
                max_retries=0,
                http_client=openai.DefaultAsyncHttpxClient(
                    verify=shared_ssl_context(), follow_redirects=False
                ),
            )
        )

    async def complete(self, request: LLMRequest, delivery: Delivery) -> Completion:
        arguments = wire.sdk_arguments(request, delivery.timeout)
        with self._clients.lease() as client:
            try:
                if delivery.stream:
                    return await _stream(client, arguments, request, delivery)
                raw = await client.chat.completions.with_raw_response.create(**arguments)
                body = raw.content  # a LegacyAPIResponse: the body is already read
            except openai.APIStatusError as exc:
                raise translate_status_error(exc) from exc
            except openai.APITimeoutError as exc:
                raise RetryableProviderError(f"{wire.API_NAME}: the request timed out") from exc
            except openai.APIConnectionError as exc:
                raise RetryableProviderError(f"{wire.API_NAME}: cannot connect ({exc})") from exc
        return wire.completion_from_body(body, request.model)

    async def aclose(self) -> None:
        await self._clients.aclose()


async def _stream(
    client: openai.AsyncOpenAI, arguments: dict[str, Any], request: LLMRequest, delivery: Delivery
) -> Completion:
    """Collect a streamed reply; usage arrives in a last chunk with no choices."""
    started = clock.monotonic()
    parts: list[str] = []
    model, finish_reason, usage = request.model, None, None
    chunks = 0
    meter = ReplyMeter(wire.API_NAME)
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
                            elapsed = clock.monotonic() - started
                            delivery.on_progress(StreamProgress(model, chunks, elapsed))
    except Exception as exc:
        if not isinstance(exc, openai.APIError) and transport_failure(exc) is None:
            raise
        raise _mid_stream_error(exc) from exc
    return Completion(
        text="".join(parts),
        model=model,
        stop_reason=wire.STOP_REASONS.get(finish_reason or "", finish_reason),
        usage=wire.usage_from(usage.model_dump() if usage is not None else None),
    )


def _mid_stream_error(exc: Exception) -> ProviderError:
    """A failure after the status line: an error event, a stall, or a dropped connection.

    The SDK wraps read errors in its own timeout and connection errors, though the
    connection was made; the message says what really happened. The transport's own
    exceptions are told by class, under the HTTP library's name of the day (httpx or httpx2).
    """
    failure = transport_failure(exc)
    if isinstance(exc, openai.APITimeoutError) or failure == "timeout":
        return RetryableProviderError(f"{wire.API_NAME}: the reply stalled and timed out")
    if isinstance(exc, openai.APIConnectionError) or failure == "transport":
        return RetryableProviderError(f"{wire.API_NAME}: the connection broke during the reply")
    assert isinstance(exc, openai.APIError)
    error = exc.body if isinstance(exc.body, dict) else {}
    code, kind = error.get("code"), str(error.get("type") or "")
    status = code if isinstance(code, int) and 400 <= code < 600 else None
    status = status or wire.STATUS_FOR_ERROR_TYPE.get(kind or str(code or ""), 500)
    message = f"{wire.API_NAME} error during the reply ({kind or status}): {exc.message}"
    return error_for_status(status, message, {}, key_variable=wire.API_KEY_VARIABLE)


def translate_status_error(exc: openai.APIStatusError) -> ProviderError:
    """Map an HTTP error to the provider error that says what to do about it, worded from
    the reply itself as the direct path words it (this SDK says only "Error code: N" for a
    body that is not JSON or has no message)."""
    try:
        body = exc.response.content
    except httpx2.ResponseNotRead:  # pragma: no cover - the SDK reads error replies
        body = b""
    return wire.error_from_reply(exc.status_code, body, exc.response.headers)
