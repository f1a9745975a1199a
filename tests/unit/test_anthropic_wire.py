"""The Anthropic provider's two paths fail alike, and its own API tables keep runs inside what
the installed SDK accepts.

``AnthropicProvider`` sends unstreamed calls through stepline's own HTTP/1.1 client and
everything else (and every call when a proxy applies) through the SDK; ``wire`` words both
paths' errors. These tests send the same request down both paths to real servers on
127.0.0.1 (the fake LLM server, a canned-reply server for replies the fake cannot make, and a
small forward proxy) and compare stepline's contract: class, status, retry decision, hint, and
that both messages name the status and the provider, never the SDK's own words.
"""

from __future__ import annotations

import asyncio
import datetime
import json
import re
import warnings
from collections.abc import Coroutine
from importlib import resources
from typing import Any

import anthropic
import anthropic._constants
import anthropic.resources.messages.messages
import httpx2
import pytest

from stepline.errors import (
    ProviderAuthError,
    ProviderError,
    ProviderRequestError,
    RetryableProviderError,
)
from stepline.providers.anthropic import AnthropicProvider, wire
from stepline.providers.anthropic.sdk import AnthropicSDK, reply_errors
from stepline.providers.base import Completion, Delivery, LLMRequest
from stepline.providers.failures import transport_failure
from tests.fakes import ANTHROPIC_MESSAGES_PATH, Disconnect, ErrorReply, FakeLLMServer, Reply
from tests.fakes.http_servers import CannedServer, ForwardProxy, assert_same_error

REQUEST = LLMRequest(model="claude-haiku-4-5", prompt="hi", max_tokens=16)
API_NAME = "Anthropic API"


def run(call: Coroutine[Any, Any, Any]) -> Any:
    return asyncio.run(call)


def same_failure(direct: ProviderError, through_sdk: ProviderError) -> None:
    assert_same_error(direct, through_sdk, api_name=API_NAME)


# --------------------------------------------------------------------------------------------
# api-tables.json: stepline's own, dated data; checked against what the installed SDK does
# --------------------------------------------------------------------------------------------

TABLES = json.loads(resources.files(wire.__package__).joinpath("api-tables.json").read_text())
UPDATED = datetime.date.fromisoformat(TABLES["updated"])
SDK_VERSION = f"anthropic {anthropic.__version__}"


def sdk_constant(name: str, *modules: Any) -> Any:
    """The SDK's table ``name`` from the first of ``modules`` that has it, else a skip."""
    for module in modules:
        if hasattr(module, name):
            return getattr(module, name)
    pytest.skip(f"{SDK_VERSION} has no {name} where stepline looks for it")


def sdk_refuses_unstreamed(model: str, max_tokens: int) -> bool:
    """Whether the installed SDK refuses an unstreamed call (it raises before sending)."""
    reply = {
        "id": "msg_1", "type": "message", "role": "assistant", "model": model, "content": [],
        "stop_reason": "end_turn", "stop_sequence": None,
        "usage": {"input_tokens": 1, "output_tokens": 1},
    }  # fmt: skip
    transport = httpx2.MockTransport(lambda request: httpx2.Response(200, json=reply))
    client = anthropic.Anthropic(
        api_key="test-key", max_retries=0, http_client=httpx2.Client(transport=transport)
    )
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", DeprecationWarning)  # a deprecated model: still sent
        try:
            client.messages.with_raw_response.create(
                model=model, max_tokens=max_tokens, messages=[{"role": "user", "content": "hi"}]
            )
        except ValueError as exc:
            assert "Streaming is required" in str(exc)
            return True
        finally:
            client.close()
    return False


def test_the_tables_are_dated() -> None:
    assert datetime.date(2026, 12, 7) <= UPDATED <= datetime.date.today()
    for end_of_life in TABLES["deprecated"].values():
        wire.end_of_life_date(end_of_life)  # every date reads as one


def test_every_call_the_installed_sdk_refuses_unstreamed_is_streamed() -> None:
    """The SDK raises before sending an unstreamed call that could take over ten minutes:
    ``must_stream`` must be true for every such call, or the direct path would send what the
    SDK path cannot (streaming more often than the SDK needs is harmless)."""
    sdk_limits = sdk_constant("MODEL_NONSTREAMING_TOKENS", anthropic._constants)
    ours = TABLES["nonstreaming_max_tokens"]
    models = {*sdk_limits, *ours, REQUEST.model, "claude-sonnet-4-5", "claude-opus-4-6"}
    for model in sorted(models):
        limits = {sdk_limits.get(model), ours.get(model), wire.NONSTREAMING_MAX_TOKENS}
        for limit in filter(None, limits):
            for max_tokens in (limit - 1, limit, limit + 1):
                request = LLMRequest(model=model, prompt="hi", max_tokens=max_tokens)
                if sdk_refuses_unstreamed(model, max_tokens):
                    assert wire.must_stream(request), (
                        f"{SDK_VERSION} refuses {model} at max_tokens={max_tokens} unstreamed; "
                        "add the model's limit to nonstreaming_max_tokens in api-tables.json"
                    )


def test_the_api_version_is_a_version_date() -> None:
    """The direct path sends our dated version, which need not be the installed SDK's; it
    must be a version date no later than the table, as the SDK's is."""
    version = datetime.date.fromisoformat(wire.api_version())
    assert version <= UPDATED
    sdk_version = sdk_constant("ANTHROPIC_API_VERSION", anthropic._constants)
    assert re.fullmatch(r"\d{4}-\d{2}-\d{2}", sdk_version)  # the same kind of value


def test_every_model_the_installed_sdk_deprecates_gets_a_notice() -> None:
    """Our table keeps retired models the SDK has dropped; it must hold every one the SDK
    lists, with the date the SDK gives."""
    sdk_table = sdk_constant(
        "DEPRECATED_MODELS",
        getattr(anthropic, "_data", None),
        anthropic.resources.messages.messages,
    )
    missing = {
        model: date for model, date in sdk_table.items() if TABLES["deprecated"].get(model) != date
    }
    assert not missing, (
        f"{SDK_VERSION} lists deprecations api-tables.json lacks: {missing}; check Anthropic's "
        "model deprecations page and add them with a new updated date"
    )
    for model in sdk_table:
        assert wire.deprecation_notice(model) is not None


def test_a_deprecation_notice_says_whether_the_date_has_passed() -> None:
    on_the_day = datetime.date(2026, 11, 30)
    day_after = datetime.date(2026, 12, 1)

    assert wire.deprecation_notice("claude-sonnet-4-5", today=on_the_day) == (
        "model claude-sonnet-4-5 is deprecated and reaches end of life on November 30th, 2026; "
        "migrate"
    )
    assert wire.deprecation_notice("claude-sonnet-4-5", today=day_after) == (
        "model claude-sonnet-4-5 was retired on November 30th, 2026; migrate"
    )
    assert wire.deprecation_notice("claude-opus-4-1-20250805", today=day_after) == (
        "model claude-opus-4-1-20250805 was retired on August 5th, 2026; migrate"
    )
    assert wire.deprecation_notice("claude-haiku-4-5") is None


# --------------------------------------------------------------------------------------------
# A stream that breaks after its status line, whichever way the SDK reports it
# --------------------------------------------------------------------------------------------


# httpx's own classes as they look to ``transport_failure`` (an SDK on httpx, not httpx2).
HttpxTransportError = type("TransportError", (Exception,), {"__module__": "httpx"})
HttpxRemoteProtocolError = type(
    "RemoteProtocolError", (HttpxTransportError,), {"__module__": "httpx._exceptions"}
)


def sdk_connection_error(cause: Exception) -> anthropic.APIConnectionError:
    """How 2.17 on reports a read that failed mid-stream: its connection error, the cause kept."""
    request = httpx2.Request("POST", "http://127.0.0.1:1/v1/messages")
    error = anthropic.APIConnectionError(
        message="Connection to 127.0.0.1:1 failed", request=request
    )
    error.__cause__ = cause
    return error


DROPPED = "peer closed connection without sending complete message body"


@pytest.mark.parametrize(
    "raised",
    [
        httpx2.RemoteProtocolError(DROPPED),  # 2.12 lets the transport's exception through
        sdk_connection_error(httpx2.RemoteProtocolError(DROPPED)),  # 2.17 wraps it
        HttpxRemoteProtocolError(DROPPED),  # the transport under httpx's name
    ],
    ids=["transport", "sdk-wrapped", "httpx-named"],
)
def test_a_dropped_stream_says_the_connection_broke_during_the_reply(raised: Exception) -> None:
    with pytest.raises(RetryableProviderError) as caught, reply_errors():
        raise raised

    assert caught.value.message == (
        f"{API_NAME}: the connection broke during the reply ({DROPPED})"
    )
    assert caught.value.__cause__ is raised


@pytest.mark.parametrize(
    "raised",
    [
        httpx2.ReadTimeout("timed out"),
        anthropic.APITimeoutError(request=httpx2.Request("POST", "http://127.0.0.1:1/")),
    ],
    ids=["transport", "sdk"],
)
def test_a_stalled_stream_says_it_timed_out(raised: Exception) -> None:
    with pytest.raises(RetryableProviderError) as caught, reply_errors():
        raise raised

    assert caught.value.message.startswith(f"{API_NAME}: the reply stalled and timed out")


def test_other_failures_during_the_reply_pass_through() -> None:
    with pytest.raises(KeyError), reply_errors():
        raise KeyError("content")
    assert transport_failure(httpx2.DecodingError("bad gzip")) is None  # not the connection
    assert transport_failure(ValueError()) is None


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

    same_failure(direct, through_sdk)
    assert type(direct) is expected
    assert getattr(direct, "retry_after", None) == retry_after
    if error_reply.status >= 400:
        assert direct.status_code == error_reply.status
        assert direct.message == f"Anthropic API {error_reply.status}: {error_reply.message}"
        assert error_reply.message in through_sdk.message  # the API's own words, passed on
    else:
        for error in (direct, through_sdk):
            assert "not a Messages response" in error.message
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

    same_failure(direct, through_sdk)
    assert type(direct) is RetryableProviderError
    assert direct.status_code == status
    assert direct.message.startswith(f"Anthropic API {status}: ")  # worded by stepline
    for error in (direct, through_sdk):
        assert len(error.message) < 600  # a long page is cut, on both paths


def test_both_paths_refuse_a_redirect_alike() -> None:
    with CannedServer(307, "text/plain", b"", location="https://elsewhere.test/v1") as canned:
        direct, through_sdk = failures(canned.base_url)
        assert canned.requests == 2  # neither followed it

    same_failure(direct, through_sdk)
    assert type(direct) is ProviderRequestError
    for error in (direct, through_sdk):  # neither SDK follows it; stepline says where it leads
        assert "redirected to https://elsewhere.test/v1" in error.message


def test_both_paths_raise_the_same_error_for_a_200_that_is_not_json() -> None:
    with CannedServer(200, "text/html", b"<html>captive portal: please log in</html>") as canned:
        direct, through_sdk = failures(canned.base_url)

    same_failure(direct, through_sdk)
    assert type(direct) is RetryableProviderError
    for error in (direct, through_sdk):  # both read the raw body with wire.completion_from_body
        assert "not a Messages response" in error.message
        assert "captive portal" in error.message


def test_both_paths_time_out_alike(server: FakeLLMServer) -> None:
    server.script(Reply(delay=2.0), Reply(delay=2.0))  # cut short when the fake stops

    direct, through_sdk = failures(server.base_url, Delivery(timeout=0.2))

    same_failure(direct, through_sdk)
    assert type(direct) is RetryableProviderError
    assert direct.message == "Anthropic API: the request timed out"
    assert "timed out" in through_sdk.message


def test_both_paths_retry_a_connection_closed_without_a_reply(server: FakeLLMServer) -> None:
    server.script(Disconnect(), Disconnect())

    direct, through_sdk = failures(server.base_url)

    # Same class, status (none) and so the same retry decision. The words differ: httpx
    # reports a connection closed before any reply as a connection error ("cannot connect
    # (Connection error.)"), http1 as a connection that broke after the request was sent.
    same_failure(direct, through_sdk)
    assert type(direct) is RetryableProviderError
    assert direct.status_code is None


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
    assert sent_direct.headers["anthropic-version"] == wire.api_version()  # our dated table's
    assert "anthropic-version" in sent_by_sdk.headers  # the installed SDK's own


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
