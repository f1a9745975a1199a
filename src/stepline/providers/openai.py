"""Any OpenAI-compatible ``/v1/chat/completions`` server: Ollama, vLLM, llama.cpp, OpenAI.

Built on the official ``openai`` SDK rather than hand-written HTTP: it already speaks the wire
format, streaming included, and gives typed errors with the response headers we need for
``retry-after``. Its own retries are off (``max_retries=0``) so stepline's policy is the only
retry layer. Local servers need no key; a placeholder is sent where none is set.
"""

from __future__ import annotations

from typing import Any

import openai

from stepline.errors import (
    ProviderError,
    RetryableProviderError,
)
from stepline.providers.base import Completion, LLMRequest, Usage
from stepline.providers.retry import error_for_status

API_KEY_VARIABLE = "OPENAI_API_KEY"
NO_KEY = "no-key"  # local servers ignore the header; the SDK insists on one
STOP_REASONS = {"stop": "end_turn", "length": "max_tokens", "content_filter": "refusal"}


class OpenAICompatibleProvider:
    """Non-streaming chat completions; one request per ``complete``."""

    name = "openai"

    def __init__(self, *, api_key: str | None, base_url: str | None) -> None:
        self._client = openai.AsyncOpenAI(
            api_key=api_key or NO_KEY, base_url=base_url, max_retries=0
        )

    async def complete(self, request: LLMRequest) -> Completion:
        try:
            response = await self._client.chat.completions.create(**_request_arguments(request))
        except openai.APIStatusError as exc:
            raise translate_status_error(exc) from exc
        except openai.APITimeoutError as exc:
            raise RetryableProviderError("OpenAI-compatible API: the request timed out") from exc
        except openai.APIConnectionError as exc:
            raise RetryableProviderError(f"OpenAI-compatible API: cannot connect ({exc})") from exc
        if not response.choices:
            raise ProviderError("OpenAI-compatible API: the response has no choices")
        choice = response.choices[0]
        return Completion(
            text=choice.message.content or "",
            model=response.model or request.model,
            stop_reason=STOP_REASONS.get(choice.finish_reason or "", choice.finish_reason),
            usage=_usage(response.usage),
        )

    async def aclose(self) -> None:
        await self._client.close()


def _request_arguments(request: LLMRequest) -> dict[str, Any]:
    messages: list[dict[str, str]] = []
    if request.system is not None:
        messages.append({"role": "system", "content": request.system})
    messages.append({"role": "user", "content": request.prompt})
    arguments: dict[str, Any] = {
        "model": request.model,
        "messages": messages,
        "max_tokens": request.max_tokens,
    }
    if request.temperature is not None:
        arguments["temperature"] = request.temperature
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
