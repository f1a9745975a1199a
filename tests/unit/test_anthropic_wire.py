"""The Anthropic provider's two paths say the same thing, and its copy of the SDK's tables is
current.

``AnthropicProvider`` sends unstreamed calls through stepline's own HTTP/1.1 client and
everything else (and every call when a proxy applies) through the SDK; ``wire`` words both
paths' errors. These tests send the same request down both paths to real servers on
127.0.0.1 (the fake LLM server, a canned-reply server for replies the fake cannot make, and a
small forward proxy) and compare what comes back.
"""

from __future__ import annotations

import asyncio
import json
import re
from collections.abc import Coroutine
from importlib import resources
from typing import Any

import anthropic
import anthropic._constants
import anthropic.resources.messages.messages
import pytest

from stepline.errors import (
    ProviderAuthError,
    ProviderError,
    ProviderRequestError,
    RetryableProviderError,
)
from stepline.providers.anthropic import AnthropicProvider, wire
from stepline.providers.anthropic.sdk import AnthropicSDK
from stepline.providers.base import Completion, Delivery, LLMRequest
from tests.fakes import ANTHROPIC_MESSAGES_PATH, Disconnect, ErrorReply, FakeLLMServer, Reply
from tests.fakes.http_servers import CannedServer, ForwardProxy, assert_same_error

REQUEST = LLMRequest(model="claude-haiku-4-5", prompt="hi", max_tokens=16)


def run(call: Coroutine[Any, Any, Any]) -> Any:
    return asyncio.run(call)


# --------------------------------------------------------------------------------------------
# sdk-tables.json
# --------------------------------------------------------------------------------------------


def test_sdk_tables_match_the_installed_sdk() -> None:
    text = resources.files(wire.__package__).joinpath("sdk-tables.json").read_text()
    tables = json.loads(text)
    copy_hint = (
        f"the installed anthropic SDK ({anthropic.__version__}) changed this table: copy the "
        "SDK's tables into src/stepline/providers/anthropic/sdk-tables.json"
    )
    assert tables["api_version"] == anthropic._constants.ANTHROPIC_API_VERSION, copy_hint
    assert tables["deprecated"] == anthropic.resources.messages.messages.DEPRECATED_MODELS, (
        copy_hint
    )
    assert tables["nonstreaming_max_tokens"] == anthropic._constants.MODEL_NONSTREAMING_TOKENS, (
        copy_hint
    )


# --------------------------------------------------------------------------------------------
# The direct path and the SDK path: same errors, same requests
# --------------------------------------------------------------------------------------------


async def direct_call(base_url: str, delivery: Delivery | None = None) -> Completion:
    provider = AnthropicProvider(api_key="test-key", base_url=base_url)
    try:
        return await provider.complete(REQUEST, delivery or Delivery())
    finally:
        await provider.aclose()


async def sdk_call(base_url: str, delivery: Delivery | None = None) -> Completion:
    sdk = AnthropicSDK(api_key="test-key", base_url=base_url)
    try:
        return await sdk.complete(REQUEST, delivery or Delivery())
    finally:
        await sdk.aclose()


def failures(
    base_url: str, delivery: Delivery | None = None
) -> tuple[ProviderError, ProviderError]:
    """The errors the direct path and the SDK path raise for the same reply."""
    with pytest.raises(ProviderError) as direct:
        run(direct_call(base_url, delivery))
    with pytest.raises(ProviderError) as through_sdk:
        run(sdk_call(base_url, delivery))
    return direct.value, through_sdk.value


def without_request_ids(message: str) -> str:
    """``message`` with the fake's request ids (new for every request) blanked out."""
    return re.sub(r"req_[0-9a-f]+", "req_ID", message)


@pytest.mark.parametrize(
    ("error_reply", "expected", "retry_after"),
    [
        (ErrorReply(400, "invalid_request_error", "max_tokens: too large"),
         ProviderRequestError, None),
        (ErrorReply(401, "authentication_error", "invalid x-api-key"), ProviderAuthError, None),
        (ErrorReply(403, "permission_error", "not allowed to use this model"),
         ProviderRequestError, None),
        (ErrorReply(404, "not_found_error", "model: claude-nope"), ProviderRequestError, None),
        (ErrorReply(413, "request_too_large", "Request exceeds the maximum allowed size"),
         ProviderRequestError, None),
        (ErrorReply.rate_limited(retry_after=7, message="slow down"),
         RetryableProviderError, 7.0),
        (ErrorReply(429, "rate_limit_error", "ms", headers={"retry-after-ms": "250"}),
         RetryableProviderError, 0.25),
        (ErrorReply(500, "api_error", "Internal server error"), RetryableProviderError, None),
        (ErrorReply.overloaded(), RetryableProviderError, None),
        # A 200 whose body is an error object, not a Messages response.
        (ErrorReply(200, "api_error", "not a message"), RetryableProviderError, None),
    ],
    ids=[
        "400", "401", "403", "404", "413", "429-retry-after", "429-retry-after-ms", "500", "529",
        "200-not-a-message",
    ],
)  # fmt: skip
def test_both_paths_raise_the_same_error_for_an_error_reply(
    server: FakeLLMServer,
    error_reply: ErrorReply,
    expected: type[ProviderError],
    retry_after: float | None,
) -> None:
    server.script(error_reply, error_reply)

    direct, through_sdk = failures(server.base_url)

    assert_same_error(direct, through_sdk)
    assert without_request_ids(direct.message) == without_request_ids(through_sdk.message)
    assert type(direct) is expected
    assert getattr(direct, "retry_after", None) == retry_after
    if error_reply.status >= 400:
        assert direct.status_code == error_reply.status
        assert direct.message == f"Anthropic API {error_reply.status}: {error_reply.message}"
    else:
        assert "not a Messages response" in direct.message
    assert server.count(ANTHROPIC_MESSAGES_PATH) == 2
    assert server.pending == 0


GATEWAY_PAGE = (
    b"<html>\r\n<head><title>502 Bad Gateway</title></head>\r\n"
    b"<body>\r\n<center><h1>502 Bad Gateway</h1></center>\r\n</body>\r\n</html>\r\n"
)


@pytest.mark.parametrize(
    ("status", "content_type", "body"),
    [
        (502, "text/html", GATEWAY_PAGE),
        (503, "text/html", b"<html>" + b"x" * 2000 + b"</html>"),  # cut at the same place
        (500, "application/json", b'{"detail": "no error object"}'),
        (500, "text/plain", b""),
    ],
)
def test_both_paths_word_other_error_bodies_alike(
    status: int, content_type: str, body: bytes
) -> None:
    with CannedServer(status, content_type, body) as canned:
        direct, through_sdk = failures(canned.base_url)
        assert canned.requests == 2

    assert_same_error(direct, through_sdk)
    assert type(direct) is RetryableProviderError
    assert direct.status_code == status
    assert direct.message == through_sdk.message
    assert direct.message.startswith(f"Anthropic API {status}: ")
    assert len(direct.message) < 600  # a long page is cut, on both paths


def test_both_paths_refuse_a_redirect_alike() -> None:
    with CannedServer(307, "text/plain", b"", location="https://elsewhere.test/v1") as canned:
        direct, through_sdk = failures(canned.base_url)
        assert canned.requests == 2  # neither followed it

    assert_same_error(direct, through_sdk)
    assert type(direct) is ProviderRequestError
    assert direct.message == through_sdk.message
    assert "redirected to https://elsewhere.test/v1" in direct.message


def test_both_paths_raise_the_same_error_for_a_200_that_is_not_json() -> None:
    with CannedServer(200, "text/html", b"<html>captive portal: please log in</html>") as canned:
        direct, through_sdk = failures(canned.base_url)

    assert_same_error(direct, through_sdk)
    assert direct.message == through_sdk.message
    assert type(direct) is RetryableProviderError
    assert "not a Messages response" in direct.message
    assert "captive portal" in direct.message


def test_both_paths_time_out_alike(server: FakeLLMServer) -> None:
    server.script(Reply(delay=2.0), Reply(delay=2.0))  # cut short when the fake stops

    direct, through_sdk = failures(server.base_url, Delivery(timeout=0.2))

    assert_same_error(direct, through_sdk)
    assert type(direct) is RetryableProviderError
    assert direct.message == through_sdk.message == "Anthropic API: the request timed out"


def test_both_paths_retry_a_connection_closed_without_a_reply(server: FakeLLMServer) -> None:
    server.script(Disconnect(), Disconnect())

    direct, through_sdk = failures(server.base_url)

    # Same class, status (none) and so the same retry decision. The words differ: httpx
    # reports a connection closed before any reply as a connection error ("cannot connect
    # (Connection error.)"), http1 as a connection that broke after the request was sent.
    assert_same_error(direct, through_sdk)
    assert type(direct) is RetryableProviderError
    assert direct.status_code is None
    assert direct.message.startswith("Anthropic API: ")
    assert through_sdk.message.startswith("Anthropic API: ")


def test_both_paths_send_the_same_body_and_return_the_same_completion(
    server: FakeLLMServer,
) -> None:
    direct = run(direct_call(server.base_url))
    through_sdk = run(sdk_call(server.base_url))

    assert direct.text == through_sdk.text == "echo: hi"
    assert direct.model == through_sdk.model == "claude-haiku-4-5"
    assert direct.usage == through_sdk.usage
    assert direct.stop_reason == through_sdk.stop_reason == "end_turn"
    sent_direct, sent_by_sdk = server.requests_for(ANTHROPIC_MESSAGES_PATH)
    assert sent_direct.body == sent_by_sdk.body
    assert sent_direct.body == {
        "model": "claude-haiku-4-5",
        "max_tokens": 16,
        "messages": [{"role": "user", "content": "hi"}],
    }
    assert sent_direct.headers["user-agent"].startswith("stepline/")  # it took the direct path
    assert sent_by_sdk.headers["user-agent"].startswith("AsyncAnthropic/")
    assert sent_direct.headers["authorization"] == "Bearer test-key"
    assert sent_direct.headers["anthropic-version"] == sent_by_sdk.headers["anthropic-version"]
    assert sent_direct.headers["anthropic-version"] == anthropic._constants.ANTHROPIC_API_VERSION


def test_both_paths_send_the_sdks_custom_headers(
    server: FakeLLMServer, monkeypatch: pytest.MonkeyPatch
) -> None:
    """ANTHROPIC_CUSTOM_HEADERS (one ``name: value`` per line) is how users reach gateways
    that want headers of their own; the direct path must send them as the SDK does."""
    monkeypatch.setenv("ANTHROPIC_CUSTOM_HEADERS", "X-Gateway-Key: g123\nx-team:  ml ")

    run(direct_call(server.base_url))
    run(sdk_call(server.base_url))

    sent_direct, sent_by_sdk = server.requests_for(ANTHROPIC_MESSAGES_PATH)
    for sent in (sent_direct, sent_by_sdk):
        assert sent.headers["x-gateway-key"] == "g123"
        assert sent.headers["x-team"] == "ml"
    assert sent_direct.headers["user-agent"].startswith("stepline/")


# --------------------------------------------------------------------------------------------
# A proxy from the environment
# --------------------------------------------------------------------------------------------


def test_a_proxy_from_the_environment_is_used(server: FakeLLMServer, proxy: ForwardProxy) -> None:
    completion = run(direct_call(server.base_url))

    assert completion.text == "echo: hi"
    assert proxy.targets == [f"{server.base_url}{ANTHROPIC_MESSAGES_PATH}"]
    assert server.count(ANTHROPIC_MESSAGES_PATH) == 1
    # Through a proxy, the SDK carries the call (stepline's own client speaks only directly).
    assert server.last.headers["user-agent"].startswith("AsyncAnthropic/")


@pytest.mark.parametrize("variable", ["NO_PROXY", "no_proxy"])
def test_no_proxy_sends_the_call_directly(
    server: FakeLLMServer, proxy: ForwardProxy, monkeypatch: pytest.MonkeyPatch, variable: str
) -> None:
    monkeypatch.setenv(variable, "127.0.0.1")

    completion = run(direct_call(server.base_url))

    assert completion.text == "echo: hi"
    assert proxy.targets == []
    assert server.count(ANTHROPIC_MESSAGES_PATH) == 1
    assert server.last.headers["user-agent"].startswith("stepline/")
