"""The OpenAI-compatible provider's two paths say the same thing and send the same request.

``OpenAICompatibleProvider`` sends unstreamed calls through stepline's own HTTP/1.1 client and
streams (and every call when a proxy applies) through the ``openai`` SDK (``OpenAISDK``);
``wire`` words both paths' errors. These tests send the same request down both paths to real
servers on 127.0.0.1 (the fake LLM server, a canned-reply server for replies the fake cannot
make, and a small forward proxy) and compare what comes back.
"""

from __future__ import annotations

import asyncio
from collections.abc import Coroutine
from typing import Any

import pytest

from stepline.errors import (
    ProviderAuthError,
    ProviderError,
    ProviderRequestError,
    RetryableProviderError,
)
from stepline.providers.base import Completion, Delivery, LLMRequest, Usage
from stepline.providers.openai import OpenAICompatibleProvider
from stepline.providers.openai.sdk import OpenAISDK
from tests.fakes import OPENAI_CHAT_PATH, Disconnect, ErrorReply, FakeLLMServer, Reply
from tests.fakes.http_servers import CannedServer, ForwardProxy, assert_same_error

REQUEST = LLMRequest(model="llama3.2", prompt="hi", max_tokens=16)
FULL_REQUEST = LLMRequest(
    model="llama3.2",
    prompt="hi",
    max_tokens=16,
    system="Answer briefly.",
    temperature=0.25,
    stop=("END", "\n\n"),
    extra={"top_p": 0.5, "seed": 3},
)
PREFIX = "OpenAI-compatible API"


def run(call: Coroutine[Any, Any, Any]) -> Any:
    return asyncio.run(call)


# --------------------------------------------------------------------------------------------
# The direct path and the SDK path: same errors, same requests
# --------------------------------------------------------------------------------------------


async def direct_call(
    base_url: str | None,
    delivery: Delivery | None = None,
    *,
    request: LLMRequest = REQUEST,
    api_key: str | None = "test-key",
) -> Completion:
    provider = OpenAICompatibleProvider(api_key=api_key, base_url=base_url)
    try:
        return await provider.complete(request, delivery or Delivery())
    finally:
        await provider.aclose()


async def sdk_call(
    base_url: str | None,
    delivery: Delivery | None = None,
    *,
    request: LLMRequest = REQUEST,
    api_key: str | None = "test-key",
) -> Completion:
    sdk = OpenAISDK(api_key=api_key, base_url=base_url)
    try:
        return await sdk.complete(request, delivery or Delivery())
    finally:
        await sdk.aclose()


def direct_failure(base_url: str, delivery: Delivery | None = None, **kwargs: Any) -> ProviderError:
    with pytest.raises(ProviderError) as direct:
        run(direct_call(base_url, delivery, **kwargs))
    return direct.value


def sdk_failure(base_url: str, delivery: Delivery | None = None, **kwargs: Any) -> ProviderError:
    with pytest.raises(ProviderError) as through_sdk:
        run(sdk_call(base_url, delivery, **kwargs))
    return through_sdk.value


def failures(
    base_url: str, delivery: Delivery | None = None, **kwargs: Any
) -> tuple[ProviderError, ProviderError]:
    """The errors the direct path and the SDK path raise for the same reply."""
    return direct_failure(base_url, delivery, **kwargs), sdk_failure(base_url, delivery, **kwargs)


@pytest.mark.parametrize(
    ("error_reply", "expected", "retry_after"),
    [
        (ErrorReply(400, "invalid_request_error", "max_tokens is too large"),
         ProviderRequestError, None),
        (ErrorReply(401, "invalid_api_key", "Incorrect API key provided"), ProviderAuthError, None),
        (ErrorReply(403, "permission_error", "not allowed to use this model"),
         ProviderRequestError, None),
        (ErrorReply(404, "not_found_error", "model 'llama3.2' not found"),
         ProviderRequestError, None),
        (ErrorReply.rate_limited(retry_after=7, message="slow down"),
         RetryableProviderError, 7.0),
        (ErrorReply(429, "rate_limit_error", "ms", headers={"retry-after-ms": "250"}),
         RetryableProviderError, 0.25),
        (ErrorReply(500, "server_error", "The server had an error"),
         RetryableProviderError, None),
        (ErrorReply(503, "server_error", "The engine is currently overloaded"),
         RetryableProviderError, None),
    ],
    ids=["400", "401", "403", "404", "429-retry-after", "429-retry-after-ms", "500", "503"],
)  # fmt: skip
def test_both_paths_raise_the_same_error_for_an_error_reply(
    server: FakeLLMServer,
    error_reply: ErrorReply,
    expected: type[ProviderError],
    retry_after: float | None,
) -> None:
    server.script(error_reply, error_reply)

    direct, through_sdk = failures(server.openai_base_url)

    assert_same_error(direct, through_sdk, api_name=PREFIX)
    assert type(direct) is expected
    assert direct.status_code == error_reply.status
    assert getattr(direct, "retry_after", None) == retry_after
    assert direct.message == f"{PREFIX} {error_reply.status}: {error_reply.message}"
    assert error_reply.message in through_sdk.message  # the API's own words, passed on
    assert direct.hint == ("check OPENAI_API_KEY" if error_reply.status == 401 else None)
    assert server.count(OPENAI_CHAT_PATH) == 2
    assert server.pending == 0


GATEWAY_PAGE = (
    b"<html>\r\n<head><title>502 Bad Gateway</title></head>\r\n"
    b"<body>\r\n<center><h1>502 Bad Gateway</h1></center>\r\n</body>\r\n</html>\r\n"
)
LONG_PAGE = b"<html>" + b"x" * 2000 + b"</html>"

OTHER_ERROR_BODIES = [
    pytest.param(502, "text/html", GATEWAY_PAGE, id="502-html"),
    pytest.param(503, "text/html", LONG_PAGE, id="503-long-html"),
    pytest.param(
        500, "application/json", b'{"message": "model is loading"}', id="top-level-message"
    ),
    pytest.param(500, "application/json", b'{"detail": "x"}', id="no-message"),
    pytest.param(500, "text/plain", b"", id="empty"),
]


@pytest.mark.parametrize(("status", "content_type", "body"), OTHER_ERROR_BODIES)
def test_both_paths_classify_other_error_bodies_alike(
    status: int, content_type: str, body: bytes
) -> None:
    with CannedServer(status, content_type, body) as canned:
        direct, through_sdk = failures(canned.base_url)
        assert canned.requests == 2

    assert_same_error(direct, through_sdk, api_name=PREFIX)
    assert type(direct) is RetryableProviderError
    assert direct.status_code == status
    for error in (direct, through_sdk):
        assert len(error.message) < 600  # a long page is cut (MAX_MESSAGE_CHARS)


# The wording, exactly, where stepline words it: the direct path, from the reply's own body.
@pytest.mark.parametrize(
    ("status", "content_type", "body", "message"),
    [
        pytest.param(
            502, "text/html", GATEWAY_PAGE, f"{PREFIX} 502: {GATEWAY_PAGE.decode().strip()}",
            id="502-html",
        ),
        pytest.param(
            503, "text/html", LONG_PAGE, f"{PREFIX} 503: {LONG_PAGE.decode()}"[:500] + " [...]",
            id="503-long-html",
        ),
        pytest.param(
            500, "application/json", b'{"message": "model is loading"}',
            f"{PREFIX} 500: model is loading",
            id="top-level-message",
        ),
        pytest.param(
            500, "application/json", b'{"detail": "x"}',
            f"{PREFIX} 500: Error code: 500 - {{'detail': 'x'}}",
            id="no-message",
        ),
        pytest.param(
            500, "text/plain", b"", f"{PREFIX} 500: Error code: 500", id="empty",
        ),
    ],
)  # fmt: skip
def test_the_direct_path_words_other_error_bodies_from_the_body(
    status: int, content_type: str, body: bytes, message: str
) -> None:
    with CannedServer(status, content_type, body) as canned:
        direct = direct_failure(canned.base_url)

    assert direct.message == message


def test_both_paths_refuse_a_redirect_alike() -> None:
    with CannedServer(307, "text/plain", b"", location="https://elsewhere.test/v1") as canned:
        direct, through_sdk = failures(canned.base_url)
        assert canned.requests == 2  # neither followed it

    assert_same_error(direct, through_sdk, api_name=PREFIX)
    assert type(direct) is ProviderRequestError
    assert direct.status_code == 307
    assert direct.message == (
        f"{PREFIX} 307: redirected to https://elsewhere.test/v1; "
        "set base_url to the address it names"
    )
    assert "redirected to https://elsewhere.test/v1" in through_sdk.message


def test_both_paths_raise_the_same_error_for_a_200_that_is_not_json() -> None:
    with CannedServer(200, "text/html", b"<html>captive portal: please log in</html>") as canned:
        direct = direct_failure(canned.base_url)
        assert type(direct) is RetryableProviderError
        assert direct.status_code is None
        assert "not a chat completion" in direct.message
        assert "captive portal" in direct.message

        through_sdk = sdk_failure(canned.base_url)

    assert_same_error(direct, through_sdk, api_name=PREFIX)
    assert "not a chat completion" in through_sdk.message


def test_both_paths_retry_a_200_without_choices() -> None:
    body = b'{"id": "c1", "object": "chat.completion", "model": "llama3.2", "choices": []}'
    with CannedServer(200, "application/json", body) as canned:
        direct = direct_failure(canned.base_url)
        assert type(direct) is RetryableProviderError  # a reply of the wrong shape
        assert direct.message == f"{PREFIX}: the response has no choices"

        through_sdk = sdk_failure(canned.base_url)

    assert_same_error(direct, through_sdk, api_name=PREFIX)
    assert "no choices" in through_sdk.message


def test_both_paths_time_out_alike(server: FakeLLMServer) -> None:
    server.script(Reply(delay=2.0), Reply(delay=2.0))  # cut short when the fake stops

    direct, through_sdk = failures(server.openai_base_url, Delivery(timeout=0.2))

    assert_same_error(direct, through_sdk, api_name=PREFIX)
    assert type(direct) is RetryableProviderError
    assert direct.status_code is None
    assert direct.message == f"{PREFIX}: the request timed out"
    assert "timed out" in through_sdk.message


def test_both_paths_retry_a_connection_closed_without_a_reply(server: FakeLLMServer) -> None:
    server.script(Disconnect(), Disconnect())

    direct, through_sdk = failures(server.openai_base_url)

    # Same class, status (none) and so the same retry decision. The words differ: httpx
    # reports a connection closed before any reply as a connection error ("cannot connect
    # (Connection error.)"), http1 as a connection that broke after the request was sent.
    assert_same_error(direct, through_sdk, api_name=PREFIX)
    assert type(direct) is RetryableProviderError
    assert direct.status_code is None
    assert direct.retry_after is None
    assert server.count(OPENAI_CHAT_PATH) == 2


# --------------------------------------------------------------------------------------------
# Same request, same completion
# --------------------------------------------------------------------------------------------

CACHED_REPLY = Reply(
    text="short", stop_reason="max_tokens", input_tokens=7, output_tokens=3,
    cache_read_input_tokens=4,
)  # fmt: skip
EXPECTED_COMPLETION = Completion(
    text="short",
    model="llama3.2",
    stop_reason="max_tokens",
    usage=Usage(input_tokens=7, output_tokens=3, cache_read_tokens=4),
)


def test_the_direct_path_returns_the_completion(server: FakeLLMServer) -> None:
    server.script(CACHED_REPLY)

    completion = run(direct_call(server.openai_base_url))

    assert completion == EXPECTED_COMPLETION
    sent = server.last
    assert sent.body == {
        "model": "llama3.2",
        "messages": [{"role": "user", "content": "hi"}],
        "max_tokens": 16,
    }
    assert sent.headers["user-agent"].startswith("stepline/")  # it took the direct path
    assert sent.headers["authorization"] == "Bearer test-key"


def test_both_paths_return_the_same_completion(server: FakeLLMServer) -> None:
    server.script(CACHED_REPLY, CACHED_REPLY)

    direct = run(direct_call(server.openai_base_url, request=FULL_REQUEST))
    assert direct == EXPECTED_COMPLETION
    through_sdk = run(sdk_call(server.openai_base_url, request=FULL_REQUEST))

    assert through_sdk == direct
    sent_direct, sent_by_sdk = server.requests_for(OPENAI_CHAT_PATH)
    assert sent_direct.body == sent_by_sdk.body


def sent_by_both(
    server: FakeLLMServer, *, request: LLMRequest = REQUEST, api_key: str | None = "test-key"
) -> tuple[dict[str, str], dict[str, Any], dict[str, str], dict[str, Any]]:
    """Headers and body each path sent for ``request``.

    The fake answers with a 400, which both paths read alike (above), so what was sent is
    compared apart from how each reads a successful reply.
    """
    refusal = ErrorReply(400, "invalid_request_error", "refused")
    server.script(refusal, refusal)
    direct, through_sdk = failures(server.openai_base_url, request=request, api_key=api_key)
    assert_same_error(direct, through_sdk, api_name=PREFIX)
    assert direct.message == f"{PREFIX} 400: refused"
    sent_direct, sent_by_sdk = server.requests_for(OPENAI_CHAT_PATH)
    assert sent_direct.headers["user-agent"].startswith("stepline/")
    assert sent_by_sdk.headers["user-agent"].startswith("AsyncOpenAI/")
    return sent_direct.headers, sent_direct.body, sent_by_sdk.headers, sent_by_sdk.body


def test_both_paths_send_the_same_body(server: FakeLLMServer) -> None:
    direct_headers, direct_body, sdk_headers, sdk_body = sent_by_both(server, request=FULL_REQUEST)

    assert direct_body == sdk_body
    assert direct_body == {
        "model": "llama3.2",
        "messages": [
            {"role": "system", "content": "Answer briefly."},
            {"role": "user", "content": "hi"},
        ],
        "max_tokens": 16,
        "temperature": 0.25,
        "stop": ["END", "\n\n"],
        "top_p": 0.5,
        "seed": 3,
    }
    assert direct_headers["authorization"] == sdk_headers["authorization"] == "Bearer test-key"
    assert direct_headers["content-type"] == sdk_headers["content-type"] == "application/json"
    assert "openai-organization" not in direct_headers
    assert "openai-organization" not in sdk_headers


def test_extra_fields_override_the_standard_ones_on_both_paths(server: FakeLLMServer) -> None:
    request = LLMRequest(model="llama3.2", prompt="hi", max_tokens=16, extra={"max_tokens": 32})

    _, direct_body, _, sdk_body = sent_by_both(server, request=request)

    assert direct_body == sdk_body
    assert direct_body["max_tokens"] == 32


def test_without_a_key_both_paths_send_a_placeholder(server: FakeLLMServer) -> None:
    direct_headers, _, sdk_headers, _ = sent_by_both(server, api_key=None)

    assert direct_headers["authorization"] == sdk_headers["authorization"] == "Bearer no-key"


def test_both_paths_send_the_organisation_and_project_from_the_environment(
    server: FakeLLMServer, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("OPENAI_ORG_ID", "org-test")
    monkeypatch.setenv("OPENAI_PROJECT_ID", "proj_test")

    direct_headers, _, sdk_headers, _ = sent_by_both(server)

    assert direct_headers["openai-organization"] == sdk_headers["openai-organization"]
    assert direct_headers["openai-organization"] == "org-test"
    assert direct_headers["openai-project"] == sdk_headers["openai-project"] == "proj_test"


def test_the_base_url_comes_from_the_environment(
    server: FakeLLMServer, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("OPENAI_BASE_URL", server.openai_base_url)

    completion = run(direct_call(None))

    assert completion.text == "echo: hi"
    assert server.count(OPENAI_CHAT_PATH) == 1
    assert server.last.headers["user-agent"].startswith("stepline/")


# --------------------------------------------------------------------------------------------
# A proxy from the environment
# --------------------------------------------------------------------------------------------


def test_a_proxy_from_the_environment_is_used(server: FakeLLMServer, proxy: ForwardProxy) -> None:
    # A 404 rather than a completion: through a proxy the SDK carries the call, and its
    # successful replies fail today (see test_both_paths_return_the_same_completion). The
    # routing is the point here, and the reply comes back through the proxy either way.
    server.script(ErrorReply(404, "not_found_error", "model 'llama3.2' not found"))

    error = direct_failure(server.openai_base_url)

    assert type(error) is ProviderRequestError  # through the SDK: its contract, not its words
    assert error.status_code == 404
    assert error.message.startswith(f"{PREFIX} 404")
    assert "model 'llama3.2' not found" in error.message
    assert proxy.targets == [f"{server.openai_base_url}/chat/completions"]
    assert server.count(OPENAI_CHAT_PATH) == 1
    # Through a proxy, the SDK carries the call (stepline's own client speaks only directly).
    assert server.last.headers["user-agent"].startswith("AsyncOpenAI/")


def test_a_call_through_a_proxy_completes(server: FakeLLMServer, proxy: ForwardProxy) -> None:
    completion = run(direct_call(server.openai_base_url))

    assert completion.text == "echo: hi"
    assert proxy.targets == [f"{server.openai_base_url}/chat/completions"]


@pytest.mark.parametrize("variable", ["NO_PROXY", "no_proxy"])
def test_no_proxy_sends_the_call_directly(
    server: FakeLLMServer, proxy: ForwardProxy, monkeypatch: pytest.MonkeyPatch, variable: str
) -> None:
    monkeypatch.setenv(variable, "127.0.0.1")

    completion = run(direct_call(server.openai_base_url))

    assert completion.text == "echo: hi"
    assert proxy.targets == []
    assert server.count(OPENAI_CHAT_PATH) == 1
    assert server.last.headers["user-agent"].startswith("stepline/")
