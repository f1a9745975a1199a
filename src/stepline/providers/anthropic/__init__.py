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
import json
import os
from collections.abc import AsyncIterator, Sequence
from typing import TYPE_CHECKING
from urllib.parse import urlsplit

from stepline import __version__
from stepline.errors import ProviderError, RetryableProviderError
from stepline.providers import http1
from stepline.providers.anthropic import wire
from stepline.providers.base import Completion, Delivery, LLMRequest, ReplyMeter
from stepline.providers.batches import BatchRequest, BatchResult, BatchStatus
from stepline.providers.shards import shared_ssl_context

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
        self._direct = _direct_pool(url, api_key)

    @property
    def sdk(self) -> AnthropicSDK:
        """The SDK's clients, opened (and the SDK imported) on first use."""
        if self._sdk is None:
            from stepline.providers.anthropic.sdk import AnthropicSDK

            self._sdk = AnthropicSDK(api_key=self._api_key, base_url=self._base_url)
        return self._sdk

    async def complete(self, request: LLMRequest, delivery: Delivery) -> Completion:
        if self._direct is None or delivery.stream or wire.must_stream(request):
            completion = await self.sdk.complete(request, delivery)
        else:
            completion = await _post_message(self._direct, request, delivery)
        ReplyMeter(wire.API_NAME).add(completion.text)  # an unstreamed reply is only seen whole
        notice = wire.deprecation_notice(request.model)
        return dataclasses.replace(completion, notices=(notice,)) if notice else completion

    async def submit_batch(self, requests: Sequence[BatchRequest]) -> BatchStatus:
        """Create a Message Batch of ``requests`` (one HTTP request, however many items)."""
        return await self.sdk.submit_batch(requests)

    async def batch_status(self, batch_id: str) -> BatchStatus:
        return await self.sdk.batch_status(batch_id)

    async def cancel_batch(self, batch_id: str) -> BatchStatus:
        return await self.sdk.cancel_batch(batch_id)

    def batch_results(self, batch_id: str) -> AsyncIterator[BatchResult]:
        """An ended batch's results, one JSON line at a time (never the whole file held)."""
        return self.sdk.batch_results(batch_id)

    async def count_tokens(self, request: LLMRequest) -> int | None:
        """The free token-counting endpoint's count (used by --dry-run); None on any failure."""
        return await self.sdk.count_tokens(request)

    async def aclose(self) -> None:
        if self._direct is not None:
            await self._direct.aclose()
        if self._sdk is not None:
            await self._sdk.aclose()


def _direct_pool(url: str, api_key: str) -> http1.ConnectionPool | None:
    """stepline's own client for ``url``; None where the SDK must serve (a proxy applies, or
    the address is not a plain http(s) URL, which the SDK then reports in its own words)."""
    if _proxy_applies(url):
        return None
    headers = {
        "authorization": f"Bearer {api_key}",  # as the SDK (2.x) sends an API key
        "anthropic-version": wire.api_version(),
        "content-type": "application/json",
        "accept": "application/json",
        "user-agent": f"stepline/{__version__}",
    }
    try:
        return http1.ConnectionPool(url, headers=headers, ssl_context=shared_ssl_context)
    except ValueError:
        return None


def _proxy_applies(url: str) -> bool:
    """Whether httpx would send requests for ``url`` through a proxy from the environment."""
    if not any(name.lower().endswith("_proxy") for name in os.environ):
        return False  # the common case, without importing urllib.request (60 ms)
    import urllib.request

    proxies = urllib.request.getproxies_environment()
    parts = urlsplit(url)
    if not (proxies.get(parts.scheme) or proxies.get("all")):
        return False
    return not urllib.request.proxy_bypass(parts.hostname or "")  # NO_PROXY


async def _post_message(
    pool: http1.ConnectionPool, request: LLMRequest, delivery: Delivery
) -> Completion:
    body = json.dumps(wire.request_body(request)).encode()
    try:
        reply = await pool.request("POST", wire.MESSAGES_PATH, body, timeout=delivery.timeout)
    except http1.TimedOut as exc:
        raise RetryableProviderError(f"{wire.API_NAME}: the request timed out") from exc
    except http1.ConnectFailed as exc:
        raise RetryableProviderError(f"{wire.API_NAME}: cannot connect ({exc})") from exc
    except http1.Disconnected as exc:
        raise RetryableProviderError(
            f"{wire.API_NAME}: the connection broke during the reply ({exc})"
        ) from exc
    except http1.BadReply as exc:
        raise RetryableProviderError(f"{wire.API_NAME}: {exc}") from exc
    except http1.HTTPError as exc:
        raise ProviderError(f"{wire.API_NAME}: {exc}") from exc
    if reply.status >= 300:
        raise wire.error_from_reply(reply.status, reply.body, reply.headers)
    return wire.completion_from_body(reply.body)
