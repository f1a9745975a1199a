"""Anthropic Messages API through the official SDK's async client.

The SDK is imported only when a run needs it, so ``pipeline --help`` and ``pipeline list`` stay
fast. SDK exceptions are translated here into stepline's provider errors, with the provider's
own message and, for authentication failures, the name of the variable to set.
"""

from __future__ import annotations

from typing import Any

import anthropic

from stepline.errors import (
    ProviderError,
    RetryableProviderError,
)
from stepline.providers.base import Completion, LLMRequest, Usage
from stepline.providers.retry import error_for_status

API_KEY_VARIABLE = "ANTHROPIC_API_KEY"


class AnthropicProvider:
    """Non-streaming Messages calls; one request per ``complete`` (no SDK retries)."""

    name = "anthropic"

    def __init__(self, *, api_key: str, base_url: str | None = None) -> None:
        # max_retries=0: stepline's retry policy is the only retry layer, so the number of
        # requests a provider sees is exactly the configured attempts.
        self._client = anthropic.AsyncAnthropic(api_key=api_key, base_url=base_url, max_retries=0)

    async def complete(self, request: LLMRequest) -> Completion:
        try:
            message = await self._client.messages.create(**_request_arguments(request))
        except anthropic.APIStatusError as exc:
            raise translate_status_error(exc) from exc
        except anthropic.APITimeoutError as exc:
            raise RetryableProviderError("Anthropic API: the request timed out") from exc
        except anthropic.APIConnectionError as exc:
            raise RetryableProviderError(f"Anthropic API: cannot connect ({exc})") from exc
        text = "".join(block.text for block in message.content if block.type == "text")
        usage = Usage(
            input_tokens=message.usage.input_tokens,
            output_tokens=message.usage.output_tokens,
            cache_write_tokens=message.usage.cache_creation_input_tokens or 0,
            cache_read_tokens=message.usage.cache_read_input_tokens or 0,
        )
        return Completion(
            text=text, model=message.model, stop_reason=message.stop_reason, usage=usage
        )

    async def aclose(self) -> None:
        await self._client.close()


def _request_arguments(request: LLMRequest) -> dict[str, Any]:
    arguments: dict[str, Any] = {
        "model": request.model,
        "max_tokens": request.max_tokens,
        "messages": [{"role": "user", "content": request.prompt}],
    }
    if request.system is not None:
        arguments["system"] = request.system
    if request.temperature is not None:
        # The SDK (2.x) no longer types sampling parameters; the wire format still takes
        # them, and a model that refuses one answers 400 with its own message.
        arguments["extra_body"] = {"temperature": request.temperature}
    return arguments


def translate_status_error(exc: anthropic.APIStatusError) -> ProviderError:
    """Map an HTTP error to the provider error that says what to do about it."""
    message = f"Anthropic API {exc.status_code}: {_api_message(exc)}"
    return error_for_status(
        exc.status_code, message, exc.response.headers, key_variable=API_KEY_VARIABLE
    )


def _api_message(exc: anthropic.APIStatusError) -> str:
    message = getattr(exc, "api_message", None)
    if message:
        return str(message)
    body = exc.body
    if isinstance(body, dict):
        error = body.get("error")
        if isinstance(error, dict) and error.get("message"):
            return str(error["message"])
    return exc.message
