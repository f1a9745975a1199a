"""Retries, fallback models and call records, counted at the fake server."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from stepline.providers.retry import retry_after_seconds
from tests.e2e.test_errors import assert_clean_error
from tests.fakes import Disconnect, ErrorReply, FakeLLMServer, Reply
from tests.helpers import write

CONFIG = """
name: reliable
llm:
  model: claude-primary
  retry: {attempts: 3, initial_delay: 1ms, max_delay: 50ms}
  FALLBACKS
steps:
  - id: ask
    kind: llm
    prompt: "Say hello"
"""


@pytest.fixture
def pipeline(tmp_path: Path):
    def make(fallbacks: str = "") -> Path:
        write(tmp_path / "in.txt", "x")
        return write(tmp_path / "pipeline-config.yaml", CONFIG.replace("FALLBACKS", fallbacks))

    return make


def calls(tmp_path: Path, run_id: str) -> list[dict]:
    lines = (tmp_path / ".pipeline" / run_id / "llm-calls.jsonl").read_text().splitlines()
    return [json.loads(line) for line in lines]


def events(tmp_path: Path, run_id: str) -> list[dict]:
    lines = (tmp_path / ".pipeline" / run_id / "events.jsonl").read_text().splitlines()
    return [json.loads(line) for line in lines]


def test_rate_limits_are_retried_until_an_answer(
    cli, fake_llm: FakeLLMServer, pipeline, tmp_path: Path
):
    pipeline()
    limited = ErrorReply(429, "rate_limit_error", "slow down", headers={"retry-after-ms": "5"})
    fake_llm.script(limited, limited, Reply(text="hello"))

    result = cli("run", "in.txt", "--run-id", "r")

    assert result.exit_code == 0, result.output
    assert fake_llm.count() == 3
    records = calls(tmp_path, "r")
    assert [(c["attempt"], c["outcome"], c["status_code"]) for c in records] == [
        (1, "error", 429),
        (2, "error", 429),
        (3, "ok", None),
    ]
    assert records[-1]["response"] == "hello" and records[-1]["prompt"] == "Say hello"
    assert records[0]["request_hash"] == records[2]["request_hash"]
    retries = [e["message"] for e in events(tmp_path, "r") if e["type"] == "log"]
    assert retries[0].startswith("claude-primary attempt 1 failed (429); retrying in 0.01s")
    state = json.loads((tmp_path / ".pipeline/r/state.json").read_text())
    assert state["steps"][0]["metrics"]["attempts"] == 3


def test_requests_seen_equal_the_configured_attempts(
    cli, fake_llm: FakeLLMServer, pipeline, tmp_path: Path
):
    pipeline()
    fake_llm.responder = lambda request: ErrorReply(500, "api_error", "boom")

    result = cli("run", "in.txt", "--run-id", "r")

    assert_clean_error(result, 1, "Anthropic API 500: boom")
    assert fake_llm.count() == 3
    assert len(calls(tmp_path, "r")) == 3


def test_connection_drops_are_retried(cli, fake_llm: FakeLLMServer, pipeline):
    pipeline()
    fake_llm.script(Disconnect(), Reply(text="hello"))

    assert cli("run", "in.txt").exit_code == 0
    assert fake_llm.count() == 2


@pytest.mark.parametrize(
    ("status", "kind", "message"),
    [
        (400, "invalid_request_error", "max_tokens: too large"),
        (403, "permission_error", "not allowed"),
        (404, "not_found_error", "model: claude-primary"),
        (413, "request_too_large", "request too large"),
    ],
)
def test_requests_the_provider_refuses_fail_at_once(
    cli, fake_llm: FakeLLMServer, pipeline, status: int, kind: str, message: str
):
    pipeline("fallback_models: [claude-backup]")
    fake_llm.responder = lambda request: ErrorReply(status, kind, message)

    result = cli("run", "in.txt")

    assert_clean_error(result, 1, f"Anthropic API {status}: {message}")
    assert fake_llm.count() == 1


def test_retry_after_longer_than_max_delay_fails_and_says_so(
    cli, fake_llm: FakeLLMServer, pipeline
):
    pipeline()
    fake_llm.script(ErrorReply.rate_limited(retry_after=30))

    result = cli("run", "in.txt")

    assert_clean_error(result, 1, "asks to wait 30s, longer than retry.max_delay (0.05s)")
    assert fake_llm.count() == 1


def test_fallback_models_are_tried_in_order(cli, fake_llm: FakeLLMServer, pipeline, tmp_path: Path):
    pipeline("fallback_models: [claude-second, {model: claude-third}]")
    fake_llm.responder = lambda request: (
        Reply(text="from third") if request.model == "claude-third" else ErrorReply.overloaded()
    )

    result = cli("run", "in.txt", "--run-id", "f")

    assert result.exit_code == 0, result.output
    assert [r.model for r in fake_llm.requests] == ["claude-primary"] * 3 + [
        "claude-second"
    ] * 3 + ["claude-third"]
    metrics = json.loads((tmp_path / ".pipeline/f/state.json").read_text())["steps"][0]["metrics"]
    assert metrics["model_requested"] == "claude-third"
    assert metrics["model"] == "claude-third"
    output = json.loads((tmp_path / ".pipeline/f/steps/01-ask.json").read_text())
    assert output == "from third"


def test_last_fallback_failing_fails_the_step(cli, fake_llm: FakeLLMServer, pipeline):
    pipeline("fallback_models: [claude-second]")
    fake_llm.responder = lambda request: ErrorReply.overloaded()

    result = cli("run", "in.txt")

    assert_clean_error(result, 1, "Anthropic API 529: Overloaded", "falling back through 1")
    assert fake_llm.count() == 6


def test_retry_settings_do_not_change_the_fingerprint(
    cli, fake_llm: FakeLLMServer, pipeline, tmp_path: Path
):
    config = pipeline()
    fake_llm.script(Reply(text="hello"))
    assert cli("run", "in.txt", "--run-id", "r").exit_code == 0

    config.write_text(config.read_text().replace("attempts: 3", "attempts: 7"))

    assert cli("resume", "r").exit_code == 0
    assert fake_llm.count() == 1


@pytest.mark.parametrize(
    ("headers", "seconds"),
    [
        ({"retry-after-ms": "250"}, 0.25),
        ({"retry-after": "3"}, 3.0),
        ({"retry-after-ms": "100", "retry-after": "9"}, 0.1),
        ({"retry-after": "Wed, 21 Oct 2026 07:28:00 GMT"}, None),
        ({}, None),
    ],
)
def test_retry_after_headers(headers: dict[str, str], seconds: float | None):
    assert retry_after_seconds(headers) == seconds


def test_show_lists_calls_and_prints_one(cli, fake_llm: FakeLLMServer, pipeline):
    pipeline()
    fake_llm.script(ErrorReply.overloaded(), Reply(text="hello there", output_tokens=7))
    assert cli("run", "in.txt", "--run-id", "r").exit_code == 0

    listing = cli("show", "r", "--calls")
    assert listing.exit_code == 0, listing.output
    assert "529" in listing.stdout and "10/7" in listing.stdout

    rows = json.loads(cli("show", "r", "--calls", "--step", "ask", "--json").stdout)
    assert [(row["number"], row["outcome"]) for row in rows] == [(1, "error"), (2, "ok")]

    one = cli("show", "r", "--call", "2")
    assert "Say hello" in one.stdout and "hello there" in one.stdout
    assert_clean_error(cli("show", "r", "--call", "3"), 2, "there is no call 3")


def test_refusal_fails_with_the_models_words(cli, fake_llm: FakeLLMServer, pipeline):
    pipeline()
    fake_llm.script(Reply(text="I can't help with that.", stop_reason="refusal"))

    result = cli("run", "in.txt")

    assert_clean_error(result, 1, "the model refused: I can't help with that.")


def test_text_cut_off_at_max_tokens_is_a_recorded_warning(
    cli, fake_llm: FakeLLMServer, pipeline, tmp_path: Path
):
    pipeline()
    fake_llm.script(Reply(text="Hello, this is the start of", stop_reason="max_tokens"))

    assert cli("run", "in.txt", "--run-id", "w").exit_code == 0

    metrics = json.loads((tmp_path / ".pipeline/w/state.json").read_text())["steps"][0]["metrics"]
    assert metrics["warning"] == "the reply was cut off at max_tokens (1024)"
