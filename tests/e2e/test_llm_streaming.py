"""LLM streaming end to end: the real SDKs against the fake server's SSE streams.

A streamed reply must look to a pipeline exactly like the same reply unstreamed. Failures in
the middle of a stream (an SSE ``error`` event, a dropped connection, a stalled read) are
retried or refused like their unstreamed equivalents. Progress reaches listeners but never
``events.jsonl``, and Ctrl-C in the middle of a stream leaves a run that resumes.
"""

from __future__ import annotations

import json
import signal
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

import pytest
import yaml

import stepline
from stepline.engine.contract import Hooks
from stepline.engine.events import Event, EventType
from stepline.store.state import load_state
from tests.e2e.test_errors import assert_clean_error
from tests.fakes import Disconnect, FakeLLMServer, Reply, StreamError
from tests.helpers import eventually, run_pipeline_process, write

MODEL = "claude-test-model"
PRICED_MODEL = "claude-haiku-4-5-20251001"  # in the shipped price table, so costs compare too
LOCAL_MODEL = "llama3.2"
PROMPT = "Summarise: {{ input.text }}"
FAST_RETRIES = {"attempts": 3, "initial_delay": "1ms", "max_delay": "50ms"}
PROVIDER_LABEL = {"anthropic": "Anthropic API", "openai": "OpenAI-compatible API"}


def write_pipeline(
    tmp_path: Path,
    server: FakeLLMServer,
    *,
    provider: str = "anthropic",
    llm: dict[str, Any] | None = None,
    steps: list[dict[str, Any]] | None = None,
    **step: Any,
) -> Path:
    """A one-step (or ``steps``) LLM pipeline and its input; ``llm`` and ``step`` add keys."""
    defaults: dict[str, Any] = {
        "provider": provider,
        "model": LOCAL_MODEL if provider == "openai" else MODEL,
        "retry": FAST_RETRIES,
        "cache": {"enabled": False},  # a repeated request must reach the server again
    }
    if provider == "openai":
        defaults["base_url"] = server.openai_base_url
    config = {
        "name": "streaming",
        "llm": {**defaults, **(llm or {})},
        "steps": steps or [{"id": "ask", "kind": "llm", "prompt": PROMPT, **step}],
    }
    write(tmp_path / "in.txt", "the notes")
    path = tmp_path / "pipeline-config.yaml"
    path.write_text(yaml.safe_dump(config, sort_keys=False), encoding="utf-8")
    return path


def run_folder(tmp_path: Path, run_id: str) -> Path:
    return tmp_path / ".pipeline" / run_id


def read_jsonl(path: Path) -> list[dict[str, Any]]:
    return [json.loads(line) for line in path.read_text().splitlines() if line.strip()]


def calls(tmp_path: Path, run_id: str) -> list[dict[str, Any]]:
    return read_jsonl(run_folder(tmp_path, run_id) / "llm-calls.jsonl")


def state_of(tmp_path: Path, run_id: str) -> dict[str, Any]:
    """The state as stepline reads it: the snapshot and the changes logged since."""
    return load_state(run_folder(tmp_path, run_id) / "state.json").model_dump(mode="json")


def output_of(tmp_path: Path, run_id: str, name: str = "01-ask") -> Any:
    return json.loads((run_folder(tmp_path, run_id) / "steps" / f"{name}.json").read_text())


def attempts(records: list[dict[str, Any]]) -> list[tuple[int, str, int | None]]:
    return [(r["attempt"], r["outcome"], r["status_code"]) for r in records]


def without_latency(record: dict[str, Any]) -> dict[str, Any]:
    return {key: value for key, value in record.items() if key != "latency_s"}


# --------------------------------------------------------------------------------------------
# A streamed reply is the same reply
# --------------------------------------------------------------------------------------------


@pytest.mark.parametrize("provider", ["anthropic", "openai"])
def test_streamed_reply_equals_the_unstreamed_one(
    cli, fake_llm: FakeLLMServer, tmp_path: Path, provider: str
):
    model = PRICED_MODEL if provider == "anthropic" else LOCAL_MODEL
    reply = Reply(
        text="Trois points — café ✓, naïve, and a long enough tail to split in deltas.",
        thinking="First I weigh the notes; this must not reach the output.",
        input_tokens=21,
        output_tokens=17,
        cache_creation_input_tokens=5 if provider == "anthropic" else 0,
        cache_read_input_tokens=4,
    )
    fake_llm.responder = lambda request: reply

    write_pipeline(tmp_path, fake_llm, provider=provider, llm={"model": model})
    plain = cli("run", "in.txt", "--run-id", "plain")
    write_pipeline(tmp_path, fake_llm, provider=provider, llm={"model": model, "stream": True})
    streamed = cli("run", "in.txt", "--run-id", "streamed")

    assert plain.exit_code == 0, plain.output
    assert streamed.exit_code == 0, streamed.output
    assert [request.stream for request in fake_llm.requests] == [False, True]
    if provider == "openai":
        assert "stream_options" not in fake_llm.requests[0].body
        assert fake_llm.requests[1].body["stream_options"] == {"include_usage": True}
    assert output_of(tmp_path, "plain") == reply.text
    assert output_of(tmp_path, "streamed") == reply.text
    [plain_call] = calls(tmp_path, "plain")
    [streamed_call] = calls(tmp_path, "streamed")
    assert without_latency(streamed_call) == without_latency(plain_call)
    assert (streamed_call["input_tokens"], streamed_call["output_tokens"]) == (21, 17)
    assert streamed_call["cache_read_tokens"] == 4
    assert streamed_call["cache_write_tokens"] == (5 if provider == "anthropic" else 0)
    plain_metrics = state_of(tmp_path, "plain")["steps"][0]["metrics"]
    streamed_metrics = state_of(tmp_path, "streamed")["steps"][0]["metrics"]
    assert streamed_metrics == plain_metrics
    assert streamed_metrics["stop_reason"] == "end_turn"
    if provider == "anthropic":
        assert streamed_metrics["cost_usd"] > 0


def test_a_step_can_stream_when_the_default_does_not_and_vice_versa(
    cli, fake_llm: FakeLLMServer, tmp_path: Path
):
    write_pipeline(
        tmp_path,
        fake_llm,
        llm={"stream": True},
        steps=[
            {"id": "inherits", "kind": "llm", "prompt": "one"},
            {"id": "opts_out", "kind": "llm", "prompt": "two", "stream": False},
        ],
    )

    result = cli("run", "in.txt", "--run-id", "s")

    assert result.exit_code == 0, result.output
    assert {r.prompt: r.stream for r in fake_llm.requests} == {"one": True, "two": False}
    assert output_of(tmp_path, "s", "01-inherits") == "echo: one"
    assert output_of(tmp_path, "s", "02-opts_out") == "echo: two"


@pytest.mark.parametrize("provider", ["anthropic", "openai"])
def test_a_streamed_refusal_fails_with_the_models_words(
    cli, fake_llm: FakeLLMServer, tmp_path: Path, provider: str
):
    write_pipeline(tmp_path, fake_llm, provider=provider, stream=True)
    fake_llm.script(Reply(text="I can't help with that.", stop_reason="refusal"))

    result = cli("run", "in.txt")

    assert_clean_error(result, 1, "the model refused: I can't help with that.")
    assert fake_llm.last.stream is True


def test_a_streamed_json_reply_is_repaired_over_streamed_turns(
    cli, fake_llm: FakeLLMServer, tmp_path: Path
):
    write_pipeline(tmp_path, fake_llm, stream=True, output="json")
    fake_llm.script(Reply(text="Sure! {oops"), Reply(text='{"items": [1, 2, 3]}'))

    result = cli("run", "in.txt", "--run-id", "j")

    assert result.exit_code == 0, result.output
    assert [r.stream for r in fake_llm.requests] == [True, True]
    second = fake_llm.requests[1].messages
    assert [m["role"] for m in second] == ["user", "assistant", "user"]
    assert second[1]["content"] == "Sure! {oops"
    assert output_of(tmp_path, "j") == {"items": [1, 2, 3]}


def test_a_streamed_reply_is_cached_like_any_other(cli, fake_llm: FakeLLMServer, tmp_path: Path):
    cache = {"cache": {"enabled": True, "ttl": "1h"}}
    write_pipeline(tmp_path, fake_llm, llm={**cache, "stream": True})
    fake_llm.script(Reply(text="worth keeping", output_tokens=9))
    assert cli("run", "in.txt", "--run-id", "first").exit_code == 0

    write_pipeline(tmp_path, fake_llm, llm={**cache, "stream": False})  # delivery is not hashed
    result = cli("run", "in.txt", "--run-id", "second")

    assert result.exit_code == 0, result.output
    assert fake_llm.count() == 1
    assert output_of(tmp_path, "second") == "worth keeping"
    [record] = calls(tmp_path, "second")
    assert record["cache_hit"] is True and record["output_tokens"] == 9


# --------------------------------------------------------------------------------------------
# Anthropic streams by itself when the SDK would refuse the call unstreamed
# --------------------------------------------------------------------------------------------


@pytest.mark.filterwarnings("ignore:The model 'claude-opus-4-0' is deprecated")
@pytest.mark.parametrize(
    ("model", "max_tokens", "stream", "streamed"),
    [
        (MODEL, 30_000, None, True),
        (MODEL, 1024, None, False),
        (MODEL, 21_333, None, False),  # the SDK's own limit: 1 hour per 128k tokens > 10 minutes
        (MODEL, 21_334, None, True),
        (MODEL, 1024, True, True),
        # stream: false cannot make the SDK send a call it refuses unstreamed
        (MODEL, 30_000, False, True),
        # the SDK's per-model table is lower for some models
        ("claude-opus-4-0", 8_192, None, False),
        ("claude-opus-4-0", 8_193, None, True),
    ],
)
def test_anthropic_streams_when_max_tokens_needs_it(
    cli,
    fake_llm: FakeLLMServer,
    tmp_path: Path,
    model: str,
    max_tokens: int,
    stream: bool | None,
    streamed: bool,
):
    step: dict[str, Any] = {"model": model, "max_tokens": max_tokens}
    if stream is not None:
        step["stream"] = stream
    write_pipeline(tmp_path, fake_llm, **step)
    fake_llm.script(Reply(text="long answer"))

    result = cli("run", "in.txt", "--run-id", "a")

    assert result.exit_code == 0, result.output
    [request] = fake_llm.requests
    assert request.stream is streamed
    assert request.body["max_tokens"] == max_tokens
    assert output_of(tmp_path, "a") == "long answer"


def test_openai_does_not_stream_by_itself(cli, fake_llm: FakeLLMServer, tmp_path: Path):
    write_pipeline(tmp_path, fake_llm, provider="openai", max_tokens=30_000)

    assert cli("run", "in.txt").exit_code == 0
    assert fake_llm.last.stream is False


# --------------------------------------------------------------------------------------------
# An error event in the middle of a stream
# --------------------------------------------------------------------------------------------


@pytest.mark.parametrize(("error_type", "status"), [("overloaded_error", 529), ("api_error", 500)])
def test_anthropic_error_event_mid_stream_is_retried(
    cli, fake_llm: FakeLLMServer, tmp_path: Path, error_type: str, status: int
):
    write_pipeline(tmp_path, fake_llm, stream=True)
    broken = StreamError(partial_text="half an ans", type=error_type, message="Try later")
    fake_llm.script(broken, broken, Reply(text="the whole answer"))

    result = cli("run", "in.txt", "--run-id", "e")

    assert result.exit_code == 0, result.output
    assert fake_llm.count() == 3
    assert all(request.stream for request in fake_llm.requests)
    assert output_of(tmp_path, "e") == "the whole answer"  # no partial text leaks in
    records = calls(tmp_path, "e")
    assert attempts(records) == [(1, "error", status), (2, "error", status), (3, "ok", None)]
    for record in records[:2]:
        assert record["error"] == (
            f"Anthropic API error during the reply ({error_type}): Try later"
        )
        assert record["response"] is None
    logs = [e.get("message", "") for e in read_jsonl(run_folder(tmp_path, "e") / "events.jsonl")]
    assert any(f"{MODEL} attempt 1 failed ({status}); retrying" in m for m in logs), logs
    assert state_of(tmp_path, "e")["steps"][0]["metrics"]["attempts"] == 3


def test_anthropic_error_event_mid_stream_uses_up_the_attempts_then_falls_back(
    cli, fake_llm: FakeLLMServer, tmp_path: Path
):
    write_pipeline(tmp_path, fake_llm, llm={"fallback_models": ["claude-backup"]}, stream=True)
    fake_llm.responder = lambda request: (
        Reply(text="from the backup") if request.model == "claude-backup" else StreamError()
    )

    result = cli("run", "in.txt", "--run-id", "f")

    assert result.exit_code == 0, result.output
    assert [r.model for r in fake_llm.requests] == [MODEL] * 3 + ["claude-backup"]
    assert all(request.stream for request in fake_llm.requests)
    assert output_of(tmp_path, "f") == "from the backup"


@pytest.mark.parametrize(
    ("error_type", "status"), [("invalid_request_error", 400), ("request_too_large", 413)]
)
def test_anthropic_refusal_mid_stream_fails_at_once(
    cli, fake_llm: FakeLLMServer, tmp_path: Path, error_type: str, status: int
):
    write_pipeline(tmp_path, fake_llm, llm={"fallback_models": ["claude-backup"]}, stream=True)
    fake_llm.responder = lambda request: StreamError(
        partial_text="so far so", type=error_type, message="prompt is too long"
    )

    result = cli("run", "in.txt", "--run-id", "r")

    assert_clean_error(
        result, 1, f"Anthropic API error during the reply ({error_type}): prompt is too long"
    )
    assert fake_llm.count() == 1  # no retry, no fallback
    assert attempts(calls(tmp_path, "r")) == [(1, "error", status)]
    state = state_of(tmp_path, "r")
    assert state["status"] == "failed"
    assert state["steps"][0]["status"] == "failed"
    assert not (run_folder(tmp_path, "r") / "steps" / "01-ask.json").exists()


def test_openai_error_event_mid_stream_is_retried(cli, fake_llm: FakeLLMServer, tmp_path: Path):
    write_pipeline(tmp_path, fake_llm, provider="openai", stream=True)
    fake_llm.script(StreamError(partial_text="half", message="Overloaded"), Reply(text="whole"))

    result = cli("run", "in.txt", "--run-id", "o")

    assert result.exit_code == 0, result.output
    assert fake_llm.count() == 2
    assert output_of(tmp_path, "o") == "whole"
    records = calls(tmp_path, "o")
    assert [r["outcome"] for r in records] == ["error", "ok"]
    assert records[0]["error"] == (
        "OpenAI-compatible API error during the reply (overloaded_error): Overloaded"
    )


def test_openai_refusal_mid_stream_fails_at_once(cli, fake_llm: FakeLLMServer, tmp_path: Path):
    write_pipeline(tmp_path, fake_llm, provider="openai", stream=True)
    fake_llm.responder = lambda request: StreamError(
        type="invalid_request_error", message="context length exceeded"
    )

    result = cli("run", "in.txt")

    assert_clean_error(result, 1, "context length exceeded")
    assert fake_llm.count() == 1


# --------------------------------------------------------------------------------------------
# A connection dropped in the middle of a stream
# --------------------------------------------------------------------------------------------


@pytest.mark.parametrize("provider", ["anthropic", "openai"])
def test_connection_dropped_mid_stream_is_retried(
    cli, fake_llm: FakeLLMServer, tmp_path: Path, provider: str
):
    write_pipeline(tmp_path, fake_llm, provider=provider, stream=True)
    fake_llm.script(Disconnect(partial_text="half an answ"), Reply(text="the whole answer"))

    result = cli("run", "in.txt", "--run-id", "d")

    assert result.exit_code == 0, result.output
    assert fake_llm.count() == 2
    assert all(request.stream for request in fake_llm.requests)
    assert output_of(tmp_path, "d") == "the whole answer"
    records = calls(tmp_path, "d")
    assert attempts(records) == [(1, "error", None), (2, "ok", None)]


def test_anthropic_connection_drop_mid_stream_says_so(cli, fake_llm: FakeLLMServer, tmp_path: Path):
    write_pipeline(tmp_path, fake_llm, stream=True)
    fake_llm.responder = lambda request: Disconnect(partial_text="half an answ")

    result = cli("run", "in.txt", "--run-id", "d")

    assert_clean_error(result, 1, "Anthropic API: the connection broke during the reply")
    assert fake_llm.count() == 3
    assert [r["outcome"] for r in calls(tmp_path, "d")] == ["error"] * 3


def test_openai_connection_drop_mid_stream_says_so(cli, fake_llm: FakeLLMServer, tmp_path: Path):
    write_pipeline(tmp_path, fake_llm, provider="openai", stream=True)
    fake_llm.responder = lambda request: Disconnect(partial_text="half an answ")

    result = cli("run", "in.txt", "--run-id", "d")

    assert_clean_error(result, 1, "during the reply")
    assert "cannot connect" not in result.output


# --------------------------------------------------------------------------------------------
# timeout: bounds each request
# --------------------------------------------------------------------------------------------


@pytest.mark.parametrize("stream", [False, True])
def test_a_hung_request_times_out_and_is_retried(
    cli, fake_llm: FakeLLMServer, tmp_path: Path, stream: bool
):
    write_pipeline(tmp_path, fake_llm, timeout="200ms", stream=stream)
    fake_llm.script(Reply(text="too late", delay=2), Reply(text="in time"))
    started = time.monotonic()

    result = cli("run", "in.txt", "--run-id", "t")

    assert result.exit_code == 0, result.output
    assert time.monotonic() - started < 1.5  # did not wait for the hung reply
    assert fake_llm.count() == 2
    assert [r.stream for r in fake_llm.requests] == [stream, stream]
    assert output_of(tmp_path, "t") == "in time"
    records = calls(tmp_path, "t")
    assert attempts(records) == [(1, "error", None), (2, "ok", None)]
    assert "timed out" in records[0]["error"]


def test_every_request_hanging_fails_after_the_attempts(
    cli, fake_llm: FakeLLMServer, tmp_path: Path
):
    write_pipeline(tmp_path, fake_llm, timeout="200ms")
    fake_llm.responder = lambda request: Reply(delay=2)
    started = time.monotonic()

    result = cli("run", "in.txt", "--run-id", "t")

    assert_clean_error(result, 1, "Anthropic API: the request timed out")
    assert time.monotonic() - started < 2
    assert fake_llm.count() == FAST_RETRIES["attempts"]
    assert [r["outcome"] for r in calls(tmp_path, "t")] == ["error"] * 3
    assert state_of(tmp_path, "t")["steps"][0]["status"] == "failed"


@pytest.mark.parametrize("provider", ["anthropic", "openai"])
def test_a_stream_that_stalls_mid_reply_times_out_and_is_retried(
    cli, fake_llm: FakeLLMServer, tmp_path: Path, provider: str
):
    write_pipeline(tmp_path, fake_llm, provider=provider, timeout="200ms", stream=True)
    fake_llm.script(Reply(text="stalls after the headers", chunk_delay=2), Reply(text="flows"))

    result = cli("run", "in.txt", "--run-id", "t")

    assert result.exit_code == 0, result.output
    assert fake_llm.count() == 2
    assert output_of(tmp_path, "t") == "flows"
    records = calls(tmp_path, "t")
    assert attempts(records) == [(1, "error", None), (2, "ok", None)]
    assert records[0]["error"].startswith(PROVIDER_LABEL[provider])


@pytest.mark.parametrize("provider", ["anthropic", "openai"])
def test_a_stalled_stream_says_it_timed_out(
    cli, fake_llm: FakeLLMServer, tmp_path: Path, provider: str
):
    write_pipeline(tmp_path, fake_llm, provider=provider, timeout="200ms", stream=True)
    fake_llm.responder = lambda request: Reply(text="stalls after the headers", chunk_delay=2)

    result = cli("run", "in.txt")

    assert_clean_error(result, 1, "timed out")
    assert "connection broke" not in result.output


@pytest.mark.parametrize("provider", ["anthropic", "openai"])
def test_timeout_bounds_the_wait_between_chunks_not_the_whole_stream(
    cli, fake_llm: FakeLLMServer, tmp_path: Path, provider: str
):
    write_pipeline(tmp_path, fake_llm, provider=provider, timeout="500ms", stream=True)
    fake_llm.script(Reply(text="slow but steady", chunk_delay=0.2))  # 0.6 s in all
    started = time.monotonic()

    result = cli("run", "in.txt", "--run-id", "t")

    assert result.exit_code == 0, result.output
    assert time.monotonic() - started > 0.5  # longer than the timeout, and still no retry
    assert fake_llm.count() == 1
    assert output_of(tmp_path, "t") == "slow but steady"


# --------------------------------------------------------------------------------------------
# Progress reaches the listener, never events.jsonl
# --------------------------------------------------------------------------------------------


@pytest.mark.parametrize("provider", ["anthropic", "openai"])
def test_progress_events_reach_the_listener_only(
    fake_llm: FakeLLMServer, tmp_path: Path, provider: str
):
    text = "".join(f"word{n:02d} " for n in range(12))  # 84 characters, three deltas of 28
    config = write_pipeline(
        tmp_path,
        fake_llm,
        provider=provider,
        steps=[
            {"id": "quiet", "kind": "llm", "prompt": "not streamed"},
            {"id": "loud", "kind": "llm", "prompt": "streamed", "stream": True},
        ],
    )
    # Chunks 0.25 s apart: progress is shown at most every 0.2 s, so each chunk shows.
    fake_llm.responder = lambda request: Reply(text=text, chunk_delay=0.25)
    seen: list[Event] = []

    result = stepline.run(
        config, tmp_path / "in.txt", run_id="p", hooks=Hooks(listener=seen.append)
    )

    assert result.exit_code == 0, result.message
    assert result.outputs["loud"] == text
    progress = [event for event in seen if event.type is EventType.LLM_PROGRESS]
    assert {event.step for event in progress} == {"loud"}
    counts = [event.data["output_tokens"] for event in progress]
    assert len(counts) == 3, counts
    assert counts == sorted(counts) and counts[0] < counts[-1], counts
    elapsed = [event.data["elapsed_s"] for event in progress]
    assert elapsed == sorted(elapsed) and elapsed[-1] >= 0.5
    expected_model = LOCAL_MODEL if provider == "openai" else MODEL
    assert {event.message for event in progress} == {expected_model}
    # progress arrives while the step runs: after it started, before it completed
    kinds = [(event.type, event.step) for event in seen]
    started = kinds.index((EventType.STEP_STARTED, "loud"))
    completed = kinds.index((EventType.STEP_COMPLETED, "loud"))
    positions = [n for n, event in enumerate(seen) if event.type is EventType.LLM_PROGRESS]
    assert started < positions[0] and positions[-1] < completed
    logged = read_jsonl(run_folder(tmp_path, "p") / "events.jsonl")
    assert "llm_progress" not in {entry["type"] for entry in logged}
    assert [entry["type"] for entry in logged].count("step_completed") == 2
    assert [event.type.value for event in seen if event.type is not EventType.LLM_PROGRESS] == [
        entry["type"] for entry in logged
    ]


# --------------------------------------------------------------------------------------------
# Ctrl-C in the middle of a stream
# --------------------------------------------------------------------------------------------


def interrupt_during_stream(
    server: FakeLLMServer, tmp_path: Path, run_id: str
) -> tuple[subprocess.Popen[str], str, str, float]:
    """Run a pipeline whose streamed step hangs mid-reply, send SIGINT, wait for the exit.

    Returns the process, its stdout and stderr, and the seconds from the signal to the exit.
    """
    write_pipeline(
        tmp_path,
        server,
        steps=[
            {"id": "ask", "kind": "llm", "prompt": PROMPT, "stream": True},
            {"id": "after", "kind": "shell", "command": "echo done"},
        ],
    )
    server.script(Reply(text="a reply that takes its time", chunk_delay=30))
    server.responder = lambda request: Reply(text="a quick reply")
    process = subprocess.Popen(
        [sys.executable, "-m", "stepline", "run", "in.txt", "--run-id", run_id],
        cwd=tmp_path,
        stdin=subprocess.DEVNULL,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )

    def asked() -> bool:
        if process.poll() is not None:  # an ended run never asks: fail now, not at the timeout
            raise AssertionError(f"run ended early: {process.communicate()}")
        return server.count() == 1

    try:
        eventually(asked, what="the streamed request to reach the fake server")
        time.sleep(0.2)  # let the stream's first events reach the client
        signalled = time.monotonic()
        process.send_signal(signal.SIGINT)
        stdout, stderr = process.communicate(timeout=10)
        return process, stdout, stderr, time.monotonic() - signalled
    finally:
        if process.poll() is None:
            process.kill()
            process.wait()


def test_ctrl_c_during_a_stream_interrupts_and_resume_completes(
    fake_llm: FakeLLMServer, tmp_path: Path
):
    process, stdout, stderr, seconds = interrupt_during_stream(fake_llm, tmp_path, "c")

    assert process.returncode == 130, stderr
    assert seconds < 5
    assert "Traceback" not in stderr
    assert "pipeline resume c" in stdout
    state = state_of(tmp_path, "c")
    assert state["status"] == "interrupted"
    assert [step["status"] for step in state["steps"]] == ["pending", "pending"]
    assert fake_llm.requests[0].stream is True

    resumed = run_pipeline_process("resume", "c", cwd=tmp_path, timeout=30)

    assert resumed.returncode == 0, resumed.stderr
    assert fake_llm.count() == 2
    assert fake_llm.requests[1].stream is True
    assert output_of(tmp_path, "c") == "a quick reply"
    assert output_of(tmp_path, "c", "02-after") == "done"
    assert state_of(tmp_path, "c")["status"] == "completed"


def test_a_request_cut_short_by_ctrl_c_is_still_recorded(fake_llm: FakeLLMServer, tmp_path: Path):
    process, _, stderr, _ = interrupt_during_stream(fake_llm, tmp_path, "c")

    assert process.returncode == 130, stderr
    records = read_jsonl(run_folder(tmp_path, "c") / "llm-calls.jsonl")
    assert [(r["attempt"], r["outcome"] != "ok") for r in records] == [(1, True)]


def test_progress_is_shown_a_few_times_a_second_not_per_token(
    fake_llm: FakeLLMServer, tmp_path: Path
):
    import stepline

    config = write_pipeline(
        tmp_path, fake_llm, steps=[{"id": "loud", "kind": "llm", "prompt": "p", "stream": True}]
    )
    fake_llm.responder = lambda request: Reply(text="word " * 300, chunks=200, chunk_delay=0.002)
    seen: list[Event] = []

    result = stepline.run(config, tmp_path / "in.txt", hooks=Hooks(listener=seen.append))

    assert result.exit_code == 0
    shown = [event for event in seen if event.type is EventType.LLM_PROGRESS]
    assert 1 <= len(shown) <= 5  # 200 chunks over about 0.4 s
