"""A sentinel API key never reaches the run folder, the cache, a cassette, the logs or the error
output: not when the call succeeds, not when the provider refuses it or cannot be reached, and
not with ``--debug``, whose traceback shows the SDK's exceptions (which carry the request)."""

from __future__ import annotations

import socket
from collections.abc import Callable
from pathlib import Path

import pytest

from tests.fakes import Disconnect, ErrorReply, FakeLLMServer, Reply
from tests.helpers import SENTINEL_KEY, write

CONFIG = """
name: secret
llm:
  model: claude-haiku-4-5
  retry: {attempts: 2, initial_delay: 0.01, max_delay: 0.05}
  PROVIDER
steps:
  - id: ask
    kind: llm
    prompt: "Say hi"
"""

ANSWERS: dict[str, Callable[[], object]] = {
    "a reply": lambda: Reply(text="hi"),
    "401 authentication error": lambda: ErrorReply(401, "authentication_error", "bad x-api-key"),
    "500s until the retries run out": lambda: ErrorReply(500, "api_error", "boom"),
    "a dropped connection": lambda: Disconnect(),
    # A gateway's error page that quotes the request's headers back, refused and retried.
    "a 400 that echoes the key": lambda: ErrorReply(
        400, "invalid_request_error", f"bad request; headers: authorization: Bearer {SENTINEL_KEY}"
    ),
    "a 502 that echoes the key": lambda: ErrorReply(
        502, "api_error", f"upstream refused x-api-key {SENTINEL_KEY}"
    ),
}


def closed_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return int(probe.getsockname()[1])


def assert_nowhere(secret: str, output: str, folder: Path) -> None:
    assert secret not in output
    files = [path for path in folder.rglob("*") if path.is_file()]
    assert any(path.name == "state.json" for path in files), "the run left a state behind"
    for path in files:
        assert secret.encode() not in path.read_bytes(), path


@pytest.mark.parametrize("answer", sorted(ANSWERS))
def test_the_anthropic_key_stays_secret_whatever_the_provider_answers(
    cli, fake_llm: FakeLLMServer, tmp_path: Path, answer: str
):
    fake_llm.responder = lambda request: ANSWERS[answer]()
    write(tmp_path / "in.txt", "x")
    write(tmp_path / "pipeline-config.yaml", CONFIG.replace("PROVIDER", ""))

    result = cli("run", "in.txt", "--debug", "--record", "tape.jsonl")

    assert fake_llm.count() >= 1
    assert any(SENTINEL_KEY in value for value in fake_llm.requests[0].headers.values())
    assert (result.exit_code == 0) == (answer == "a reply"), result.output
    if answer != "a reply":
        assert "Traceback" in result.output  # --debug shows the exception chain
    assert_nowhere(SENTINEL_KEY, result.output, tmp_path)


def test_the_anthropic_key_stays_secret_when_nothing_answers(
    cli, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
):
    monkeypatch.setenv("ANTHROPIC_BASE_URL", f"http://127.0.0.1:{closed_port()}")
    monkeypatch.setenv("ANTHROPIC_API_KEY", SENTINEL_KEY)
    write(tmp_path / "in.txt", "x")
    write(tmp_path / "pipeline-config.yaml", CONFIG.replace("PROVIDER", ""))

    result = cli("run", "in.txt", "--debug")

    assert result.exit_code == 1 and "cannot connect" in result.output
    assert_nowhere(SENTINEL_KEY, result.output, tmp_path)


@pytest.mark.parametrize("answer", ["a reply", "401 authentication error"])
def test_the_openai_key_stays_secret(
    cli, fake_llm: FakeLLMServer, tmp_path: Path, monkeypatch: pytest.MonkeyPatch, answer: str
):
    secret = "sk-openai-SENTINEL-9876543210"
    monkeypatch.setenv("OPENAI_API_KEY", secret)
    fake_llm.responder = lambda request: ANSWERS[answer]()
    write(tmp_path / "in.txt", "x")
    provider = f"provider: openai\n  base_url: {fake_llm.openai_base_url}"
    write(tmp_path / "pipeline-config.yaml", CONFIG.replace("PROVIDER", provider))

    result = cli("run", "in.txt", "--debug")

    assert any(secret in value for value in fake_llm.requests[0].headers.values())
    assert (result.exit_code == 0) == (answer == "a reply"), result.output
    assert_nowhere(secret, result.output, tmp_path)
