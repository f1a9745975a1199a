"""Tests of the fake LLM server itself, driven by the real ``anthropic`` SDK and by urllib.

If the fake drifts from the real wire format, every test built on it would test fiction; these
tests pin the fake to what the installed SDK actually accepts and how it maps errors.
"""

from __future__ import annotations

import asyncio
import json
import time
import urllib.error
import urllib.request
from typing import Any

import anthropic
import httpx2
import pytest

from tests.fakes import (
    ANTHROPIC_MESSAGES_PATH,
    OPENAI_CHAT_PATH,
    Disconnect,
    ErrorReply,
    FakeLLMServer,
    RecordedRequest,
    Reply,
    StreamError,
    iter_sse_events,
)
from tests.fakes.llm_server import ANTHROPIC_BATCHES_PATH, DEFAULT_THINKING

MODEL = "claude-test-model"
THINKER = "claude-haiku-5-5"  # thinks unasked, and shows its thinking
USER: list[anthropic.types.MessageParam] = [{"role": "user", "content": "hello there"}]


def create(client: anthropic.Anthropic, prompt: str = "hello there") -> anthropic.types.Message:
    return client.messages.create(
        model=MODEL, max_tokens=64, messages=[{"role": "user", "content": prompt}]
    )


def http(
    url: str,
    body: dict[str, Any] | None = None,
    headers: dict[str, str] | None = None,
    method: str = "POST",
) -> tuple[int, dict[str, str], bytes]:
    """A plain urllib request; returns (status, lower-cased headers, body) even for errors."""
    data = None if body is None else json.dumps(body).encode()
    request = urllib.request.Request(url, data=data, method=method)
    request.add_header("content-type", "application/json")
    for name, value in (headers or {}).items():
        request.add_header(name, value)
    try:
        with urllib.request.urlopen(request, timeout=5) as response:
            return response.status, _lower(response.headers.items()), response.read()
    except urllib.error.HTTPError as err:
        with err:
            return err.code, _lower(err.headers.items()), err.read()


def _lower(items: Any) -> dict[str, str]:
    return {name.lower(): value for name, value in items}


# --------------------------------------------------------------------------------------------
# Anthropic, non-streaming
# --------------------------------------------------------------------------------------------


def test_plain_completion_echoes_prompt_and_model(
    server: FakeLLMServer, client: anthropic.Anthropic
) -> None:
    message = create(client)

    assert message.id.startswith("msg_")
    assert message.role == "assistant"
    assert message.model == MODEL
    assert [block.type for block in message.content] == ["text"]
    assert message.content[0].text == "echo: hello there"  # type: ignore[union-attr]
    assert message.stop_reason == "end_turn"
    assert message.stop_sequence is None
    assert message.usage.input_tokens == 10
    assert message.usage.output_tokens == 5
    assert message.usage.cache_read_input_tokens == 0

    request = server.last
    assert request.path == ANTHROPIC_MESSAGES_PATH
    assert request.body["model"] == MODEL
    assert request.prompt == "hello there"
    assert request.stream is False
    # Surprise worth pinning: SDK 2.x sends api_key as a Bearer token, not as x-api-key.
    assert request.headers["authorization"] == "Bearer test-key"
    assert "anthropic-version" in request.headers


def test_reply_fields_are_reported(server: FakeLLMServer, client: anthropic.Anthropic) -> None:
    server.script(
        Reply(
            text="cut",
            stop_reason="max_tokens",
            input_tokens=7,
            output_tokens=64,
            model="claude-other",
            cache_creation_input_tokens=3,
            cache_read_input_tokens=4,
        )
    )

    message = create(client)

    assert message.content[0].text == "cut"  # type: ignore[union-attr]
    assert message.stop_reason == "max_tokens"
    assert message.model == "claude-other"
    assert message.usage.input_tokens == 7
    assert message.usage.output_tokens == 64
    assert message.usage.cache_creation_input_tokens == 3
    assert message.usage.cache_read_input_tokens == 4


def test_thinking_block_comes_first(server: FakeLLMServer, client: anthropic.Anthropic) -> None:
    server.script(Reply(text="answer", thinking="let me think"))

    message = create(client)

    assert [block.type for block in message.content] == ["thinking", "text"]
    thinking = message.content[0]
    assert thinking.type == "thinking"
    assert thinking.thinking == "let me think"
    assert thinking.signature
    assert message.content[1].text == "answer"  # type: ignore[union-attr]


def test_recorded_request_prompt_and_system_accept_blocks() -> None:
    anthropic_request = RecordedRequest(
        path=ANTHROPIC_MESSAGES_PATH,
        headers={},
        body={
            "system": [{"type": "text", "text": "be brief"}],
            "messages": [
                {"role": "user", "content": "first"},
                {"role": "assistant", "content": "reply"},
                {
                    "role": "user",
                    "content": [
                        {"type": "image", "source": {}},
                        {"type": "text", "text": "second"},
                        {"type": "text", "text": "third"},
                    ],
                },
            ],
        },
    )
    assert anthropic_request.prompt == "second\nthird"
    assert anthropic_request.system == "be brief"

    openai_request = RecordedRequest(
        path=OPENAI_CHAT_PATH,
        headers={},
        body={
            "messages": [
                {"role": "system", "content": "sys"},
                {"role": "user", "content": [{"type": "text", "text": "q"}]},
            ]
        },
    )
    assert openai_request.prompt == "q"
    assert openai_request.system == "sys"
    assert RecordedRequest(path="/", headers={}, body={}).system is None


# --------------------------------------------------------------------------------------------
# Anthropic, streaming
# --------------------------------------------------------------------------------------------


def test_stream_helper_yields_full_text_and_final_usage(
    server: FakeLLMServer, client: anthropic.Anthropic
) -> None:
    server.script(Reply(text="hello streaming world", thinking="hmm", output_tokens=9))

    with client.messages.stream(model=MODEL, max_tokens=64, messages=USER) as stream:
        pieces = list(stream.text_stream)
        final = stream.get_final_message()

    assert len(pieces) > 1  # really streamed in several deltas
    assert "".join(pieces) == "hello streaming world"
    assert [block.type for block in final.content] == ["thinking", "text"]
    assert final.content[0].thinking == "hmm"  # type: ignore[union-attr]
    assert final.content[0].signature  # type: ignore[union-attr]
    assert final.stop_reason == "end_turn"
    # message_delta's total replaces message_start's provisional count (not added to it).
    assert final.usage.output_tokens == 9
    assert final.usage.input_tokens == 10
    assert server.last.stream is True


def test_create_with_stream_true_sends_the_real_event_sequence(
    server: FakeLLMServer, client: anthropic.Anthropic
) -> None:
    server.script(Reply(text="abcdef"))

    stream = client.messages.create(model=MODEL, max_tokens=64, messages=USER, stream=True)
    events: list[Any] = list(stream)

    types = [event.type for event in events]
    # The SDK drops `ping` itself; everything else arrives in the documented order.
    assert types == [
        "message_start",
        "content_block_start",
        "content_block_delta",
        "content_block_delta",
        "content_block_delta",
        "content_block_stop",
        "message_delta",
        "message_stop",
    ]
    text = "".join(e.delta.text for e in events if e.type == "content_block_delta")
    assert text == "abcdef"


def test_raw_sse_wire_format(server: FakeLLMServer) -> None:
    status, headers, raw = http(
        server.base_url + ANTHROPIC_MESSAGES_PATH,
        {"model": MODEL, "max_tokens": 10, "messages": USER, "stream": True},
        {"x-api-key": "k"},
    )

    assert status == 200
    assert headers["content-type"].startswith("text/event-stream")
    events = list(iter_sse_events(raw))
    names = [name for name, _ in events]
    assert names[:3] == ["message_start", "content_block_start", "ping"]
    assert names[-2:] == ["message_delta", "message_stop"]
    for name, data in events:
        assert json.loads(data)["type"] == name
    assert server.last.headers["x-api-key"] == "k"


def test_async_client_streams_and_runs_requests_concurrently(server: FakeLLMServer) -> None:
    server.responder = lambda request: Reply(text=request.prompt.upper(), delay=0.2)

    async def main() -> tuple[list[str], float]:
        async with anthropic.AsyncAnthropic(
            api_key="test-key", base_url=server.base_url, max_retries=0
        ) as sdk:

            async def one(prompt: str) -> str:
                messages: list[anthropic.types.MessageParam] = [{"role": "user", "content": prompt}]
                async with sdk.messages.stream(
                    model=MODEL, max_tokens=64, messages=messages
                ) as stream:
                    return await stream.get_final_text()

            started = time.monotonic()
            texts = await asyncio.gather(*(one(f"p{i}") for i in range(5)))
            return list(texts), time.monotonic() - started

    texts, elapsed = asyncio.run(main())

    assert texts == ["P0", "P1", "P2", "P3", "P4"]
    assert elapsed < 0.8  # five 0.2 s replies overlapped rather than queued (1 s)
    assert server.count(ANTHROPIC_MESSAGES_PATH) == 5


def test_chunk_delay_spaces_out_the_deltas(
    server: FakeLLMServer, client: anthropic.Anthropic
) -> None:
    server.script(Reply(text="abcdefghi", thinking="hmm", chunk_delay=0.05))
    arrivals: list[float] = []

    with client.messages.stream(model=MODEL, max_tokens=64, messages=USER) as stream:
        for _ in stream.text_stream:
            arrivals.append(time.monotonic())
        final = stream.get_final_message()

    assert len(arrivals) == 3
    assert arrivals[-1] - arrivals[0] >= 0.09  # two more waits between the three text deltas
    assert [block.type for block in final.content] == ["thinking", "text"]


def test_chunk_delay_is_ignored_without_streaming(
    server: FakeLLMServer, client: anthropic.Anthropic
) -> None:
    server.script(Reply(text="abcdefghi", chunk_delay=5))
    started = time.monotonic()

    assert create(client).content[0].text == "abcdefghi"  # type: ignore[union-attr]
    assert time.monotonic() - started < 2


def test_stop_is_not_blocked_by_a_slow_stream() -> None:
    server = FakeLLMServer().start()
    received: list[str] = []
    try:
        server.script(Reply(text="abcdefghi", chunk_delay=30))
        with (
            anthropic.Anthropic(
                api_key="k", base_url=server.base_url, max_retries=0, timeout=0.2
            ) as sdk,
            pytest.raises((anthropic.APIConnectionError, httpx2.TransportError)),
            sdk.messages.stream(model=MODEL, max_tokens=64, messages=USER) as stream,
        ):
            received.extend(stream.text_stream)
    finally:
        started = time.monotonic()
        server.stop()
    assert received == []  # the read timed out while the server waited before a delta
    assert time.monotonic() - started < 1.0


# --------------------------------------------------------------------------------------------
# Anthropic, thinking the 5.x models do unasked
# --------------------------------------------------------------------------------------------


def ask(
    client: anthropic.Anthropic, model: str = THINKER, max_tokens: int = 4096, **extra: Any
) -> anthropic.types.Message:
    """A Messages call with ``extra`` in the body (``thinking``, ``output_config``)."""
    return client.messages.create(
        model=model, max_tokens=max_tokens, messages=USER, extra_body=extra or None
    )


def block_types(message: anthropic.types.Message) -> list[str]:
    return [block.type for block in message.content]


@pytest.mark.parametrize(
    ("model", "extra", "shown"),
    [
        (THINKER, {}, DEFAULT_THINKING),
        ("claude-opus-5", {"thinking": {"type": "adaptive"}}, DEFAULT_THINKING),
        ("claude-sonnet-5-5", {}, ""),  # display "omitted" by default
        ("claude-opus-5-5", {}, ""),
        ("claude-sonnet-5-5", {"thinking": {"type": "adaptive", "display": "summarized"}}, None),
        (THINKER, {"thinking": {"type": "adaptive", "display": "omitted"}}, ""),
        ("claude-opus-4-6", {"thinking": {"type": "adaptive"}}, DEFAULT_THINKING),  # asked
    ],
)
def test_a_model_that_thinks_sends_a_billed_thinking_block_before_the_text(
    server: FakeLLMServer,
    client: anthropic.Anthropic,
    model: str,
    extra: dict[str, Any],
    shown: str | None,
) -> None:
    server.script(Reply(text="answer", output_tokens=5))

    message = ask(client, model, **extra)

    assert block_types(message) == ["thinking", "text"]
    thinking = message.content[0]
    assert thinking.type == "thinking" and thinking.signature
    assert thinking.thinking == (DEFAULT_THINKING if shown is None else shown)
    assert message.content[1].text == "answer"  # type: ignore[union-attr]
    assert message.stop_reason == "end_turn"
    assert message.usage.output_tokens == server.default_thinking_tokens + 5


@pytest.mark.parametrize(
    ("model", "extra"),
    [
        (THINKER, {"thinking": {"type": "disabled"}}),
        ("claude-opus-5", {"thinking": {"type": "disabled"}, "output_config": {"effort": "high"}}),
        ("claude-sonnet-5-5", {"thinking": {"type": "between_tools"}}),
        ("claude-haiku-4-5", {}),  # thinks only when asked (extended thinking)
        ("claude-opus-4-8", {}),
        (MODEL, {}),
    ],
)
def test_no_thinking_block_where_the_model_does_not_think(
    server: FakeLLMServer, client: anthropic.Anthropic, model: str, extra: dict[str, Any]
) -> None:
    message = ask(client, model, **extra)

    assert block_types(message) == ["text"]
    assert message.usage.output_tokens == 5


def test_a_test_can_opt_out_of_the_default_thinking(
    server: FakeLLMServer, client: anthropic.Anthropic
) -> None:
    server.script(Reply(text="plain", thinking=""))

    assert block_types(ask(client)) == ["text"]

    server.think_by_default = False
    message = ask(client)

    assert block_types(message) == ["text"]
    assert message.usage.output_tokens == 5


def test_thinking_that_fills_max_tokens_leaves_only_thinking(
    server: FakeLLMServer, client: anthropic.Anthropic
) -> None:
    server.script(Reply(text="the answer"))

    message = ask(client, max_tokens=server.default_thinking_tokens)

    assert block_types(message) == ["thinking"]
    assert message.stop_reason == "max_tokens"
    assert message.usage.output_tokens == server.default_thinking_tokens


def test_thinking_and_text_share_max_tokens(
    server: FakeLLMServer, client: anthropic.Anthropic
) -> None:
    server.script(Reply(text="abcdefghij", output_tokens=10))

    message = ask(client, max_tokens=server.default_thinking_tokens + 5)

    assert block_types(message) == ["thinking", "text"]
    assert message.content[1].text == "abcde"  # type: ignore[union-attr]
    assert message.stop_reason == "max_tokens"
    assert message.usage.output_tokens == server.default_thinking_tokens + 5


def stream_shape(raw: bytes) -> list[tuple[str | None, str | None]]:
    """(event, block or delta type) per SSE event, runs of the same pair kept once."""
    shape: list[tuple[str | None, str | None]] = []
    for name, data in iter_sse_events(raw):
        payload = json.loads(data)
        kind = (payload.get("content_block") or payload.get("delta") or {}).get("type")
        if not shape or shape[-1] != (name, kind):
            shape.append((name, kind))
    return shape


def stream_raw(server: FakeLLMServer, model: str, max_tokens: int = 4096) -> bytes:
    body = {"model": model, "max_tokens": max_tokens, "messages": USER, "stream": True}
    status, _, raw = http(server.base_url + ANTHROPIC_MESSAGES_PATH, body, {"x-api-key": "k"})
    assert status == 200, raw
    return raw


def test_streamed_thinking_comes_first_in_the_order_the_api_sends_it(
    server: FakeLLMServer,
) -> None:
    server.script(Reply(text="abcdef", output_tokens=3))

    raw = stream_raw(server, THINKER)

    assert stream_shape(raw) == [
        ("message_start", None),
        ("content_block_start", "thinking"),
        ("ping", None),
        ("content_block_delta", "thinking_delta"),
        ("content_block_delta", "signature_delta"),
        ("content_block_stop", None),
        ("content_block_start", "text"),
        ("content_block_delta", "text_delta"),
        ("content_block_stop", None),
        ("message_delta", None),
        ("message_stop", None),
    ]
    final = [json.loads(data) for name, data in iter_sse_events(raw) if name == "message_delta"]
    assert final[0]["usage"]["output_tokens"] == server.default_thinking_tokens + 3


def test_an_error_mid_stream_comes_after_the_default_thinking(server: FakeLLMServer) -> None:
    server.script(StreamError(partial_text="par"))

    shape = stream_shape(stream_raw(server, THINKER))

    assert shape[1:] == [
        ("content_block_start", "thinking"),
        ("ping", None),
        ("content_block_delta", "thinking_delta"),
        ("content_block_delta", "signature_delta"),
        ("content_block_stop", None),
        ("content_block_start", "text"),
        ("content_block_delta", "text_delta"),
        ("error", None),
    ]


def test_streamed_omitted_thinking_sends_only_its_signature(server: FakeLLMServer) -> None:
    shape = stream_shape(stream_raw(server, "claude-sonnet-5-5"))

    assert shape[1:5] == [
        ("content_block_start", "thinking"),
        ("ping", None),
        ("content_block_delta", "signature_delta"),
        ("content_block_stop", None),
    ]


def test_a_stream_cut_off_while_thinking_has_no_text_block(
    server: FakeLLMServer, client: anthropic.Anthropic
) -> None:
    with client.messages.stream(model=THINKER, max_tokens=10, messages=USER) as stream:
        pieces = list(stream.text_stream)
        final = stream.get_final_message()

    assert pieces == []
    assert block_types(final) == ["thinking"]
    assert final.content[0].thinking == DEFAULT_THINKING  # type: ignore[union-attr]
    assert final.stop_reason == "max_tokens"
    assert final.usage.output_tokens == 10


def test_a_batch_request_thinks_like_a_live_one(server: FakeLLMServer) -> None:
    params = {"model": THINKER, "max_tokens": 4096, "messages": USER}
    url = server.base_url + ANTHROPIC_BATCHES_PATH
    headers = {"x-api-key": "k"}
    status, _, raw = http(url, {"requests": [{"custom_id": "a", "params": params}]}, headers)
    assert status == 200, raw

    status, _, lines = http(f"{url}/{json.loads(raw)['id']}/results", None, headers, "GET")

    assert status == 200, lines
    message = json.loads(lines)["result"]["message"]
    assert [block["type"] for block in message["content"]] == ["thinking", "text"]
    assert message["usage"]["output_tokens"] == server.default_thinking_tokens + 5


# --------------------------------------------------------------------------------------------
# Anthropic, errors
# --------------------------------------------------------------------------------------------


def test_rate_limit_maps_to_rate_limit_error_with_retry_after(
    server: FakeLLMServer, client: anthropic.Anthropic
) -> None:
    server.script(
        ErrorReply(429, "rate_limit_error", "Slow down", headers={"retry-after": "2"}),
    )

    with pytest.raises(anthropic.RateLimitError) as excinfo:
        create(client)

    error = excinfo.value
    assert error.status_code == 429
    assert error.response.headers["retry-after"] == "2"
    assert error.api_message == "Slow down"
    assert error.type == "rate_limit_error"
    assert "Slow down" in str(error)
    assert error.request_id is not None and error.request_id.startswith("req_")
    assert server.count() == 1  # max_retries=0: no retry


def test_sdk_retries_honour_retry_after_ms(server: FakeLLMServer) -> None:
    server.script(ErrorReply(429, "rate_limit_error", headers={"retry-after-ms": "10"}), Reply())

    with anthropic.Anthropic(api_key="k", base_url=server.base_url, max_retries=1) as sdk:
        message = create(sdk)

    assert message.content[0].text == "ok"  # type: ignore[union-attr]
    assert server.count(ANTHROPIC_MESSAGES_PATH) == 2
    assert [r.headers["x-stainless-retry-count"] for r in server.requests] == ["0", "1"]


def test_overloaded_529_maps_to_overloaded_error(
    server: FakeLLMServer, client: anthropic.Anthropic
) -> None:
    server.script(ErrorReply.overloaded())

    with pytest.raises(anthropic.OverloadedError) as excinfo:
        create(client)

    assert excinfo.value.status_code == 529
    assert excinfo.value.type == "overloaded_error"
    assert isinstance(excinfo.value, anthropic.InternalServerError)


def test_missing_api_key_is_401(server: FakeLLMServer) -> None:
    # The SDK refuses to send without credentials unless the header is explicitly omitted.
    with (
        anthropic.Anthropic(
            api_key="k",
            base_url=server.base_url,
            max_retries=0,
            default_headers={"Authorization": anthropic.omit},  # type: ignore[dict-item]
        ) as sdk,
        pytest.raises(anthropic.AuthenticationError) as excinfo,
    ):
        create(sdk)

    assert excinfo.value.type == "authentication_error"
    assert "authorization" not in server.last.headers
    assert server.count() == 1


@pytest.mark.parametrize("missing", ["model", "max_tokens", "messages"])
def test_missing_required_field_is_400_naming_it(server: FakeLLMServer, missing: str) -> None:
    body: dict[str, Any] = {"model": MODEL, "max_tokens": 10, "messages": USER}
    del body[missing]
    server.script(Reply(text="must not be used"))

    status, headers, raw = http(
        server.base_url + ANTHROPIC_MESSAGES_PATH, body, {"x-api-key": "sentinel"}
    )

    payload = json.loads(raw)
    assert status == 400
    assert payload["type"] == "error"
    assert payload["error"] == {
        "type": "invalid_request_error",
        "message": f"{missing}: Field required",
    }
    assert payload["request_id"] == headers["request-id"]
    assert server.pending == 1  # protocol rejections don't consume the script
    assert server.last.headers["x-api-key"] == "sentinel"


def test_stream_error_mid_stream_raises_after_partial_text(
    server: FakeLLMServer, client: anthropic.Anthropic
) -> None:
    server.script(StreamError(partial_text="partial", type="overloaded_error"))
    received: list[str] = []

    with (
        pytest.raises(anthropic.APIStatusError) as excinfo,
        client.messages.stream(model=MODEL, max_tokens=64, messages=USER) as stream,
    ):
        for text in stream.text_stream:
            received.append(text)

    assert "".join(received) == "partial"
    error = excinfo.value
    # The HTTP status was already 200, so the SDK cannot pick OverloadedError: callers must
    # classify mid-stream errors by `error.type`.
    assert error.type == "overloaded_error"
    assert error.status_code == 200
    assert not isinstance(error, anthropic.OverloadedError)


def test_stream_error_on_non_streaming_request_degrades_to_http_error(
    server: FakeLLMServer, client: anthropic.Anthropic
) -> None:
    server.script(StreamError(type="overloaded_error"))

    with pytest.raises(anthropic.OverloadedError):
        create(client)


def test_disconnect_raises_connection_error(
    server: FakeLLMServer, client: anthropic.Anthropic
) -> None:
    server.script(Disconnect())

    with pytest.raises(anthropic.APIConnectionError):
        create(client)

    assert server.count() == 1
    # The server (and the client's pool) recover: the next request is answered normally.
    assert create(client).content[0].text == "echo: hello there"  # type: ignore[union-attr]


def test_disconnect_mid_stream_raises_transport_error(
    server: FakeLLMServer, client: anthropic.Anthropic
) -> None:
    server.script(Disconnect(partial_text="half"))
    received: list[str] = []

    # The SDK wraps connection errors only while sending; a drop while reading the stream
    # surfaces as the raw httpx2 error. Accept either so this pins the fake, not the SDK.
    with (
        pytest.raises((anthropic.APIConnectionError, httpx2.TransportError)),
        client.messages.stream(model=MODEL, max_tokens=64, messages=USER) as stream,
    ):
        for text in stream.text_stream:
            received.append(text)

    assert "".join(received) == "half"


def test_timeout_raises_and_stop_is_not_blocked_by_delayed_reply() -> None:
    server = FakeLLMServer().start()
    try:
        server.script(Reply(delay=10))
        with (
            anthropic.Anthropic(
                api_key="k", base_url=server.base_url, max_retries=0, timeout=0.1
            ) as sdk,
            pytest.raises(anthropic.APITimeoutError),
        ):
            create(sdk)
    finally:
        started = time.monotonic()
        server.stop()
    assert time.monotonic() - started < 1.0


def test_responder_exception_becomes_500_and_is_recorded(
    server: FakeLLMServer, client: anthropic.Anthropic
) -> None:
    def broken(request: RecordedRequest) -> Reply:
        raise ValueError("bad responder")

    server.responder = broken

    with pytest.raises(anthropic.InternalServerError) as excinfo:
        create(client)

    assert "bad responder" in (excinfo.value.api_message or "")
    assert len(server.errors) == 1 and isinstance(server.errors[0], ValueError)


def test_unknown_path_is_404_with_anthropic_body(server: FakeLLMServer) -> None:
    status, _, raw = http(server.base_url + "/v1/nope", {"x": 1})

    assert status == 404
    assert json.loads(raw)["error"]["type"] == "not_found_error"
    assert server.count("/v1/nope") == 1


# --------------------------------------------------------------------------------------------
# Scripting and bookkeeping
# --------------------------------------------------------------------------------------------


def test_script_is_fifo_then_falls_back_to_responder(
    server: FakeLLMServer, client: anthropic.Anthropic
) -> None:
    server.script(Reply(text="first"), lambda request: Reply(text="second:" + request.prompt))
    server.script(ErrorReply(500, "api_error", "third fails"))

    texts = [create(client, "a").content[0].text, create(client, "b").content[0].text]  # type: ignore[union-attr]
    with pytest.raises(anthropic.InternalServerError):
        create(client, "c")
    fallback = create(client, "d").content[0].text  # type: ignore[union-attr]

    assert texts == ["first", "second:b"]
    assert fallback == "echo: d"
    assert server.pending == 0
    assert server.count() == 4
    assert server.count(ANTHROPIC_MESSAGES_PATH) == 4
    assert server.count(OPENAI_CHAT_PATH) == 0
    assert [r.prompt for r in server.requests] == ["a", "b", "c", "d"]


def test_when_routes_by_prompt_and_repeats_last_response(
    server: FakeLLMServer, client: anthropic.Anthropic
) -> None:
    server.when_prompt_contains("flaky", ErrorReply.overloaded(), Reply(text="recovered"))

    with pytest.raises(anthropic.OverloadedError):
        create(client, "a flaky step")
    results = [create(client, p).content[0].text for p in ("flaky again", "flaky", "calm")]  # type: ignore[union-attr]

    assert results == ["recovered", "recovered", "echo: calm"]


def test_reset_clears_requests_script_and_rules(
    server: FakeLLMServer, client: anthropic.Anthropic
) -> None:
    server.script(Reply(text="scripted"))
    server.when(lambda request: True, Reply(text="ruled"))
    create(client)
    requests = server.requests

    server.reset()

    assert server.count() == 0 and requests == []  # cleared in place
    assert server.pending == 0
    assert create(client).content[0].text == "echo: hello there"  # type: ignore[union-attr]


# --------------------------------------------------------------------------------------------
# OpenAI-compatible endpoint
# --------------------------------------------------------------------------------------------


def test_openai_non_streaming(server: FakeLLMServer) -> None:
    server.script(Reply(text="cut off", stop_reason="max_tokens", input_tokens=3, output_tokens=4))

    status, headers, raw = http(
        server.openai_base_url + "/chat/completions",
        {"model": "gpt-test", "messages": [{"role": "user", "content": "hi"}]},
    )

    assert status == 200
    assert headers["content-length"] == str(len(raw))
    payload = json.loads(raw)
    assert payload["id"].startswith("chatcmpl-")
    assert payload["object"] == "chat.completion"
    assert isinstance(payload["created"], int)
    assert payload["model"] == "gpt-test"
    assert payload["choices"] == [
        {
            "index": 0,
            "message": {"role": "assistant", "content": "cut off"},
            "finish_reason": "length",
        }
    ]
    usage = payload["usage"]
    assert (usage["prompt_tokens"], usage["completion_tokens"], usage["total_tokens"]) == (3, 4, 7)
    assert server.last.path == OPENAI_CHAT_PATH
    assert "authorization" not in server.last.headers  # no key needed here


def test_openai_streaming_with_include_usage(server: FakeLLMServer) -> None:
    server.script(Reply(text="streamed text", output_tokens=6))

    status, headers, raw = http(
        server.base_url + OPENAI_CHAT_PATH,
        {
            "model": "gpt-test",
            "messages": [{"role": "user", "content": "hi"}],
            "stream": True,
            "stream_options": {"include_usage": True},
        },
    )

    assert status == 200
    assert headers["content-type"].startswith("text/event-stream")
    datas = [data for _, data in iter_sse_events(raw)]
    assert datas[-1] == "[DONE]"
    chunks = [json.loads(data) for data in datas[:-1]]
    assert all(chunk["object"] == "chat.completion.chunk" for chunk in chunks)
    assert len({chunk["id"] for chunk in chunks}) == 1
    assert chunks[0]["choices"][0]["delta"]["role"] == "assistant"
    text = "".join(c["choices"][0]["delta"].get("content") or "" for c in chunks if c["choices"])
    assert text == "streamed text"
    assert chunks[-2]["choices"][0]["finish_reason"] == "stop"
    assert chunks[-1]["choices"] == []
    assert chunks[-1]["usage"]["completion_tokens"] == 6
    assert all(chunk["usage"] is None for chunk in chunks[:-1])


def test_openai_streaming_chunk_delay(server: FakeLLMServer) -> None:
    server.script(Reply(text="abcdefghi", chunk_delay=0.05))
    started = time.monotonic()

    _, _, raw = http(
        server.base_url + OPENAI_CHAT_PATH,
        {"model": "m", "messages": [{"role": "user", "content": "hi"}], "stream": True},
    )

    assert time.monotonic() - started >= 0.14  # one wait before each of the three deltas
    chunks = [json.loads(data) for _, data in iter_sse_events(raw) if data != "[DONE]"]
    text = "".join(c["choices"][0]["delta"].get("content") or "" for c in chunks if c["choices"])
    assert text == "abcdefghi"


def test_openai_streaming_without_include_usage_has_no_usage(server: FakeLLMServer) -> None:
    _, _, raw = http(
        server.base_url + OPENAI_CHAT_PATH,
        {"model": "m", "messages": [{"role": "user", "content": "hi"}], "stream": True},
    )

    chunks = [json.loads(data) for _, data in iter_sse_events(raw) if data != "[DONE]"]
    assert chunks[-1]["choices"][0]["finish_reason"] == "stop"
    assert all("usage" not in chunk for chunk in chunks)


def test_openai_error_body(server: FakeLLMServer) -> None:
    server.script(ErrorReply.rate_limited(retry_after=1, message="too fast"))

    status, headers, raw = http(
        server.base_url + OPENAI_CHAT_PATH,
        {"model": "m", "messages": [{"role": "user", "content": "hi"}]},
    )

    assert status == 429
    assert headers["retry-after"] == "1"
    assert json.loads(raw) == {
        "error": {"message": "too fast", "type": "rate_limit_error", "param": None, "code": None}
    }
