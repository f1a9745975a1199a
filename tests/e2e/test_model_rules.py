"""Settings today's models refuse are config errors at load, and the fake refuses them too.

Each refusal is one the Messages API documents (tests/fakes/anthropic_models.py says where):
stepline must say so before the run starts (exit 2, the file and line, the step and model,
what to do), never after a 400 it paid a request for.
"""

from __future__ import annotations

import json
import urllib.error
import urllib.request
from pathlib import Path
from typing import Any

import pytest
import yaml

from stepline.spec import parse_spec
from stepline.spec.model_rules import chars_per_token, rules_for
from tests.e2e.test_errors import assert_clean_error
from tests.fakes import ANTHROPIC_MESSAGES_PATH, FakeLLMServer, Reply
from tests.helpers import SENTINEL_KEY, write

ROOT = Path(__file__).resolve().parents[2]
SHIPPED = [
    *sorted((ROOT / "configs").glob("*/pipeline.yaml")),
    ROOT / "src/stepline/scaffold/starter/pipeline-config.yaml",
    ROOT / "pipeline-config.example.yaml",
]


DISABLED = {"thinking": {"type": "disabled"}}


def config(llm: dict[str, Any], **step: Any) -> str:
    document = {
        "name": "rules",
        "llm": llm,
        "steps": [{"id": "ask", "kind": "llm", "prompt": "Summarise: {{ input.text }}", **step}],
    }
    return yaml.safe_dump(document, sort_keys=False)


@pytest.mark.parametrize(
    ("llm", "step", "fragments"),
    [
        ({"model": "claude-sonnet-5-5", "temperature": 0.2}, {}, ["temperature", ":4:"]),
        ({"model": "claude-haiku-4-5"}, {"temperature": 0}, ["claude-haiku-4-5", ":8:"]),
        ({"model": "claude-sonnet-5-5", "extra": {"top_p": 0.9}}, {}, ["top_p"]),
        ({"model": "claude-haiku-4-5", "effort": "low"}, {}, ["takes no effort"]),
        ({"model": "claude-opus-4-6"}, {"effort": "xhigh"}, ['effort "xhigh"', "max"]),
        ({"model": "claude-sonnet-5-5", "max_tokens": 200_000}, {}, ["128000"]),
        (
            {"model": "claude-sonnet-5-5", "extra": {"thinking": {"type": "disabled"}}},
            {},
            ['thinking type "disabled"', "effort:", '"between_tools"'],
        ),
        (
            {"model": "claude-haiku-5-5", "fallback_models": ["claude-haiku-4-5"]},
            {"effort": "low"},
            ["claude-haiku-4-5 takes no effort"],
        ),
        (
            {"model": "claude-haiku-5-5", "effort": "xhigh", "extra": DISABLED},
            {},
            ['thinking type "disabled" at effort "xhigh"', ":4:", "lower effort: to high"],
        ),
        (
            {"model": "claude-sonnet-5-5", "extra": {"thinking": {"type": "between_tools"}}},
            {"effort": "max"},
            ['thinking type "between_tools" at effort "max"', ":11:", "remove extra.thinking"],
        ),
        (
            {"model": "claude-opus-4-8", "effort": "max", "fallback_models": ["claude-opus-5"]},
            {"extra": DISABLED},
            ['claude-opus-5 refuses thinking type "disabled" at effort "max"'],
        ),
    ],
)
def test_a_setting_the_model_refuses_fails_validate_with_line_and_hint(
    cli, tmp_path: Path, llm: dict[str, Any], step: dict[str, Any], fragments: list[str]
) -> None:
    path = write(tmp_path / "pipeline.yaml", config(llm, **step))

    result = cli("validate", "-c", str(path))

    assert_clean_error(result, 2, 'step "ask"', str(path), *fragments)


def test_a_refused_setting_stops_the_run_before_any_request(
    cli, fake_llm: FakeLLMServer, tmp_path: Path
) -> None:
    write(tmp_path / "notes.txt", "notes")
    path = write(tmp_path / "pipeline.yaml", config({"model": "claude-haiku-5-5"}, temperature=1))

    result = cli("run", "notes.txt", "-c", str(path))

    assert_clean_error(result, 2, "temperature", "effort:")
    assert fake_llm.requests == []
    assert not (tmp_path / ".pipeline").exists() or not list((tmp_path / ".pipeline").glob("run-*"))


def test_settings_the_models_take_pass_and_reach_the_wire(
    cli, fake_llm: FakeLLMServer, tmp_path: Path
) -> None:
    write(tmp_path / "notes.txt", "notes")
    llm = {"model": "claude-haiku-5-5", "effort": "low", "max_tokens": 128_000}
    path = write(tmp_path / "pipeline.yaml", config(llm, extra={"thinking": {"type": "disabled"}}))

    result = cli("run", "notes.txt", "-c", str(path), "--run-id", "r")

    assert result.exit_code == 0, result.output
    body = fake_llm.requests[0].body
    assert body["output_config"] == {"effort": "low"}
    assert body["thinking"] == {"type": "disabled"} and "temperature" not in body


@pytest.mark.parametrize(
    "llm",
    [
        {"model": "claude-haiku-5-5", "effort": "high", "extra": DISABLED},
        {"model": "claude-opus-5", "extra": DISABLED},  # its default effort, high, is taken
        {
            "model": "claude-sonnet-5-5",
            "effort": "medium",
            "extra": {"thinking": {"type": "between_tools"}},
        },
        {"model": "claude-opus-4-8", "effort": "max", "extra": DISABLED},  # no such limit
    ],
)
def test_thinking_turned_down_at_an_effort_the_model_takes_it_passes(llm: dict[str, Any]) -> None:
    parse_spec(config(llm))


def test_temperature_is_left_to_openai_compatible_servers(tmp_path: Path) -> None:
    text = config({"provider": "openai", "model": "llama3.2", "temperature": 0.3})

    spec = parse_spec(text)

    assert spec.llm.temperature == 0.3


def test_a_model_the_table_does_not_know_gets_only_the_api_wide_rules(tmp_path: Path) -> None:
    parse_spec(config({"model": "claude-next-9", "effort": "max", "max_tokens": 500_000}))
    with pytest.raises(Exception, match="temperature"):
        parse_spec(config({"model": "claude-next-9", "temperature": 0.5}))


def test_dated_ids_find_their_family() -> None:
    rules = rules_for("claude-haiku-4-5-20251001")

    assert rules is not None and rules.family == "claude-haiku-4-5"
    assert rules_for("claude-opus-5-5").family == "claude-opus-5-5"  # type: ignore[union-attr]
    assert chars_per_token("claude-sonnet-5-5") < chars_per_token("claude-haiku-4-5")


@pytest.mark.parametrize("path", SHIPPED, ids=lambda path: path.parent.name or path.name)
def test_every_shipped_config_uses_settings_the_models_take(path: Path) -> None:
    spec = parse_spec(path.read_text(), source=path)  # raises on a refused setting

    for step in spec.steps:
        if step.kind == "llm":
            params = spec.llm_params(step)
            assert params.temperature is None or params.provider == "openai"
            rules = rules_for(params.model)
            if rules is not None and rules.thinking_default == "adaptive":
                assert params.max_tokens >= 2048, f"{path}: {step.id} leaves thinking no room"


# --------------------------------------------------------------------------------------------
# The fake refuses what the API refuses


HIGH, XHIGH, MAX = ({"effort": level} for level in ("high", "xhigh", "max"))
BETWEEN_TOOLS = {"type": "between_tools"}


def post(server: FakeLLMServer, **body: Any) -> tuple[int, dict[str, Any]]:
    """POST a Messages request as the API version stepline sends; (status, JSON body)."""
    request = {"max_tokens": 100, "messages": [{"role": "user", "content": "hi"}], **body}
    headers = {"x-api-key": SENTINEL_KEY, "anthropic-version": "2026-10-21"}
    headers["content-type"] = "application/json"
    data = json.dumps(request).encode()
    url = server.base_url + ANTHROPIC_MESSAGES_PATH
    try:
        with urllib.request.urlopen(urllib.request.Request(url, data, headers)) as reply:
            return reply.status, json.loads(reply.read())
    except urllib.error.HTTPError as error:
        return error.code, json.loads(error.read())


@pytest.mark.parametrize(
    "body",
    [
        {"model": "claude-haiku-4-5", "temperature": 0.5},
        {"model": "claude-sonnet-5-5", "thinking": {"type": "enabled", "budget_tokens": 2048}},
        {"model": "claude-sonnet-5-5", "thinking": {"type": "disabled"}},
        {"model": "claude-haiku-4-5", "output_config": {"effort": "low"}},
        {"model": "claude-haiku-5-5", "max_tokens": 128_001},
        {"model": "claude-sonnet-5-5", "tool_choice": {"type": "any"}},
        {"model": "claude-haiku-5-5", "thinking": DISABLED["thinking"], "output_config": XHIGH},
        {"model": "claude-opus-5", "thinking": DISABLED["thinking"], "output_config": MAX},
        {"model": "claude-sonnet-5-5", "thinking": BETWEEN_TOOLS, "output_config": XHIGH},
        {
            "model": "claude-haiku-5-5",
            "messages": [
                {"role": "user", "content": "hi"},
                {"role": "assistant", "content": "{"},
            ],
        },
    ],
)
def test_the_fake_answers_400_where_the_api_does(
    fake_llm: FakeLLMServer, body: dict[str, Any]
) -> None:
    status, error = post(fake_llm, **body)

    assert status == 400
    assert error["type"] == "error" and error["error"]["type"] == "invalid_request_error"


@pytest.mark.parametrize(
    "body",
    [
        {"model": "claude-haiku-5-5", "output_config": XHIGH},
        {"model": "claude-haiku-5-5", "thinking": DISABLED["thinking"], "output_config": HIGH},
        {"model": "claude-opus-5", "thinking": DISABLED["thinking"]},
        {"model": "claude-sonnet-5-5", "thinking": BETWEEN_TOOLS, "output_config": HIGH},
        {"model": "claude-sonnet-5", "thinking": DISABLED["thinking"], "output_config": MAX},
    ],
)
def test_the_fake_answers_what_the_model_takes(
    fake_llm: FakeLLMServer, body: dict[str, Any]
) -> None:
    status, reply = post(fake_llm, **body)

    assert status == 200, reply


# --------------------------------------------------------------------------------------------
# Thinking by default


def test_a_reply_cut_off_while_thinking_fails_with_what_to_raise(
    cli, fake_llm: FakeLLMServer, tmp_path: Path
) -> None:
    write(tmp_path / "notes.txt", "notes")
    path = write(tmp_path / "pipeline.yaml", config({"model": "claude-haiku-5-5"}))
    fake_llm.script(Reply(text="", thinking="Let me consider", stop_reason="max_tokens"))

    result = cli("run", "notes.txt", "-c", str(path), "--run-id", "r")

    assert_clean_error(result, 1, "still thinking", "raise max_tokens")
    state = json.loads((tmp_path / ".pipeline" / "r" / "state.json").read_text())
    assert state["status"] == "failed"


@pytest.mark.parametrize("stream", [False, True], ids=["unstreamed", "streamed"])
def test_a_5x_model_thinks_unasked_and_only_its_text_is_the_output(
    cli, fake_llm: FakeLLMServer, tmp_path: Path, stream: bool
) -> None:
    write(tmp_path / "notes.txt", "notes")
    llm = {"model": "claude-haiku-5-5", "max_tokens": 4096, "stream": stream}
    path = write(tmp_path / "pipeline.yaml", config(llm))
    fake_llm.script(Reply(text="The summary.", output_tokens=3))

    result = cli("run", "notes.txt", "-c", str(path), "--run-id", "r")

    assert result.exit_code == 0, result.output
    assert "thinking" not in fake_llm.requests[0].body  # left to the model, which thinks
    run = tmp_path / ".pipeline" / "r"
    assert json.loads((run / "steps" / "01-ask.json").read_text()) == "The summary."
    [call] = [json.loads(line) for line in (run / "llm-calls.jsonl").read_text().splitlines()]
    assert call["output_tokens"] == fake_llm.default_thinking_tokens + 3  # thinking is billed


@pytest.mark.parametrize("stream", [False, True], ids=["unstreamed", "streamed"])
def test_a_max_tokens_the_default_thinking_fills_fails_with_what_to_raise(
    cli, fake_llm: FakeLLMServer, tmp_path: Path, stream: bool
) -> None:
    write(tmp_path / "notes.txt", "notes")
    llm = {"model": "claude-haiku-5-5", "max_tokens": 16, "stream": stream}
    path = write(tmp_path / "pipeline.yaml", config(llm))
    fake_llm.script(Reply(text="An answer that never comes."))

    result = cli("run", "notes.txt", "-c", str(path), "--run-id", "r")

    assert_clean_error(result, 1, "still thinking", "raise max_tokens")
    assert fake_llm.count(ANTHROPIC_MESSAGES_PATH) == 1
    state = json.loads((tmp_path / ".pipeline" / "r" / "state.json").read_text())
    assert state["status"] == "failed"
