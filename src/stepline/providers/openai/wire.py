"""The chat-completions wire format: request bodies, replies and error bodies.

Both ways of calling an OpenAI-compatible server (stepline's own HTTP client and the ``openai``
SDK) build requests and read replies here, so they send the same bodies and fail with the same
messages and retry decisions.
"""

from __future__ import annotations

import json
from collections.abc import Mapping
from typing import Any

from stepline.errors import ProviderError, RetryableProviderError
from stepline.providers.base import Completion, LLMRequest, Usage
from stepline.providers.failures import error_body, redirect_error
from stepline.providers.retry import error_for_status

API_KEY_VARIABLE = "OPENAI_API_KEY"
API_NAME = "OpenAI-compatible API"
DEFAULT_BASE_URL = "https://api.openai.com/v1"
CHAT_PATH = "/chat/completions"
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


def sdk_arguments(request: LLMRequest, timeout: float | None = None) -> dict[str, Any]:
    """The keyword arguments of the SDK's ``chat.completions.create`` for ``request``."""
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
    if request.effort is not None:
        arguments["reasoning_effort"] = request.effort
    if request.stop:
        arguments["stop"] = list(request.stop)
    if request.extra:
        arguments["extra_body"] = dict(request.extra)
    if timeout is not None:
        arguments["timeout"] = timeout
    return arguments


def request_body(request: LLMRequest) -> dict[str, Any]:
    """The JSON body of a chat-completions request (``extra`` merged in, as ``extra_body``)."""
    arguments = sdk_arguments(request)
    extra = arguments.pop("extra_body", {})
    return {**arguments, **extra}


def completion_from_body(body: bytes, requested_model: str) -> Completion:
    """The first choice of a chat completion; a reply of another shape is retried."""
    try:
        reply = json.loads(body)
        choices = reply["choices"]
        if not choices:
            raise RetryableProviderError(f"{API_NAME}: the response has no choices")
        choice = choices[0]
        text = (choice.get("message") or {}).get("content") or ""
        if not isinstance(text, str):
            raise TypeError(f"message content is {type(text).__name__}, not text")
        finish_reason = choice.get("finish_reason")
        return Completion(
            text=text,
            model=str(reply.get("model") or requested_model),
            stop_reason=STOP_REASONS.get(finish_reason or "", finish_reason),
            usage=usage_from(reply.get("usage")),
        )
    except (ValueError, TypeError, KeyError, AttributeError) as exc:
        preview = body[:200].decode("utf-8", "replace")
        raise RetryableProviderError(
            f"{API_NAME}: the reply is not a chat completion ({type(exc).__name__}: {exc}); "
            f"it began {preview!r}"
        ) from None


def usage_from(usage: Mapping[str, Any] | None) -> Usage:
    """Tokens as stepline counts them: prompt tokens the server had cached are cache reads."""
    if not usage:
        return Usage()
    cached = int((usage.get("prompt_tokens_details") or {}).get("cached_tokens") or 0)
    return Usage(
        input_tokens=int(usage.get("prompt_tokens") or 0) - cached,
        output_tokens=int(usage.get("completion_tokens") or 0),
        cache_read_tokens=cached,
    )


def api_error(
    status: int, error: object, fallback: str, headers: Mapping[str, str]
) -> ProviderError:
    """The provider error for an error reply; ``error`` is the body's error object (or the
    body itself, as some servers send it), ``fallback`` what to say where it has no message."""
    detail = fallback
    if isinstance(error, dict) and error.get("message"):
        detail = str(error["message"])
    message = f"{API_NAME} {status}: {detail}"
    return error_for_status(status, message, headers, key_variable=API_KEY_VARIABLE)


def error_from_reply(status: int, body: bytes, headers: Mapping[str, str]) -> ProviderError:
    """The provider error a non-2xx reply means, worded as the SDK's errors are."""
    if 300 <= status < 400:
        return redirect_error(API_NAME, status, headers)
    parsed, fallback = error_body(status, body)
    error = parsed.get("error", parsed) if isinstance(parsed, dict) else None
    return api_error(status, error, fallback, headers)
