"""Anthropic Messages API: unstreamed calls over stepline's own HTTP/1.1 client, the rest through
the official SDK.

Unstreamed calls are what a wide fan-out makes by the thousand, and two costs of the SDK show
there: about 1.5-2 ms of CPU per call in httpx, httpcore and anyio (at a few hundred calls a
second on two cores, that CPU rather than the network sets the pace), and 1.5-2.5 s to import
it, which a resumed run would pay before its first request. ``http1`` sends the same request
for a fraction of the CPU and imports nothing heavy; ``wire`` builds the bodies and reads the
replies and error bodies for both paths, so a call fails with the same message and the same
retry decision whichever path it took.

The SDK (``sdk``, imported on first need) still serves what it does better or what we would
otherwise rewrite: streamed replies (SSE, error events), Message Batches, token counting, and
every call when a proxy applies to the API's address (httpx honours ``HTTPS_PROXY`` and
``NO_PROXY``; ``http1`` speaks only directly).
"""

from __future__ import annotations

import dataclasses
import os
from collections.abc import AsyncIterator, Sequence
from typing import TYPE_CHECKING

from stepline import __version__
from stepline.providers import http1
from stepline.providers.anthropic import wire
from stepline.providers.base import Completion, Delivery, LLMRequest, ReplyMeter
from stepline.providers.batches import BatchRequest, BatchResult, BatchStatus
from stepline.providers.direct import direct_pool, post_json, sdk_custom_headers, secret_kept

if TYPE_CHECKING:
    from stepline.providers.anthropic.sdk import AnthropicSDK


class AnthropicProvider:
    """Messages calls, streamed or not; one HTTP request per ``complete`` (no retries here)."""

    name = "anthropic"

    def __init__(self, *, api_key: str, base_url: str | None = None) -> None:
        self._api_key = api_key
        self._base_url = base_url
        self._sdk: AnthropicSDK | None = None
        url = base_url or os.environ.get("ANTHROPIC_BASE_URL") or wire.DEFAULT_BASE_URL
        self._direct = direct_pool(url, _headers(api_key))

    @property
    def sdk(self) -> AnthropicSDK:
        """The SDK's clients, opened (and the SDK imported) on first use."""
        if self._sdk is None:
            from stepline.providers.anthropic.sdk import AnthropicSDK

            self._sdk = AnthropicSDK(api_key=self._api_key, base_url=self._base_url)
        return self._sdk

    async def complete(self, request: LLMRequest, delivery: Delivery) -> Completion:
        streamed = delivery.stream or wire.must_stream(request)  # metered as it streams
        with secret_kept(self._api_key):
            if self._direct is None or streamed:
                completion = await self.sdk.complete(request, delivery)
            else:
                completion = await _post_message(self._direct, request, delivery)
            if not streamed:  # an unstreamed reply is only seen whole
                ReplyMeter(wire.API_NAME).add(completion.text)
        notice = wire.deprecation_notice(request.model)
        return dataclasses.replace(completion, notices=(notice,)) if notice else completion

    async def submit_batch(self, requests: Sequence[BatchRequest]) -> BatchStatus:
        """Create a Message Batch of ``requests`` (one HTTP request, however many items)."""
        with secret_kept(self._api_key):
            return await self.sdk.submit_batch(requests)

    async def batch_status(self, batch_id: str) -> BatchStatus:
        with secret_kept(self._api_key):
            return await self.sdk.batch_status(batch_id)

    async def cancel_batch(self, batch_id: str) -> BatchStatus:
        with secret_kept(self._api_key):
            return await self.sdk.cancel_batch(batch_id)

    async def batch_results(self, batch_id: str) -> AsyncIterator[BatchResult]:
        """An ended batch's results, one JSON line at a time (never the whole file held)."""
        with secret_kept(self._api_key):
            async for result in self.sdk.batch_results(batch_id):
                yield result

    async def count_tokens(self, request: LLMRequest) -> int | None:
        """The free token-counting endpoint's count (used by --dry-run); None on any failure."""
        return await self.sdk.count_tokens(request)

    async def aclose(self) -> None:
        if self._direct is not None:
            await self._direct.aclose()
        if self._sdk is not None:
            await self._sdk.aclose()


def _headers(api_key: str) -> dict[str, str]:
    """What the SDK sends besides its own telemetry headers, ANTHROPIC_CUSTOM_HEADERS last."""
    return {
        "authorization": f"Bearer {api_key}",  # as the SDK (2.x) sends an API key
        "anthropic-version": wire.api_version(),
        "content-type": "application/json",
        "accept": "application/json",
        "user-agent": f"stepline/{__version__}",
        **sdk_custom_headers("ANTHROPIC_CUSTOM_HEADERS"),
    }


async def _post_message(
    pool: http1.ConnectionPool, request: LLMRequest, delivery: Delivery
) -> Completion:
    payload = wire.request_body(request)
    reply = await post_json(
        pool, wire.MESSAGES_PATH, payload, timeout=delivery.timeout, api_name=wire.API_NAME
    )
    if reply.status >= 300:
        raise wire.error_from_reply(reply.status, reply.body, reply.headers)
    return wire.completion_from_body(reply.body)
