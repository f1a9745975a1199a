"""Any OpenAI-compatible ``/v1/chat/completions`` server: Ollama, vLLM, llama.cpp, OpenAI.

Unstreamed calls go over stepline's own HTTP/1.1 client (``providers/http1.py``), for the
reasons the Anthropic provider gives: a wide fan-out to a local vLLM spends its CPU in the
SDK's HTTP stack and response models, and importing the SDK takes over a second. Streams, and
every call when a proxy applies, go through the official SDK (``sdk``, imported on first need).
``wire`` builds the bodies and reads replies and error bodies for both paths. Local servers need
no key; a placeholder is sent where none is set.
"""

from __future__ import annotations

import os
from typing import TYPE_CHECKING

from stepline import __version__
from stepline.providers import http1
from stepline.providers.base import Completion, Delivery, LLMRequest, ReplyMeter
from stepline.providers.direct import direct_pool, post_json, sdk_custom_headers, secret_kept
from stepline.providers.openai import wire

if TYPE_CHECKING:
    from stepline.providers.openai.sdk import OpenAISDK

SDK_HEADER_VARIABLES = {
    "OPENAI_ORG_ID": "openai-organization",
    "OPENAI_PROJECT_ID": "openai-project",
}
"""Environment variables the SDK sends as headers; the direct path sends them too."""


class OpenAICompatibleProvider:
    """Chat completions, streamed or not; one HTTP request per ``complete``."""

    name = "openai"

    def __init__(self, *, api_key: str | None, base_url: str | None) -> None:
        self._api_key = api_key
        self._base_url = base_url
        self._sdk: OpenAISDK | None = None
        url = base_url or os.environ.get("OPENAI_BASE_URL") or wire.DEFAULT_BASE_URL
        self._direct = direct_pool(url, _headers(api_key))

    @property
    def sdk(self) -> OpenAISDK:
        """The SDK's clients, opened (and the SDK imported) on first use."""
        if self._sdk is None:
            from stepline.providers.openai.sdk import OpenAISDK

            self._sdk = OpenAISDK(api_key=self._api_key, base_url=self._base_url)
        return self._sdk

    async def complete(self, request: LLMRequest, delivery: Delivery) -> Completion:
        with secret_kept(self._api_key):
            if self._direct is None or delivery.stream:
                completion = await self.sdk.complete(request, delivery)
            else:
                completion = await _post_chat(self._direct, request, delivery)
            if not delivery.stream:  # a stream is metered as it comes; this is seen only whole
                ReplyMeter(wire.API_NAME).add(completion.text)
        return completion

    async def count_tokens(self, request: LLMRequest) -> int | None:
        """None: chat-completions servers have no standard token-counting endpoint."""
        return None

    async def aclose(self) -> None:
        if self._direct is not None:
            await self._direct.aclose()
        if self._sdk is not None:
            await self._sdk.aclose()


def _headers(api_key: str | None) -> dict[str, str]:
    """What the SDK sends: the key (or a placeholder), the organisation and project from
    the SDK's own environment variables, and OPENAI_CUSTOM_HEADERS last."""
    headers = {
        "authorization": f"Bearer {api_key or wire.NO_KEY}",
        "content-type": "application/json",
        "accept": "application/json",
        "user-agent": f"stepline/{__version__}",
    }
    for variable, header in SDK_HEADER_VARIABLES.items():
        if os.environ.get(variable):
            headers[header] = os.environ[variable]
    return {**headers, **sdk_custom_headers("OPENAI_CUSTOM_HEADERS")}


async def _post_chat(
    pool: http1.ConnectionPool, request: LLMRequest, delivery: Delivery
) -> Completion:
    payload = wire.request_body(request)
    reply = await post_json(
        pool, wire.CHAT_PATH, payload, timeout=delivery.timeout, api_name=wire.API_NAME
    )
    if reply.status >= 300:
        raise wire.error_from_reply(reply.status, reply.body, reply.headers)
    return wire.completion_from_body(reply.body, request.model)
