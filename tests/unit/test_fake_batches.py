"""Tests of the fake server's Message Batches API and prompt-cache simulation, via the real SDK.

A batch provider and cache accounting will be tested against these features of the fake, so
they are pinned here to what the installed ``anthropic`` SDK sends and parses: if the fake's
batch objects or usage fields drifted from the wire format, the SDK would fail these tests.
"""

from __future__ import annotations

import json
import time
import urllib.error
import urllib.request
from datetime import timedelta
from typing import Any

import anthropic
import pytest
from anthropic.types.messages import MessageBatch, MessageBatchIndividualResponse

from tests.fakes.llm_server import (
    ANTHROPIC_BATCHES_PATH,
    ANTHROPIC_MESSAGES_PATH,
    BatchExpired,
    Disconnect,
    ErrorReply,
    FakeLLMServer,
    RecordedRequest,
    Reply,
    StreamError,
)

MODEL = "claude-test-model"
#: Long enough to be cached once ``cache_min_tokens`` is lowered to 5 (eight words).
LONG_SYSTEM = "you are a careful assistant who reads every word"


def batch_request(custom_id: str, prompt: str) -> dict[str, Any]:
    messages = [{"role": "user", "content": prompt}]
    return {
        "custom_id": custom_id,
        "params": {"model": MODEL, "max_tokens": 64, "messages": messages},
    }


def create_batch(client: anthropic.Anthropic, *prompts: str) -> MessageBatch:
    """A batch with one request per prompt, custom ids ``item-0``, ``item-1``, ..."""
    requests: Any = [batch_request(f"item-{i}", prompt) for i, prompt in enumerate(prompts)]
    return client.messages.batches.create(requests=requests)


def results_by_id(
    client: anthropic.Anthropic, batch_id: str
) -> tuple[list[str], dict[str, MessageBatchIndividualResponse]]:
    """The results' custom ids in the order they came, and the results by custom id."""
    lines = list(client.messages.batches.results(batch_id))
    return [line.custom_id for line in lines], {line.custom_id: line for line in lines}


def http(
    url: str, body: dict[str, Any] | None = None, *, method: str = "POST", key: bool = True
) -> tuple[int, dict[str, Any]]:
    """A plain urllib call for what the SDK will not send; returns (status, JSON body)."""
    data = None if body is None else json.dumps(body).encode()
    request = urllib.request.Request(url, data=data, method=method)
    request.add_header("content-type", "application/json")
    if key:
        request.add_header("x-api-key", "k")
    try:
        with urllib.request.urlopen(request, timeout=5) as response:
            return response.status, json.loads(response.read())
    except urllib.error.HTTPError as err:
        with err:
            return err.code, json.loads(err.read())


def cached_system(text: str = LONG_SYSTEM) -> list[anthropic.types.TextBlockParam]:
    return [{"type": "text", "text": text, "cache_control": {"type": "ephemeral"}}]


def ask(
    client: anthropic.Anthropic, system: Any, prompt: str = "hi", model: str = MODEL
) -> anthropic.types.Usage:
    message = client.messages.create(
        model=model,
        max_tokens=64,
        system=system,
        messages=[{"role": "user", "content": prompt}],
    )
    return message.usage


# --------------------------------------------------------------------------------------------
# Create and retrieve
# --------------------------------------------------------------------------------------------


def test_create_returns_an_in_progress_batch_and_records_requests_apart(
    server: FakeLLMServer, client: anthropic.Anthropic
) -> None:
    server.batch_processing_time = 60

    batch = create_batch(client, "one", "two", "three")

    assert batch.id.startswith("msgbatch_")
    assert batch.type == "message_batch"
    assert batch.processing_status == "in_progress"
    assert batch.request_counts.processing == 3
    assert batch.request_counts.succeeded == 0
    assert batch.ended_at is None
    assert batch.results_url is None
    assert batch.cancel_initiated_at is None
    assert batch.expires_at - batch.created_at == timedelta(hours=24)
    # The create call is recorded; the requests inside it are kept apart from live calls.
    assert server.count(ANTHROPIC_BATCHES_PATH) == 1
    assert server.count(ANTHROPIC_MESSAGES_PATH) == 0
    assert [r.custom_id for r in server.batch_requests] == ["item-0", "item-1", "item-2"]
    assert [r.prompt for r in server.batch_requests] == ["one", "two", "three"]
    assert server.batch_requests[0].model == MODEL
    assert len(server.batches[batch.id].requests) == 3


def test_batch_stays_in_progress_until_processing_time_has_passed(
    server: FakeLLMServer, client: anthropic.Anthropic
) -> None:
    server.batch_processing_time = 0.3
    batch = create_batch(client, "one", "two", "three")

    early = client.messages.batches.retrieve(batch.id)
    time.sleep(0.35)
    late = client.messages.batches.retrieve(batch.id)

    assert early.processing_status == "in_progress"
    assert early.request_counts.processing == 3  # counts move only when the batch ends
    assert early.results_url is None
    assert late.processing_status == "ended"
    assert late.ended_at is not None and late.ended_at > late.created_at
    assert late.request_counts.processing == 0
    assert late.request_counts.succeeded == 3
    expected_url = f"{server.base_url}{ANTHROPIC_BATCHES_PATH}/{batch.id}/results"
    assert late.results_url == expected_url
    assert server.count(f"{ANTHROPIC_BATCHES_PATH}/{batch.id}") == 2


def test_results_are_matched_by_custom_id_and_report_each_outcome(
    server: FakeLLMServer, client: anthropic.Anthropic
) -> None:
    server.when_prompt_contains("bad", ErrorReply.overloaded("too busy"))
    server.when_prompt_contains("late", BatchExpired())
    batch = create_batch(client, "good one", "bad one", "late one")

    ended = client.messages.batches.retrieve(batch.id)
    order, results = results_by_id(client, batch.id)

    assert ended.request_counts.succeeded == 1
    assert ended.request_counts.errored == 1
    assert ended.request_counts.expired == 1
    assert sorted(order) == ["item-0", "item-1", "item-2"]
    assert order != ["item-0", "item-1", "item-2"]  # clients must not match by position
    good = results["item-0"].result
    assert good.type == "succeeded"
    assert good.message.content[0].text == "echo: good one"  # type: ignore[union-attr]
    assert good.message.model == MODEL
    assert good.message.usage.output_tokens == 5
    bad = results["item-1"].result
    assert bad.type == "errored"
    assert bad.error.error.type == "overloaded_error"
    assert bad.error.error.message == "too busy"
    assert results["item-2"].result.type == "expired"


def test_batch_requests_use_the_script_queue_and_stream_failures_become_api_errors(
    server: FakeLLMServer, client: anthropic.Anthropic
) -> None:
    seen: list[str | None] = []

    def by_custom_id(request: RecordedRequest) -> Reply:
        seen.append(request.custom_id)
        return Reply(text="from responder", delay=30)  # delay is ignored in batches

    server.responder = by_custom_id
    server.script(Reply(text="scripted"), StreamError(message="cut off"), Disconnect())
    started = time.monotonic()
    batch = create_batch(client, "a", "b", "c", "d")

    _, results = results_by_id(client, batch.id)

    assert time.monotonic() - started < 5
    assert server.pending == 0
    assert results["item-0"].result.message.content[0].text == "scripted"  # type: ignore[union-attr]
    stream_error = results["item-1"].result
    assert stream_error.type == "errored"
    assert stream_error.error.error.type == "api_error"
    assert stream_error.error.error.message == "cut off"
    assert results["item-2"].result.error.error.type == "api_error"  # type: ignore[union-attr]
    assert seen == ["item-3"]
    assert results["item-3"].result.type == "succeeded"


def test_results_before_the_batch_ends_are_refused(
    server: FakeLLMServer, client: anthropic.Anthropic
) -> None:
    server.batch_processing_time = 60
    batch = create_batch(client, "one")

    status, body = http(
        f"{server.base_url}{ANTHROPIC_BATCHES_PATH}/{batch.id}/results", method="GET"
    )
    # The SDK itself never asks: results() retrieves first and raises on a missing results_url.
    with pytest.raises(anthropic.AnthropicError, match="results_url"):
        client.messages.batches.results(batch.id)

    assert status == 400
    assert body["type"] == "error"
    assert body["error"]["type"] == "invalid_request_error"
    assert "still processing" in body["error"]["message"]


# --------------------------------------------------------------------------------------------
# Cancel
# --------------------------------------------------------------------------------------------


def test_cancel_in_progress_batch_cancels_every_request(
    server: FakeLLMServer, client: anthropic.Anthropic
) -> None:
    server.batch_processing_time = 60
    batch = create_batch(client, "one", "two", "three")

    canceling = client.messages.batches.cancel(batch.id)
    ended = client.messages.batches.retrieve(batch.id)
    _, results = results_by_id(client, batch.id)

    assert canceling.processing_status == "canceling"
    assert canceling.cancel_initiated_at is not None
    assert canceling.ended_at is None
    assert ended.processing_status == "ended"
    assert ended.request_counts.canceled == 3
    assert ended.request_counts.succeeded == 0
    assert ended.cancel_initiated_at == canceling.cancel_initiated_at
    assert {r.result.type for r in results.values()} == {"canceled"}
    assert server.batches[batch.id].is_canceled
    assert server.count(f"{ANTHROPIC_BATCHES_PATH}/{batch.id}/cancel") == 1


def test_cancel_after_the_batch_ended_changes_nothing(
    server: FakeLLMServer, client: anthropic.Anthropic
) -> None:
    batch = create_batch(client, "one", "two")

    answer = client.messages.batches.cancel(batch.id)
    _, results = results_by_id(client, batch.id)

    assert answer.processing_status == "ended"
    assert answer.cancel_initiated_at is None
    assert answer.request_counts.succeeded == 2
    assert {r.result.type for r in results.values()} == {"succeeded"}
    assert not server.batches[batch.id].is_canceled


# --------------------------------------------------------------------------------------------
# Refusals and injected failures
# --------------------------------------------------------------------------------------------


def test_unknown_batch_id_is_404(server: FakeLLMServer, client: anthropic.Anthropic) -> None:
    with pytest.raises(anthropic.NotFoundError) as retrieve:
        client.messages.batches.retrieve("msgbatch_nope")
    with pytest.raises(anthropic.NotFoundError):
        client.messages.batches.cancel("msgbatch_nope")

    assert retrieve.value.type == "not_found_error"
    assert "msgbatch_nope" in str(retrieve.value)


@pytest.mark.parametrize(
    ("requests", "complaint"),
    [
        ([batch_request("has space", "x")], "requests.0.custom_id"),
        ([batch_request("x" * 65, "x")], "requests.0.custom_id"),
        ([batch_request("same", "x"), batch_request("same", "y")], "requests.1.custom_id"),
        ([{"custom_id": "a", "params": {"model": MODEL, "messages": []}}], "max_tokens"),
        ([], "non-empty"),
    ],
)
def test_invalid_batch_is_400_naming_the_problem(
    server: FakeLLMServer, client: anthropic.Anthropic, requests: Any, complaint: str
) -> None:
    with pytest.raises(anthropic.BadRequestError) as excinfo:
        client.messages.batches.create(requests=requests)

    assert excinfo.value.type == "invalid_request_error"
    assert complaint in str(excinfo.value)
    assert server.batches == {}
    assert server.batch_requests == []


def test_max_batch_requests_is_enforced(server: FakeLLMServer, client: anthropic.Anthropic) -> None:
    server.max_batch_requests = 2

    with pytest.raises(anthropic.BadRequestError, match="at most 2"):
        create_batch(client, "a", "b", "c")
    accepted = create_batch(client, "a", "b")

    assert accepted.request_counts.processing == 2
    assert list(server.batches) == [accepted.id]


def test_batch_endpoints_need_an_api_key(server: FakeLLMServer) -> None:
    status, body = http(
        server.base_url + ANTHROPIC_BATCHES_PATH, {"requests": [batch_request("a", "x")]}, key=False
    )

    assert status == 401
    assert body["error"]["type"] == "authentication_error"
    assert server.batches == {}


def test_script_batch_api_fails_the_next_batch_calls_only(
    server: FakeLLMServer, client: anthropic.Anthropic
) -> None:
    batch = create_batch(client, "one")
    server.script(Reply(text="for a live call"))
    server.script_batch_api(ErrorReply.overloaded(), Disconnect())

    with pytest.raises(anthropic.InternalServerError) as overloaded:
        client.messages.batches.retrieve(batch.id)
    with pytest.raises(anthropic.APIConnectionError):
        client.messages.batches.retrieve(batch.id)
    recovered = client.messages.batches.retrieve(batch.id)

    assert overloaded.value.status_code == 529
    assert isinstance(overloaded.value, anthropic.APIStatusError)
    assert recovered.processing_status == "ended"
    assert server.pending == 1  # the model script was not touched
    with pytest.raises(TypeError):
        server.script_batch_api(Reply())  # type: ignore[arg-type]


def test_batch_expired_on_a_live_call_is_a_test_mistake(
    server: FakeLLMServer, client: anthropic.Anthropic
) -> None:
    server.script(BatchExpired())

    with pytest.raises(anthropic.InternalServerError):
        client.messages.create(
            model=MODEL, max_tokens=64, messages=[{"role": "user", "content": "hi"}]
        )

    assert len(server.errors) == 1
    assert "BatchExpired" in str(server.errors[0])


def test_reset_forgets_batches(server: FakeLLMServer, client: anthropic.Anthropic) -> None:
    batch = create_batch(client, "one")
    server.script_batch_api(ErrorReply.overloaded())

    server.reset()

    assert server.batches == {}
    assert server.batch_requests == []
    with pytest.raises(anthropic.NotFoundError):  # not a 529: the failure script is gone too
        client.messages.batches.retrieve(batch.id)


# --------------------------------------------------------------------------------------------
# Prompt caching
# --------------------------------------------------------------------------------------------


def test_cached_system_block_is_written_then_read(
    server: FakeLLMServer, client: anthropic.Anthropic
) -> None:
    server.cache_min_tokens = 5

    first = ask(client, cached_system())
    second = ask(client, cached_system(), prompt="another question")

    words = len(LONG_SYSTEM.split())
    assert (first.cache_creation_input_tokens, first.cache_read_input_tokens) == (words, 0)
    assert (second.cache_creation_input_tokens, second.cache_read_input_tokens) == (0, words)
    assert second.input_tokens == 10  # the uncached part, as the Reply says
    assert (server.prompt_cache_writes, server.prompt_cache_reads) == (1, 1)


def test_prefix_below_the_minimum_is_not_cached(
    server: FakeLLMServer, client: anthropic.Anthropic
) -> None:
    server.cache_min_tokens = len(LONG_SYSTEM.split()) + 1

    usages = [ask(client, cached_system()) for _ in range(2)]

    assert [(u.cache_creation_input_tokens, u.cache_read_input_tokens) for u in usages] == [
        (0, 0),
        (0, 0),
    ]
    assert (server.prompt_cache_writes, server.prompt_cache_reads) == (0, 0)


def test_simulation_off_reports_no_cache_tokens(
    server: FakeLLMServer, client: anthropic.Anthropic
) -> None:
    server.cache_min_tokens = 5
    server.simulate_prompt_cache = False

    usages = [ask(client, cached_system()) for _ in range(2)]

    assert {(u.cache_creation_input_tokens, u.cache_read_input_tokens) for u in usages} == {(0, 0)}


def test_unmarked_request_and_explicit_reply_counts_are_left_alone(
    server: FakeLLMServer, client: anthropic.Anthropic
) -> None:
    server.cache_min_tokens = 5
    server.script(Reply(), Reply(), Reply(cache_read_input_tokens=77))

    plain = [ask(client, LONG_SYSTEM) for _ in range(2)]  # a string cannot carry a marker
    explicit = ask(client, cached_system())

    assert {(u.cache_creation_input_tokens, u.cache_read_input_tokens) for u in plain} == {(0, 0)}
    assert (explicit.cache_creation_input_tokens, explicit.cache_read_input_tokens) == (0, 77)
    assert server.prompt_cache_writes == 0


def test_cache_key_covers_model_and_prefix_and_entries_expire(
    server: FakeLLMServer, client: anthropic.Anthropic
) -> None:
    server.cache_min_tokens = 5
    words = len(LONG_SYSTEM.split())
    ask(client, cached_system())

    other_model = ask(client, cached_system(), model="claude-other-model")
    other_text = ask(client, cached_system(LONG_SYSTEM + " twice"))
    hit = ask(client, cached_system())
    server.prompt_cache_ttl = 0.0
    expired = ask(client, cached_system())

    assert other_model.cache_creation_input_tokens == words
    assert other_text.cache_creation_input_tokens == words + 1
    assert hit.cache_read_input_tokens == words
    assert (expired.cache_creation_input_tokens, expired.cache_read_input_tokens) == (words, 0)
    assert (server.prompt_cache_writes, server.prompt_cache_reads) == (4, 1)


def test_marker_on_a_message_block_caches_everything_before_it(
    server: FakeLLMServer, client: anthropic.Anthropic
) -> None:
    server.cache_min_tokens = 5
    content: list[anthropic.types.TextBlockParam] = [
        {"type": "text", "text": "shared document text", "cache_control": {"type": "ephemeral"}},
        {"type": "text", "text": "question that varies each time"},
    ]

    def ask_with(question: str) -> anthropic.types.Usage:
        content[1]["text"] = question
        return client.messages.create(
            model=MODEL,
            max_tokens=64,
            system="be brief",
            messages=[{"role": "user", "content": content}],
        ).usage

    first = ask_with("what is it")
    second = ask_with("who wrote it")

    # The plain-string system prompt is part of the prefix: 2 + 3 words.
    assert first.cache_creation_input_tokens == 5
    assert second.cache_read_input_tokens == 5


def test_streaming_reports_cache_tokens_in_message_start_and_message_delta(
    server: FakeLLMServer, client: anthropic.Anthropic
) -> None:
    server.cache_min_tokens = 5
    words = len(LONG_SYSTEM.split())

    def stream_usage() -> tuple[Any, Any]:
        events: list[Any] = list(
            client.messages.create(
                model=MODEL,
                max_tokens=64,
                system=cached_system(),
                messages=[{"role": "user", "content": "hi"}],
                stream=True,
            )
        )
        start = next(e for e in events if e.type == "message_start").message.usage
        delta = next(e for e in events if e.type == "message_delta").usage
        return start, delta

    first_start, first_delta = stream_usage()
    with client.messages.stream(
        model=MODEL,
        max_tokens=64,
        system=cached_system(),
        messages=[{"role": "user", "content": "x"}],
    ) as stream:
        final = stream.get_final_message()

    assert first_start.cache_creation_input_tokens == words
    assert first_delta.cache_creation_input_tokens == words
    assert first_delta.cache_read_input_tokens == 0
    assert final.usage.cache_read_input_tokens == words
    assert final.usage.cache_creation_input_tokens == 0
    assert final.usage.input_tokens == 10


def test_batch_requests_share_the_prompt_cache(
    server: FakeLLMServer, client: anthropic.Anthropic
) -> None:
    server.cache_min_tokens = 5
    requests: Any = [
        {
            "custom_id": f"item-{i}",
            "params": {
                "model": MODEL,
                "max_tokens": 64,
                "system": cached_system(),
                "messages": [{"role": "user", "content": f"question {i}"}],
            },
        }
        for i in range(2)
    ]
    batch = client.messages.batches.create(requests=requests)

    _, results = results_by_id(client, batch.id)
    live = ask(client, cached_system())

    words = len(LONG_SYSTEM.split())
    first = results["item-0"].result.message.usage  # type: ignore[union-attr]
    second = results["item-1"].result.message.usage  # type: ignore[union-attr]
    assert (first.cache_creation_input_tokens, first.cache_read_input_tokens) == (words, 0)
    assert (second.cache_creation_input_tokens, second.cache_read_input_tokens) == (0, words)
    assert live.cache_read_input_tokens == words
