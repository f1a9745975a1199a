"""Hostile and broken data: inputs and model replies, through the real command and the fake
LLM server speaking the real wire formats.

Data is never a template: whatever an input file or a model reply holds reaches the next
step's prompt and arguments exactly as it was. Replies that are garbage, empty, cut off or
huge, and inputs that are huge or not UTF-8, each end in one clear message or a documented,
recorded outcome.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest
import yaml

from stepline.context import MAX_INPUT_BYTES, MAX_WHOLE_INPUT_BYTES
from stepline.providers.base import MAX_REPLY_BYTES
from tests.e2e.test_errors import assert_clean_error
from tests.fakes import ANTHROPIC_MESSAGES_PATH, OPENAI_CHAT_PATH, FakeLLMServer, Reply
from tests.helpers import write

PAYLOADS = [
    "{{ 7*7 }}",
    "{% if true %}rendered{% endif %}",
    "{0.__class__}",
    "{{ ''.__class__.__mro__[1].__subclasses__() }}",
    "{# a comment #}",
    "${HOME} $(id) `id`",
]
PAYLOAD_TEXT = "\n".join(PAYLOADS)
RETRY = {"attempts": 1, "initial_delay": "1ms", "max_delay": "1ms"}


def write_config(folder: Path, steps: list[dict[str, Any]], **llm: Any) -> Path:
    config = {
        "name": "hostile-data",
        "llm": {"model": "claude-haiku-4-5", "retry": RETRY, **llm},
        "steps": steps,
    }
    path = folder / "pipeline-config.yaml"
    path.write_text(yaml.safe_dump(config, sort_keys=False), encoding="utf-8")
    return path


def output(folder: Path, run_id: str, name: str) -> Any:
    return json.loads((folder / ".pipeline" / run_id / "steps" / f"{name}.json").read_text())


def step_state(folder: Path, run_id: str, step_id: str) -> dict[str, Any]:
    state = json.loads((folder / ".pipeline" / run_id / "state.json").read_text())
    return next(step for step in state["steps"] if step["id"] == step_id)


def prompts(fake_llm: FakeLLMServer) -> list[str]:
    return [
        r.prompt for r in fake_llm.requests if r.path in (ANTHROPIC_MESSAGES_PATH, OPENAI_CHAT_PATH)
    ]


def assert_literal(text: str) -> None:
    """Every payload is in ``text`` as written, and nothing shows it was rendered."""
    for payload in PAYLOADS:
        assert payload in text, f"{payload!r} not literal in {text!r}"
    assert "49" not in text and "rendered" not in text.replace("{% if true %}rendered", "")
    assert "<class" not in text


# --------------------------------------------------------------------------------------------
# Inputs and replies are never rendered as templates


def test_template_syntax_in_the_input_and_in_a_reply_reaches_the_next_step_literally(
    cli, fake_llm: FakeLLMServer, tmp_path: Path
):
    write(tmp_path / "in.txt", PAYLOAD_TEXT)
    write(tmp_path / "argv.py", "import json, sys\nprint(json.dumps(sys.argv[1:]))\n")
    write_config(
        tmp_path,
        [
            {"id": "first", "kind": "llm", "prompt": "Input:\n{{ input.text }}"},
            {"id": "second", "kind": "llm", "prompt": "Before:\n{{ steps.first }}"},
            {
                "id": "third",
                "kind": "shell",
                "command": ["python3", "argv.py", "{{ steps.second }}", "{{ input.text }}"],
            },
        ],
    )
    reply = "Reply:\n" + PAYLOAD_TEXT
    fake_llm.script(Reply(text=reply), Reply(text="again:\n" + PAYLOAD_TEXT))

    result = cli("run", "in.txt", "--run-id", "t")

    assert result.exit_code == 0, result.output
    first_prompt, second_prompt = prompts(fake_llm)
    assert first_prompt == "Input:\n" + PAYLOAD_TEXT
    assert second_prompt == "Before:\n" + reply
    assert_literal(first_prompt)
    assert_literal(second_prompt)
    assert output(tmp_path, "t", "01-first") == reply
    assert output(tmp_path, "t", "03-third") == ["again:\n" + PAYLOAD_TEXT, PAYLOAD_TEXT]


def test_template_syntax_in_json_input_records_and_streamed_replies_stays_literal(
    cli, fake_llm: FakeLLMServer, tmp_path: Path
):
    """The same through a fan-out over input.records (``item``, ``item_key``), JSON replies
    (``steps.x.field``) and a streamed reply over the OpenAI wire format."""
    records = [{"id": payload, "text": payload} for payload in PAYLOADS]
    write(tmp_path / "in.jsonl", "\n".join(json.dumps(record) for record in records) + "\n")
    write_config(
        tmp_path,
        [
            {
                "id": "each",
                "kind": "llm",
                "for_each": "input.records",
                "item_key": "{{ item.id }}",
                "concurrency": 1,
                "prompt": "key={{ item_key }} text={{ item.text }}",
                "output": "json",
            },
            {
                "id": "after",
                "kind": "llm",
                "stream": True,
                "prompt": "{% for r in steps.each %}[{{ r.echo }}]{% endfor %}",
            },
        ],
        provider="openai",
        base_url=fake_llm.openai_base_url,
    )
    fake_llm.responder = lambda request: Reply(
        text=json.dumps({"echo": request.prompt.partition(" text=")[2]})
    )

    result = cli("run", "in.jsonl", "--run-id", "f")

    assert result.exit_code == 0, result.output
    sent = prompts(fake_llm)
    assert sent[:-1] == [f"key={payload} text={payload}" for payload in PAYLOADS]
    assert sent[-1] == "".join(f"[{payload}]" for payload in PAYLOADS)
    assert [row["echo"] for row in output(tmp_path, "f", "01-each")] == PAYLOADS


def test_config_templates_cannot_reach_python_internals(cli, tmp_path: Path):
    write(tmp_path / "in.txt", "{0.__class__}")
    refused_at_load = (2, "input has no attribute")  # input's attributes are checked at load
    for source, (exit_code, words) in [
        ("{{ input.__class__ }}", refused_at_load),
        ("{{ input._data }}", refused_at_load),
        ("{{ input.text.format(input) }}", (1, "template error")),
        ("{{ run.__class__.__mro__ }}", (1, "template error")),
        ("{{ run.update({'x': 1}) }}", (1, "template error")),
        ("{{ 'x' * 10**12 }}", (1, "template error")),
    ]:
        write(
            tmp_path / "pipeline-config.yaml",
            "name: sandbox\nsteps:\n  - id: one\n    kind: shell\n"
            f"    command: [echo, {json.dumps(source)}]\n",
        )

        result = cli("run", "in.txt")

        assert_clean_error(result, exit_code, 'step "one"', words)
        assert "<class" not in result.output


def test_an_arithmetic_error_in_a_template_is_a_step_error(cli, tmp_path: Path):
    write(tmp_path / "in.txt", "x")
    write(
        tmp_path / "pipeline-config.yaml",
        'name: zero\nsteps:\n  - id: one\n    kind: shell\n    command: [echo, "{{ 1 / 0 }}"]\n',
    )

    result = cli("run", "in.txt")

    assert_clean_error(result, 1, 'step "one"', "ZeroDivisionError: division by zero")
    assert "internal error" not in result.output


# --------------------------------------------------------------------------------------------
# Model replies: garbage, empty, cut off, huge


def test_garbage_reply_to_a_text_step_is_kept_as_it_is(
    cli, fake_llm: FakeLLMServer, tmp_path: Path
):
    garbage = "\x00\x01\ufffd\U0001f4a5 <|endoftext|> \u202e{{ }} }}{{"
    write(tmp_path / "in.txt", "x")
    write_config(tmp_path, [{"id": "ask", "kind": "llm", "prompt": "hi"}])
    fake_llm.script(Reply(text=garbage))

    assert cli("run", "in.txt", "--run-id", "g").exit_code == 0
    assert output(tmp_path, "g", "01-ask") == garbage


def test_garbage_reply_to_a_json_step_fails_clearly_after_repairs(
    cli, fake_llm: FakeLLMServer, tmp_path: Path
):
    write(tmp_path / "in.txt", "x")
    write_config(
        tmp_path,
        [{"id": "ask", "kind": "llm", "prompt": "hi", "output": "json", "repair_attempts": 1}],
    )
    fake_llm.script(Reply(text="\x00\x01 not json {"), Reply(text="}{"))

    result = cli("run", "in.txt", "--run-id", "g")

    assert_clean_error(result, 1, 'step "ask": the reply is not JSON', "after 1 repair attempt")
    failed = (tmp_path / ".pipeline/g/steps/01-ask.failed.txt").read_text()
    assert "not json {" in failed and "}{" in failed


@pytest.mark.parametrize("provider", ["anthropic", "openai"])
def test_an_empty_reply_is_kept_with_a_warning(
    cli, fake_llm: FakeLLMServer, tmp_path: Path, provider: str
):
    write(tmp_path / "in.txt", "x")
    base_url = fake_llm.openai_base_url if provider == "openai" else fake_llm.base_url
    write_config(
        tmp_path,
        [{"id": "ask", "kind": "llm", "prompt": "hi"}],
        provider=provider,
        base_url=base_url,
    )
    fake_llm.script(Reply(text=""))

    result = cli("run", "in.txt", "--run-id", "e")

    assert result.exit_code == 0, result.output
    assert output(tmp_path, "e", "01-ask") == ""
    assert step_state(tmp_path, "e", "ask")["metrics"]["warning"] == "the model's reply is empty"
    assert "the model's reply is empty" in result.output


def test_an_empty_reply_to_a_json_step_is_repaired(cli, fake_llm: FakeLLMServer, tmp_path: Path):
    write(tmp_path / "in.txt", "x")
    write_config(tmp_path, [{"id": "ask", "kind": "llm", "prompt": "hi", "output": "json"}])
    fake_llm.script(Reply(text=""), Reply(text='{"ok": true}'))

    assert cli("run", "in.txt", "--run-id", "e").exit_code == 0
    assert output(tmp_path, "e", "01-ask") == {"ok": True}
    assert "could not be used: the reply is not JSON" in prompts(fake_llm)[-1]


def test_a_reply_cut_off_at_max_tokens_is_kept_with_a_warning(
    cli, fake_llm: FakeLLMServer, tmp_path: Path
):
    write(tmp_path / "in.txt", "x")
    write_config(tmp_path, [{"id": "ask", "kind": "llm", "prompt": "hi", "max_tokens": 5}])
    fake_llm.script(Reply(text="The answer is", stop_reason="max_tokens"))

    assert cli("run", "in.txt", "--run-id", "c").exit_code == 0
    assert output(tmp_path, "c", "01-ask") == "The answer is"
    assert "cut off at max_tokens (5)" in step_state(tmp_path, "c", "ask")["metrics"]["warning"]


HUGE = "x" * (MAX_REPLY_BYTES + 1)


@pytest.mark.parametrize(
    ("provider", "stream"),
    [("anthropic", False), ("anthropic", True), ("openai", False), ("openai", True)],
)
def test_a_huge_reply_fails_the_step_clearly_and_is_not_retried_or_cached(
    cli, fake_llm: FakeLLMServer, tmp_path: Path, provider: str, stream: bool
):
    write(tmp_path / "in.txt", "x")
    base_url = fake_llm.openai_base_url if provider == "openai" else fake_llm.base_url
    write_config(
        tmp_path,
        [{"id": "ask", "kind": "llm", "prompt": "hi", "stream": stream}],
        provider=provider,
        base_url=base_url,
        retry={"attempts": 3, "initial_delay": "1ms", "max_delay": "1ms"},
    )
    fake_llm.script(Reply(text=HUGE, chunks=40), Reply(text="small"))

    result = cli("run", "in.txt", "--run-id", "h")

    assert_clean_error(result, 1, 'step "ask"', "10 MiB", "lower max_tokens")
    assert len(prompts(fake_llm)) == 1  # refused, not asked again
    assert not (tmp_path / ".pipeline/h/steps/01-ask.json").exists()
    calls = (tmp_path / ".pipeline/h/llm-calls.jsonl").read_text()
    assert len(calls) < 100_000  # the huge text is in no record

    fake_llm.script(Reply(text="small"))
    assert cli("resume", "h").exit_code == 0  # nothing cached: asked afresh
    assert output(tmp_path, "h", "01-ask") == "small"


def test_a_huge_reply_from_a_cassette_fails_the_step_clearly(
    cli, fake_llm: FakeLLMServer, tmp_path: Path
):
    """A reply that reaches the step by another path than a provider hits the same cap."""
    write(tmp_path / "in.txt", "x")
    write_config(tmp_path, [{"id": "ask", "kind": "llm", "prompt": "hi"}])
    fake_llm.script(Reply(text="small"))
    assert cli("run", "in.txt", "--record", "cassette.jsonl").exit_code == 0
    line = json.loads((tmp_path / "cassette.jsonl").read_text())
    line["completion"]["text"] = HUGE
    (tmp_path / "cassette.jsonl").write_text(json.dumps(line) + "\n")

    result = cli("run", "in.txt", "--replay", "cassette.jsonl")

    assert_clean_error(result, 1, 'step "ask": the reply is 10.0 MiB, over stepline\'s cap')
    assert len(prompts(fake_llm)) == 1  # only the recording


# --------------------------------------------------------------------------------------------
# Input files: size caps and UTF-8


def sparse_file(path: Path, size: int) -> Path:
    """A file of ``size`` zero bytes that takes no disk space (NUL is valid UTF-8)."""
    with path.open("wb") as handle:
        handle.truncate(size)
    return path


def test_an_input_over_the_cap_is_refused_before_anything_is_written(cli, tmp_path: Path):
    sparse_file(tmp_path / "huge.jsonl", MAX_INPUT_BYTES + 1)
    write(
        tmp_path / "pipeline-config.yaml",
        "name: x\nsteps:\n  - {id: a, kind: shell, command: ['true']}\n",
    )

    result = cli("run", "huge.jsonl")

    assert_clean_error(
        result, 2, "huge.jsonl is 512 MiB", "largest input stepline takes is 512 MiB"
    )
    assert not (tmp_path / ".pipeline").exists()


def test_an_input_too_large_to_read_whole_fails_the_step_that_reads_it(cli, tmp_path: Path):
    sparse_file(tmp_path / "big.txt", MAX_WHOLE_INPUT_BYTES + 1)
    write(
        tmp_path / "pipeline-config.yaml",
        """
        name: whole
        steps:
          - id: lines
            kind: shell
            for_each: input.lines
            command: ["true"]
          - id: whole
            kind: shell
            command: ["echo", "{{ input.text | length }}"]
        """,
    )

    result = cli("run", "big.txt", "--run-id", "w")

    assert_clean_error(
        result, 1, 'step "whole"', "big.txt is 32.0 MiB, too large to read whole", "input.lines"
    )
    assert step_state(tmp_path, "w", "lines")["status"] == "completed"  # streamed: no cap


def test_a_json_array_too_large_to_read_whole_suggests_json_lines(cli, tmp_path: Path):
    path = tmp_path / "big.json"
    with path.open("wb") as handle:
        handle.write(b"[")
        handle.truncate(MAX_WHOLE_INPUT_BYTES + 2)
    write(
        tmp_path / "pipeline-config.yaml",
        """
        name: array
        steps:
          - id: each
            kind: shell
            for_each: input.records
            command: ["true"]
        """,
    )

    assert_clean_error(
        cli("run", "big.json"), 1, 'step "each"', "too large to read whole", "JSON Lines"
    )


def test_a_python_step_reading_too_large_an_input_fails_clearly(cli, tmp_path: Path):
    sparse_file(tmp_path / "big.txt", MAX_WHOLE_INPUT_BYTES + 1)
    write(tmp_path / "helpers.py", "def read(ctx):\n    return len(ctx.input.text)\n")
    write(
        tmp_path / "pipeline-config.yaml",
        "name: py\nsteps:\n  - {id: read, kind: python, function: 'helpers:read'}\n",
    )

    result = cli("run", "big.txt")

    assert_clean_error(result, 1, 'step "read"', "too large to read whole", "helpers.py:2")


def test_an_input_that_is_not_utf8_is_refused_naming_the_file_and_byte(cli, tmp_path: Path):
    (tmp_path / "latin1.txt").write_bytes("caf\xe9 au lait\n".encode("latin-1"))
    write(
        tmp_path / "pipeline-config.yaml",
        "name: x\nsteps:\n  - {id: a, kind: shell, command: ['true']}\n",
    )

    result = cli("run", "latin1.txt")

    assert_clean_error(result, 2, "latin1.txt is not UTF-8 text (byte 3)", "convert it to UTF-8")
    assert not (tmp_path / ".pipeline").exists()


def test_a_utf8_character_split_across_read_chunks_is_accepted(cli, tmp_path: Path):
    """The input is checked a MiB at a time; a character across the boundary is still valid."""
    text = "a" * (1024 * 1024 - 1) + "é"  # its two bytes are the chunks' last and first
    (tmp_path / "in.txt").write_text(text, encoding="utf-8")
    write(
        tmp_path / "pipeline-config.yaml",
        "name: x\nsteps:\n  - {id: a, kind: shell, command: [echo, '{{ input.text[-1:] }}']}\n",
    )

    assert cli("run", "in.txt", "--run-id", "u").exit_code == 0
    assert output(tmp_path, "u", "01-a") == "é"
