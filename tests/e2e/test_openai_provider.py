"""provider: openai against the fake server's /v1/chat/completions (as Ollama or vLLM would)."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from tests.e2e.test_errors import assert_clean_error
from tests.fakes import ErrorReply, FakeLLMServer, Reply
from tests.helpers import write

CONFIG = """
name: local
llm:
  provider: openai
  model: llama3.2
  BASE_URL
  temperature: 0.1
  retry: {attempts: 3, initial_delay: 1ms}
steps:
  - id: ask
    kind: llm
    system: You answer briefly.
    prompt: "Summarise: {{ input.text }}"
"""


@pytest.fixture
def local_pipeline(tmp_path: Path, fake_llm: FakeLLMServer, monkeypatch: pytest.MonkeyPatch):
    monkeypatch.delenv("ANTHROPIC_API_KEY")  # a local server needs no key at all

    def make(base_url: str | None = None) -> Path:
        write(tmp_path / "in.txt", "the notes")
        line = f"base_url: {base_url}" if base_url else ""
        return write(tmp_path / "pipeline-config.yaml", CONFIG.replace("BASE_URL", line))

    return make


def test_local_server_without_a_key(cli, fake_llm: FakeLLMServer, local_pipeline, tmp_path: Path):
    local_pipeline(fake_llm.openai_base_url)
    fake_llm.script(Reply(text="short", input_tokens=30, output_tokens=4))

    result = cli("run", "in.txt", "--run-id", "o")

    assert result.exit_code == 0, result.output
    request = fake_llm.requests[0]
    assert request.path == "/v1/chat/completions"
    assert request.body["messages"] == [
        {"role": "system", "content": "You answer briefly."},
        {"role": "user", "content": "Summarise: the notes"},
    ]
    assert request.body["max_tokens"] == 1024 and request.body["temperature"] == 0.1
    steps = json.loads((tmp_path / ".pipeline/o/state.json").read_text())["steps"]
    assert json.loads((tmp_path / ".pipeline/o/steps/01-ask.json").read_text()) == "short"
    assert steps[0]["metrics"]["input_tokens"] == 30
    assert steps[0]["metrics"]["stop_reason"] == "end_turn"


def test_base_url_from_the_environment(
    cli, fake_llm: FakeLLMServer, local_pipeline, monkeypatch: pytest.MonkeyPatch
):
    local_pipeline()
    monkeypatch.setenv("OPENAI_BASE_URL", fake_llm.openai_base_url)
    fake_llm.script(Reply(text="short"))

    assert cli("run", "in.txt").exit_code == 0
    assert fake_llm.count() == 1


def test_rate_limits_are_retried(cli, fake_llm: FakeLLMServer, local_pipeline):
    local_pipeline(fake_llm.openai_base_url)
    limited = ErrorReply(429, "rate_limit_error", "slow", headers={"retry-after-ms": "1"})
    fake_llm.script(limited, Reply(text="short"))

    assert cli("run", "in.txt").exit_code == 0
    assert fake_llm.count() == 2


def test_bad_request_fails_with_the_servers_message(cli, fake_llm: FakeLLMServer, local_pipeline):
    local_pipeline(fake_llm.openai_base_url)
    fake_llm.script(ErrorReply(404, "not_found_error", "model 'llama3.2' not found"))

    result = cli("run", "in.txt")

    assert_clean_error(result, 1, "OpenAI-compatible API 404: model 'llama3.2' not found")
    assert fake_llm.count() == 1


def test_no_key_and_no_base_url_names_both_fixes(cli, local_pipeline):
    local_pipeline()

    assert_clean_error(cli("run", "in.txt"), 2, "OPENAI_API_KEY is not set", "OPENAI_BASE_URL")


def test_anthropic_falls_back_to_a_local_model(cli, fake_llm: FakeLLMServer, tmp_path: Path):
    write(tmp_path / "in.txt", "x")
    write(
        tmp_path / "pipeline-config.yaml",
        f"""
        name: hybrid
        llm:
          model: claude-haiku-4-5
          retry: {{attempts: 1}}
          fallback_models:
            - {{model: llama3.2, provider: openai, base_url: "{fake_llm.openai_base_url}"}}
        steps:
          - id: ask
            kind: llm
            prompt: hello
        """,
    )
    fake_llm.script(ErrorReply.overloaded(), Reply(text="from llama"))

    result = cli("run", "in.txt", "--run-id", "h")

    assert result.exit_code == 0, result.output
    assert [r.path for r in fake_llm.requests] == ["/v1/messages", "/v1/chat/completions"]
    assert json.loads((tmp_path / ".pipeline/h/steps/01-ask.json").read_text()) == "from llama"
