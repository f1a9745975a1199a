"""What goes through the official SDK: streamed replies, Message Batches, token counts, and
every call when a proxy is configured.

Importing this module imports the SDK (1.5-2.5 s), so the provider does so on first need.
SDK exceptions are translated here into stepline's provider errors, with the provider's own
message and, for authentication failures, the name of the variable to set.

Streaming matters for two reasons besides live progress: the API refuses non-streaming calls
whose ``max_tokens`` could take longer than ten minutes, and a long reply that is streamed keeps
the connection busy, so idle-connection timeouts in proxies do not cut it off. A stream can fail
after its ``200`` status line: the API then sends an SSE ``error`` event (the SDK raises an
``APIStatusError`` carrying status 200 and the error's type), mapped to the status the error
type stands for so the retry policy treats it like its non-streaming equivalent; or the
connection drops or stalls, which the SDK reports as the transport's own exception (2.12) or
wrapped in its connection and timeout errors (2.17): either way it is said as a reply that broke
off or stalled, never as a connection that could not be made.
"""

from __future__ import annotations

import contextlib
from collections.abc import AsyncIterator, Iterator, Sequence
from typing import Any

import anthropic
import httpx2

from stepline import clock
from stepline.errors import ProviderError, RetryableProviderError
from stepline.providers.anthropic import wire
from stepline.providers.base import Completion, Delivery, LLMRequest, ReplyMeter, StreamProgress
from stepline.providers.batches import BatchRequest, BatchResult, BatchStatus
from stepline.providers.failures import transport_failure
from stepline.providers.shards import ClientShards, shared_ssl_context

CHARS_PER_TOKEN = 4  # a progress estimate only; the final count comes from the API


class AnthropicSDK:
    """The SDK's async clients (sharded: see ``shards``), one HTTP request per call."""

    def __init__(self, *, api_key: str, base_url: str | None) -> None:
        # max_retries=0: stepline's retry policy is the only retry layer, so the number of
        # requests a provider sees is exactly the configured attempts.
        self._clients = ClientShards(
            lambda: anthropic.AsyncAnthropic(
                api_key=api_key,
                base_url=base_url,
                max_retries=0,
                http_client=anthropic.DefaultAsyncHttpxClient(
                    verify=shared_ssl_context(), follow_redirects=False
                ),
            )
        )

    async def complete(self, request: LLMRequest, delivery: Delivery) -> Completion:
        arguments = wire.sdk_arguments(request, delivery.timeout)
        with self._clients.lease() as client, translated_errors():
            if delivery.stream or wire.must_stream(request):
                message = await _stream(client, arguments, request.model, delivery)
                return wire.completion_from_body(message.model_dump())
            # The raw response skips the SDK's response models (about a sixth of its CPU per
            # call at a wide fan-out); errors are raised exactly as without it.
            raw = await client.messages.with_raw_response.create(**arguments)
            return wire.completion_from_body(await raw.read())

    async def submit_batch(self, requests: Sequence[BatchRequest]) -> BatchStatus:
        body: list[Any] = [
            {"custom_id": each.custom_id, "params": wire.request_body(each.request)}
            for each in requests
        ]
        with self._clients.lease() as client, translated_errors():
            raw = await client.messages.batches.with_raw_response.create(requests=body)
            return wire.batch_status(await raw.read())

    async def batch_status(self, batch_id: str) -> BatchStatus:
        with self._clients.lease() as client, translated_errors():
            raw = await client.messages.batches.with_raw_response.retrieve(batch_id)
            return wire.batch_status(await raw.read())

    async def cancel_batch(self, batch_id: str) -> BatchStatus:
        with self._clients.lease() as client, translated_errors():
            raw = await client.messages.batches.with_raw_response.cancel(batch_id)
            return wire.batch_status(await raw.read())

    async def batch_results(self, batch_id: str) -> AsyncIterator[BatchResult]:
        """An ended batch's results, one JSON line at a time (never the whole file held)."""
        with self._clients.lease() as client, translated_errors():
            results = client.messages.batches.with_streaming_response.results(batch_id)
            async with results as response:
                async for line in response.iter_lines():
                    if line.strip():
                        yield wire.batch_result(line)

    async def count_tokens(self, request: LLMRequest) -> int | None:
        """The free token-counting endpoint's count; None on any failure."""
        arguments: dict[str, Any] = {"model": request.model, **wire.message_fields(request)}
        try:
            with self._clients.lease() as client:
                counted = await client.messages.count_tokens(**arguments, timeout=10.0)
        except (anthropic.APIError, httpx2.HTTPError):
            return None
        return int(counted.input_tokens)

    async def aclose(self) -> None:
        await self._clients.aclose()


async def _stream(
    client: anthropic.AsyncAnthropic, arguments: dict[str, Any], model: str, delivery: Delivery
) -> Any:
    started = clock.monotonic()
    characters = 0
    meter = ReplyMeter(wire.API_NAME)
    async with client.messages.stream(**arguments) as stream:
        with reply_errors():
            async for event in stream:
                if event.type == "text":
                    meter.add(event.text)  # past the cap: stop reading, close the stream
                if event.type == "text" and delivery.on_progress is not None:
                    characters += len(event.text)
                    delivery.on_progress(
                        StreamProgress(
                            model=model,
                            output_tokens=characters // CHARS_PER_TOKEN,
                            elapsed_s=clock.monotonic() - started,
                        )
                    )
            return await stream.get_final_message()


@contextlib.contextmanager
def reply_errors() -> Iterator[None]:
    """Failures after the status line, said as a reply that stalled or broke off.

    The connection was made, so the SDK's connection errors (which 2.17 raises for a read that
    failed) do not mean "cannot connect"; the transport's own exceptions (which 2.12 lets
    through) are told by class, under the HTTP library's name of the day (httpx or httpx2).
    """
    try:
        yield
    except Exception as exc:
        failure = transport_failure(exc)
        if isinstance(exc, anthropic.APITimeoutError) or failure == "timeout":
            raise RetryableProviderError(
                f"{wire.API_NAME}: the reply stalled and timed out (timeout: bounds each wait)"
            ) from exc
        if not isinstance(exc, anthropic.APIConnectionError) and failure is None:
            raise
        raise RetryableProviderError(
            f"{wire.API_NAME}: the connection broke during the reply ({_reason(exc)})"
        ) from exc


def _reason(exc: BaseException) -> str:
    """What the transport said; the SDK's wrapper keeps it as the cause."""
    cause = exc.__cause__ if isinstance(exc, anthropic.APIConnectionError) else None
    failed = cause if cause is not None and str(cause) else exc
    return str(failed) or type(failed).__name__


@contextlib.contextmanager
def translated_errors() -> Iterator[None]:
    """The SDK's and the transport's exceptions as stepline's provider errors."""
    try:
        yield
    except anthropic.APIStatusError as exc:
        raise translate_status_error(exc) from exc
    except anthropic.APITimeoutError as exc:
        raise RetryableProviderError(f"{wire.API_NAME}: the request timed out") from exc
    except anthropic.APIConnectionError as exc:
        raise RetryableProviderError(f"{wire.API_NAME}: cannot connect ({exc})") from exc
    except httpx2.TimeoutException as exc:  # a stream that stalled after its status line
        raise RetryableProviderError(
            f"{wire.API_NAME}: the reply stalled and timed out (timeout: bounds each wait)"
        ) from exc
    except httpx2.TransportError as exc:  # a stream cut off after its status line
        reason = str(exc) or type(exc).__name__
        raise RetryableProviderError(
            f"{wire.API_NAME}: the connection broke during the reply ({reason})"
        ) from exc


def translate_status_error(exc: anthropic.APIStatusError) -> ProviderError:
    """Map an HTTP error (or an error event inside a stream) to what to do about it."""
    if 300 <= exc.status_code < 400:  # a redirect: said the same way on both paths
        return wire.error_from_reply(exc.status_code, b"", exc.response.headers)
    body = exc.body
    error = body.get("error") if isinstance(body, dict) else None
    return wire.api_error(exc.status_code, error, exc.message, exc.response.headers)
