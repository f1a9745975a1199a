"""--model and --provider force a model or provider on every LLM step, and stick on resume."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from tests.e2e.test_errors import assert_clean_error
from tests.fakes import FakeLLMServer, Reply
from tests.helpers import write

CONFIG = """
name: overridden
llm:
  model: claude-haiku-4-5
steps:
  - id: first
    kind: llm
    prompt: "One: {{ input.text }}"
  - id: second
    kind: llm
    model: claude-sonnet-4-5
    prompt: "Two: {{ steps.first }}"
"""


@pytest.fixture
def pipeline(tmp_path: Path, fake_llm: FakeLLMServer) -> Path:
    write(tmp_path / "in.txt", "notes")
    fake_llm.responder = lambda request: Reply(text=f"from {request.model}")
    return write(tmp_path / "pipeline-config.yaml", CONFIG)


def models(fake_llm: FakeLLMServer) -> list[str | None]:
    return [request.model for request in fake_llm.requests]


def test_model_flag_applies_to_every_llm_step(cli, fake_llm: FakeLLMServer, pipeline):
    result = cli("run", "in.txt", "--model", "claude-opus-4-5", "--run-id", "r")

    assert result.exit_code == 0, result.output
    assert models(fake_llm) == ["claude-opus-4-5", "claude-opus-4-5"]


def test_the_override_is_kept_on_resume_and_a_new_one_reruns(
    cli, fake_llm: FakeLLMServer, pipeline, tmp_path: Path
):
    assert cli("run", "in.txt", "--model", "claude-opus-4-5", "--run-id", "r").exit_code == 0
    state = json.loads((tmp_path / ".pipeline/r/state.json").read_text())
    assert state["overrides"] == {"model": "claude-opus-4-5"}

    assert cli("resume", "r").exit_code == 0
    assert len(fake_llm.requests) == 2, "same override: nothing re-runs"

    assert cli("resume", "r", "--model", "claude-haiku-4-5", "--no-cache").exit_code == 0
    assert models(fake_llm)[2:] == ["claude-haiku-4-5", "claude-haiku-4-5"]


def test_provider_flag_switches_to_an_openai_compatible_server(
    cli, fake_llm: FakeLLMServer, pipeline, monkeypatch: pytest.MonkeyPatch
):
    monkeypatch.setenv("OPENAI_BASE_URL", fake_llm.openai_base_url)

    result = cli("run", "in.txt", "--provider", "openai", "--model", "llama3.2")

    assert result.exit_code == 0, result.output
    assert [request.path for request in fake_llm.requests] == ["/v1/chat/completions"] * 2
    assert models(fake_llm) == ["llama3.2", "llama3.2"]


def test_unknown_provider_is_a_clean_error(cli, fake_llm: FakeLLMServer, pipeline):
    result = cli("run", "in.txt", "--provider", "antropic")

    assert_clean_error(result, 2, 'unknown provider "antropic"', "anthropic, openai, replay")
    assert fake_llm.requests == []


def test_provider_replay_from_the_command_line_needs_a_cassette(cli, pipeline):
    result = cli("run", "in.txt", "--provider", "replay")

    assert_clean_error(result, 2, "provider replay needs a cassette")
