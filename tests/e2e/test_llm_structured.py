"""Structured output: schema: / schema_file:, the repair loop, and how repairs are cached.

Every model reply comes from the fake server, so each test can count the requests a step made
and read the conversation the model was shown when it was asked to repair a reply.
"""

from __future__ import annotations

import datetime
import json
import re
import sqlite3
from pathlib import Path
from typing import Any

import pytest
import yaml

from stepline.steps.structured import (
    MAX_SCHEMA_IN_REPAIR,
    ReplyProblem,
    repair_request_text,
    structured_value,
)
from tests.e2e.test_errors import assert_clean_error
from tests.fakes import (
    ANTHROPIC_MESSAGES_PATH,
    OPENAI_CHAT_PATH,
    ErrorReply,
    FakeLLMServer,
    RecordedRequest,
    Reply,
)
from tests.helpers import write

SCHEMA: dict[str, Any] = {
    "type": "object",
    "required": ["items"],
    "additionalProperties": False,
    "properties": {
        "items": {
            "type": "array",
            "items": {
                "type": "object",
                "required": ["title", "priority"],
                "properties": {
                    "title": {"type": "string"},
                    "priority": {"type": "integer", "minimum": 1, "maximum": 3},
                },
            },
        }
    },
}
GOOD = {"items": [{"title": "Fix login", "priority": 1}]}
BAD = {"items": [{"title": "Fix login", "priority": "high"}]}
BAD_PATH = "/items/0/priority"
PROMPT = "Backlog items from: {{ input.text }}"
RETRY = {"attempts": 2, "initial_delay": "1ms", "max_delay": "5ms"}


def model_requests(fake_llm: FakeLLMServer) -> list[RecordedRequest]:
    """Requests for a completion (a dry run's free count_tokens requests are left out)."""
    return [r for r in fake_llm.requests if r.path in (ANTHROPIC_MESSAGES_PATH, OPENAI_CHAT_PATH)]


def asked(fake_llm: FakeLLMServer) -> int:
    return len(model_requests(fake_llm))


def reply(value: Any, **usage: int) -> Reply:
    return Reply(text=json.dumps(value), **usage)


def write_config(
    folder: Path,
    step: dict[str, Any] | None = None,
    llm: dict[str, Any] | None = None,
    *,
    schema: dict[str, Any] | None = SCHEMA,
    name: str = "pipeline-config.yaml",
) -> Path:
    """A one-step pipeline; ``step`` adds to (or, with None values, removes from) the step."""
    base: dict[str, Any] = {"id": "extract", "kind": "llm", "prompt": PROMPT}
    if schema is not None:
        base["schema"] = schema
    for key, value in (step or {}).items():
        if value is None:
            base.pop(key, None)
        else:
            base[key] = value
    config = {
        "name": "structured",
        "llm": {"model": "claude-haiku-4-5", "retry": RETRY, **(llm or {})},
        "steps": [base],
    }
    write(folder / "notes.txt", "fix the login page")
    path = folder / name
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(yaml.safe_dump(config, sort_keys=False), encoding="utf-8")
    return path


def run_dir(tmp_path: Path, run_id: str) -> Path:
    return tmp_path / ".pipeline" / run_id


def state(tmp_path: Path, run_id: str) -> dict[str, Any]:
    return json.loads((run_dir(tmp_path, run_id) / "state.json").read_text())


def output(tmp_path: Path, run_id: str) -> Any:
    return json.loads((run_dir(tmp_path, run_id) / "steps" / "01-extract.json").read_text())


def calls(tmp_path: Path, run_id: str) -> list[dict[str, Any]]:
    lines = (run_dir(tmp_path, run_id) / "llm-calls.jsonl").read_text().splitlines()
    return [json.loads(line) for line in lines]


def log_messages(tmp_path: Path, run_id: str) -> list[str]:
    lines = (run_dir(tmp_path, run_id) / "events.jsonl").read_text().splitlines()
    events = [json.loads(line) for line in lines]
    return [str(event.get("message")) for event in events if event["type"] == "log"]


def cached_entries(tmp_path: Path) -> int:
    path = tmp_path / ".pipeline" / "cache.sqlite"
    if not path.exists():
        return 0
    with sqlite3.connect(path) as db:
        return int(db.execute("SELECT count(*) FROM responses").fetchone()[0])


def roles(messages: list[dict[str, Any]]) -> list[str]:
    return [str(message["role"]) for message in messages]


# --------------------------------------------------------------------------------------------
# The repair loop
# --------------------------------------------------------------------------------------------


def test_reply_matching_the_schema_first_time_takes_one_request(
    cli, fake_llm: FakeLLMServer, tmp_path: Path
):
    write_config(tmp_path)
    fake_llm.script(reply(GOOD))

    result = cli("run", "notes.txt", "--run-id", "r")

    assert result.exit_code == 0, result.output
    assert asked(fake_llm) == 1
    request = model_requests(fake_llm)[0]
    assert request.messages == [
        {"role": "user", "content": "Backlog items from: fix the login page"}
    ]
    # The schema is a local contract: it is never sent as a request field.
    assert "schema" not in request.body and "output_schema" not in request.body
    assert output(tmp_path, "r") == GOOD
    metrics = state(tmp_path, "r")["steps"][0]["metrics"]
    assert "repairs" not in metrics
    assert [record["followups"] for record in calls(tmp_path, "r")] == [[]]


def test_repair_on_the_second_reply(cli, fake_llm: FakeLLMServer, tmp_path: Path):
    write_config(tmp_path)
    bad_text = json.dumps(BAD)
    fake_llm.script(
        Reply(text=bad_text, input_tokens=100, output_tokens=20),
        Reply(text=json.dumps(GOOD), input_tokens=150, output_tokens=30),
    )

    result = cli("run", "notes.txt", "--run-id", "r")

    assert result.exit_code == 0, result.output
    assert asked(fake_llm) == 2
    second = model_requests(fake_llm)[1].messages
    assert roles(second) == ["user", "assistant", "user"]
    assert second[0]["content"] == "Backlog items from: fix the login page"
    assert second[1]["content"] == bad_text
    repair = second[2]["content"]
    assert repair.startswith("Your reply could not be used: the reply does not match the schema")
    assert f"at {BAD_PATH}: 'high' is not of type 'integer'" in repair
    quoted = repair.split("The JSON must match this JSON Schema:\n", 1)[1]
    assert json.loads(quoted) == SCHEMA

    assert output(tmp_path, "r") == GOOD
    step = state(tmp_path, "r")["steps"][0]
    assert step["status"] == "completed"
    metrics = step["metrics"]
    assert metrics["repairs"] == 1
    assert (metrics["input_tokens"], metrics["output_tokens"]) == (250, 50)
    assert metrics["attempts"] == 2
    # claude-haiku-4-5: $1 per million input tokens, $5 per million output tokens.
    assert metrics["cost_usd"] == pytest.approx((250 * 1 + 50 * 5) / 1e6)
    usage = state(tmp_path, "r")["usage"]
    assert (usage["requests"], usage["input_tokens"], usage["output_tokens"]) == (2, 250, 50)

    records = calls(tmp_path, "r")
    assert [record["response"] for record in records] == [bad_text, json.dumps(GOOD)]
    assert records[0]["followups"] == []
    assert records[1]["followups"] == [
        {"role": "assistant", "content": bad_text},
        {"role": "user", "content": repair},
    ]
    assert records[0]["request_hash"] != records[1]["request_hash"]
    assert any("asking the model to repair it" in m for m in log_messages(tmp_path, "r"))


def test_repair_attempts_exhausted_fails_with_the_path_and_keeps_every_reply(
    cli, fake_llm: FakeLLMServer, tmp_path: Path
):
    write_config(tmp_path)
    replies = [
        {"items": [{"title": "Fix login", "priority": "high"}]},
        {"items": [{"title": "Fix login", "priority": "urgent"}]},
        {"items": [{"title": "Fix login", "priority": "very"}]},
    ]
    fake_llm.script(*(reply(value) for value in replies))

    result = cli("run", "notes.txt", "--run-id", "r")

    assert_clean_error(
        result,
        1,
        'step "extract"',
        f"does not match the schema at {BAD_PATH}",
        "(after 2 repair attempts)",
        "repair_attempts",
        "01-extract.failed.txt",
    )
    assert asked(fake_llm) == 3
    third = model_requests(fake_llm)[2].messages
    assert roles(third) == ["user", "assistant", "user", "assistant", "user"]
    assert [third[1]["content"], third[3]["content"]] == [json.dumps(v) for v in replies[:2]]
    kept = (run_dir(tmp_path, "r") / "steps" / "01-extract.failed.txt").read_text()
    for number, value in enumerate(replies, start=1):
        assert f"----- reply {number} of 3 -----\n{json.dumps(value)}" in kept
    assert not (run_dir(tmp_path, "r") / "steps" / "01-extract.json").exists()
    run_state = state(tmp_path, "r")
    assert run_state["status"] == "failed"
    assert run_state["steps"][0]["status"] == "failed"
    assert [len(record["followups"]) for record in calls(tmp_path, "r")] == [0, 2, 4]
    # The hint's promise: every reply can be read with show --calls / --call N.
    rows = json.loads(cli("show", "r", "--calls", "--json").stdout)
    assert [row["outcome"] for row in rows] == ["ok", "ok", "ok"]
    third = cli("show", "r", "--call", "3").stdout
    assert json.dumps(replies[2]) in third
    assert third.count("assistant (repair turn)") == 2 and "user (repair turn)" in third


def test_repair_attempts_zero_means_one_request(cli, fake_llm: FakeLLMServer, tmp_path: Path):
    write_config(tmp_path, step={"repair_attempts": 0})
    fake_llm.script(reply(BAD), reply(GOOD))

    result = cli("run", "notes.txt", "--run-id", "r")

    assert_clean_error(result, 1, f"does not match the schema at {BAD_PATH}")
    assert "repair attempt" not in result.output
    assert asked(fake_llm) == 1
    assert fake_llm.pending == 1
    kept = (run_dir(tmp_path, "r") / "steps" / "01-extract.failed.txt").read_text()
    assert kept == json.dumps(BAD)


def test_repair_attempts_from_llm_defaults_and_step_override(
    cli, fake_llm: FakeLLMServer, tmp_path: Path
):
    write_config(tmp_path, llm={"repair_attempts": 1})
    fake_llm.responder = lambda request: reply(BAD)

    result = cli("run", "notes.txt", "--run-id", "a")

    assert_clean_error(result, 1, "(after 1 repair attempt)")
    assert asked(fake_llm) == 2

    write_config(tmp_path, llm={"repair_attempts": 1}, step={"repair_attempts": 3})
    result = cli("run", "notes.txt", "--run-id", "b")

    assert_clean_error(result, 1, "(after 3 repair attempts)")
    assert asked(fake_llm) == 2 + 4


def test_reply_that_is_not_json_is_repaired(cli, fake_llm: FakeLLMServer, tmp_path: Path):
    write_config(tmp_path)
    chatty = "Sure! The items are: fix the login page."
    fake_llm.script(Reply(text=chatty), Reply(text="```json\n" + json.dumps(GOOD) + "\n```"))

    result = cli("run", "notes.txt", "--run-id", "r")

    assert result.exit_code == 0, result.output
    assert asked(fake_llm) == 2
    messages = model_requests(fake_llm)[1].messages
    assert messages[1] == {"role": "assistant", "content": chatty}
    assert "the reply is not JSON (Expecting value at line 1 column 1)" in messages[2]["content"]
    assert output(tmp_path, "r") == GOOD
    assert state(tmp_path, "r")["steps"][0]["metrics"]["repairs"] == 1


def test_output_json_without_a_schema_is_repaired_without_quoting_a_schema(
    cli, fake_llm: FakeLLMServer, tmp_path: Path
):
    write_config(tmp_path, step={"output": "json"}, schema=None)
    fake_llm.script(Reply(text="[1, 2,"), Reply(text="[1, 2]"))

    result = cli("run", "notes.txt", "--run-id", "r")

    assert result.exit_code == 0, result.output
    repair = model_requests(fake_llm)[1].messages[2]["content"]
    assert "the reply is not JSON" in repair
    assert "JSON Schema" not in repair
    assert output(tmp_path, "r") == [1, 2]


def test_repair_over_the_openai_wire_format(cli, fake_llm: FakeLLMServer, tmp_path: Path):
    write_config(
        tmp_path,
        llm={"provider": "openai", "base_url": fake_llm.openai_base_url},
        step={"system": "You write backlog items."},
    )
    fake_llm.script(reply(BAD), reply(GOOD))

    result = cli("run", "notes.txt", "--run-id", "r")

    assert result.exit_code == 0, result.output
    second = model_requests(fake_llm)[1]
    assert second.path == "/v1/chat/completions"
    assert roles(second.messages) == ["system", "user", "assistant", "user"]
    assert second.messages[2]["content"] == json.dumps(BAD)
    assert BAD_PATH in second.messages[3]["content"]
    assert output(tmp_path, "r") == GOOD


def test_streamed_replies_are_repaired_too(cli, fake_llm: FakeLLMServer, tmp_path: Path):
    write_config(tmp_path, step={"stream": True})
    fake_llm.script(reply(BAD), reply(GOOD))

    result = cli("run", "notes.txt", "--run-id", "r")

    assert result.exit_code == 0, result.output
    assert [request.stream for request in model_requests(fake_llm)] == [True, True]
    assert roles(model_requests(fake_llm)[1].messages) == ["user", "assistant", "user"]
    assert output(tmp_path, "r") == GOOD


def test_reply_cut_off_at_max_tokens_is_not_repaired(cli, fake_llm: FakeLLMServer, tmp_path: Path):
    write_config(tmp_path)
    fake_llm.script(Reply(text='{"items": [{"title": "Fix', stop_reason="max_tokens"))

    result = cli("run", "notes.txt", "--run-id", "r")

    assert_clean_error(result, 1, "cut off at max_tokens", "raise max_tokens")
    assert asked(fake_llm) == 1
    assert cached_entries(tmp_path) == 0


def test_refusal_during_a_repair_fails_and_drops_the_chain_from_the_cache(
    cli, fake_llm: FakeLLMServer, tmp_path: Path
):
    write_config(tmp_path)
    fake_llm.script(reply(BAD), Reply(text="I cannot help with that.", stop_reason="refusal"))

    result = cli("run", "notes.txt", "--run-id", "r")

    assert_clean_error(result, 1, "the model refused: I cannot help with that.")
    assert asked(fake_llm) == 2
    assert cached_entries(tmp_path) == 0


def test_failure_message_counts_the_other_problems(cli, fake_llm: FakeLLMServer, tmp_path: Path):
    write_config(tmp_path, step={"repair_attempts": 0})
    fake_llm.script(reply({"items": [{"title": 7, "priority": 9}], "extra": True}))

    result = cli("run", "notes.txt")

    assert_clean_error(result, 1, "does not match the schema at /", "(and 2 more problem(s))")


def test_the_first_failing_path_is_quoted_even_past_ten_items(
    cli, fake_llm: FakeLLMServer, tmp_path: Path
):
    write_config(tmp_path, step={"repair_attempts": 0})
    items = [{"title": f"item {n}", "priority": 1} for n in range(12)]
    items[2]["priority"] = "high"
    items[10]["priority"] = "low"
    fake_llm.script(reply({"items": items}))

    result = cli("run", "notes.txt")

    assert_clean_error(result, 1, "does not match the schema at /items/2/priority")


@pytest.mark.parametrize(
    ("field_schema", "bad", "good", "message"),
    [
        ({"type": "string", "format": "email"}, "not-an-email", "ana@example.com", "'email'"),
        ({"type": "string", "format": "date"}, "2026-13-45", "2026-11-23", "'date'"),
    ],
)
def test_format_is_checked(
    cli,
    fake_llm: FakeLLMServer,
    tmp_path: Path,
    field_schema: dict[str, Any],
    bad: str,
    good: str,
    message: str,
):
    schema = {"type": "object", "required": ["value"], "properties": {"value": field_schema}}
    write_config(tmp_path, schema=schema)
    fake_llm.script(reply({"value": bad}), reply({"value": good}))

    result = cli("run", "notes.txt", "--run-id", "r")

    assert result.exit_code == 0, result.output
    assert asked(fake_llm) == 2
    repair = model_requests(fake_llm)[1].messages[2]["content"]
    assert f"at /value: '{bad}' is not a {message}" in repair
    assert output(tmp_path, "r") == {"value": good}


# --------------------------------------------------------------------------------------------
# schema_file, and schemas the config check refuses
# --------------------------------------------------------------------------------------------


@pytest.mark.parametrize("suffix", ["json", "yaml"])
def test_schema_file_relative_to_the_config_folder(
    cli, fake_llm: FakeLLMServer, tmp_path: Path, suffix: str
):
    text = json.dumps(SCHEMA, indent=2) if suffix == "json" else yaml.safe_dump(SCHEMA)
    write(tmp_path / "conf" / "schemas" / f"items.{suffix}", text)
    write_config(
        tmp_path,
        step={"schema_file": f"schemas/items.{suffix}"},
        schema=None,
        name="conf/pipeline.yaml",
    )
    fake_llm.script(reply(BAD), reply(GOOD))

    result = cli("run", "notes.txt", "-c", "conf/pipeline.yaml", "--run-id", "r")

    assert result.exit_code == 0, result.output
    assert asked(fake_llm) == 2  # the file's schema rejected the first reply
    repair = model_requests(fake_llm)[1].messages[2]["content"]
    assert BAD_PATH in repair
    assert json.loads(repair.split("JSON Schema:\n", 1)[1]) == SCHEMA
    assert output(tmp_path, "r") == GOOD


def test_schema_file_edit_changes_the_request(cli, fake_llm: FakeLLMServer, tmp_path: Path):
    schema_path = write(tmp_path / "items.json", json.dumps(SCHEMA))
    write_config(tmp_path, step={"schema_file": "items.json"}, schema=None)
    fake_llm.responder = lambda request: reply(GOOD)
    assert cli("run", "notes.txt", "--run-id", "a").exit_code == 0
    assert cli("run", "notes.txt", "--run-id", "b").exit_code == 0
    assert asked(fake_llm) == 1

    schema_path.write_text(json.dumps({**SCHEMA, "description": "backlog items, v2"}))
    assert cli("run", "notes.txt", "--run-id", "c").exit_code == 0

    assert asked(fake_llm) == 2


INVALID_INLINE = """
name: bad-schema
llm: {model: claude-haiku-4-5}
steps:
  - id: first
    kind: llm
    prompt: hello
  - id: extract
    kind: llm
    prompt: items please
    schema:
      type: object
      properties:
        title: {type: strin}
"""


@pytest.mark.parametrize("command", ["run", "validate"])
def test_invalid_inline_schema_is_a_config_error(
    cli, fake_llm: FakeLLMServer, tmp_path: Path, command: str
):
    write(tmp_path / "notes.txt", "x")
    write(tmp_path / "pipeline-config.yaml", INVALID_INLINE)

    result = cli(command, *(["notes.txt"] if command == "run" else []))

    assert_clean_error(
        result,
        2,
        "pipeline-config.yaml:7:",  # the step's line (the error is the step's)
        'step 2 ("extract")',
        "not a valid JSON Schema at properties/title/type: 'strin' is not valid",
    )
    assert asked(fake_llm) == 0
    assert not (tmp_path / ".pipeline").exists()


def test_schema_with_an_unresolvable_ref_is_a_config_error(
    cli, fake_llm: FakeLLMServer, tmp_path: Path
):
    write_config(tmp_path, schema={"$ref": "#/$defs/missing"})
    fake_llm.script(reply(GOOD))

    result = cli("run", "notes.txt")

    assert_clean_error(result, 2, 'step 1 ("extract")', "$defs/missing")
    assert "internal error" not in result.output
    assert asked(fake_llm) == 0


def test_schema_with_a_yaml_date_is_a_config_error(cli, fake_llm: FakeLLMServer, tmp_path: Path):
    due = {"type": "string", "format": "date", "examples": [datetime.date(2026, 11, 23)]}
    write_config(tmp_path, schema={"type": "object", "properties": {"due": due}})
    assert "- 2026-11-23\n" in (tmp_path / "pipeline-config.yaml").read_text()  # a YAML date

    result = cli("run", "notes.txt")

    assert_clean_error(result, 2, "extract")
    assert "internal error" not in result.output


INVALID_FILE = """
name: bad-schema-file
llm: {model: claude-haiku-4-5}
steps:
  - id: extract
    kind: llm
    prompt: items please
    schema_file: schemas/items.json
"""


@pytest.mark.parametrize(
    ("content", "fragments"),
    [
        (
            '{"type": "object", "properties": {"n": {"minimum": "one"}}}',
            ["schemas/items.json: the schema is not a valid JSON Schema at properties/n/minimum"],
        ),
        ('{"type": "object", ', ["schemas/items.json is not JSON or YAML"]),
        ("[1, 2]", ["schemas/items.json must hold a JSON Schema object"]),
    ],
)
def test_invalid_schema_file_is_a_config_error(
    cli, fake_llm: FakeLLMServer, tmp_path: Path, content: str, fragments: list[str]
):
    write(tmp_path / "notes.txt", "x")
    write(tmp_path / "pipeline-config.yaml", INVALID_FILE)
    write(tmp_path / "schemas" / "items.json", content)

    result = cli("run", "notes.txt")

    assert_clean_error(result, 2, "pipeline-config.yaml:7:", 'step "extract"', *fragments)
    assert asked(fake_llm) == 0


def test_missing_schema_file_is_a_config_error(cli, tmp_path: Path):
    write(tmp_path / "notes.txt", "x")
    write(tmp_path / "pipeline-config.yaml", INVALID_FILE)

    result = cli("validate")

    assert_clean_error(result, 2, "pipeline-config.yaml:7:", "file not found", "items.json")


@pytest.mark.parametrize(
    ("step", "message"),
    [
        ({"output": "text"}, "a schema needs output: json"),
        ({"schema_file": "items.json"}, "set at most one of schema and schema_file"),
    ],
)
def test_contradicting_schema_keys_are_config_errors(
    cli, fake_llm: FakeLLMServer, tmp_path: Path, step: dict[str, Any], message: str
):
    write(tmp_path / "items.json", json.dumps(SCHEMA))
    write_config(tmp_path, step=step)

    result = cli("run", "notes.txt")

    assert_clean_error(result, 2, "pipeline-config.yaml:", 'step 1 ("extract")', message)
    assert asked(fake_llm) == 0


def test_output_text_with_a_schema_file_is_a_config_error(cli, tmp_path: Path):
    write(tmp_path / "items.json", json.dumps(SCHEMA))
    write_config(tmp_path, step={"output": "text", "schema_file": "items.json"}, schema=None)

    assert_clean_error(cli("validate"), 2, 'step 1 ("extract")', "a schema needs output: json")


def test_a_typo_of_schema_suggests_the_key(cli, tmp_path: Path):
    write_config(tmp_path, step={"shema": {"type": "object"}}, schema=None)

    assert_clean_error(cli("validate"), 2, 'unknown key "shema"; did you mean "schema"?')


@pytest.mark.parametrize("output_key", [None, "json"])
def test_a_schema_means_json_output(
    cli, fake_llm: FakeLLMServer, tmp_path: Path, output_key: str | None
):
    write_config(tmp_path, step={"output": output_key})
    fake_llm.script(Reply(text="```json\n" + json.dumps(GOOD, indent=2) + "\n```"))

    result = cli("run", "notes.txt", "--run-id", "r")

    assert result.exit_code == 0, result.output
    assert asked(fake_llm) == 1
    assert output(tmp_path, "r") == GOOD  # parsed, not the reply's text


# --------------------------------------------------------------------------------------------
# Repairs and the response cache, cassettes and re-runs
# --------------------------------------------------------------------------------------------


def test_successful_repair_chain_replays_from_the_cache(
    cli, fake_llm: FakeLLMServer, tmp_path: Path
):
    write_config(tmp_path)
    fake_llm.script(reply(BAD), reply(GOOD))
    assert cli("run", "notes.txt", "--run-id", "r").exit_code == 0
    assert asked(fake_llm) == 2

    again = cli("resume", "r", "--from-step", "1")

    assert again.exit_code == 0, again.output
    assert asked(fake_llm) == 2  # both turns of the chain came from the cache
    assert output(tmp_path, "r") == GOOD
    records = calls(tmp_path, "r")
    assert [record["cache_hit"] for record in records] == [False, False, True, True]
    assert records[3]["followups"] == records[1]["followups"]
    assert state(tmp_path, "r")["steps"][0]["metrics"]["repairs"] == 1
    assert state(tmp_path, "r")["usage"]["cache_hits"] == 2


def test_failed_repair_chain_leaves_no_cache_entry(cli, fake_llm: FakeLLMServer, tmp_path: Path):
    write_config(tmp_path)
    fake_llm.script(reply(BAD), reply(BAD), reply(BAD))
    assert cli("run", "notes.txt", "--run-id", "r").exit_code == 1
    assert asked(fake_llm) == 3
    assert cached_entries(tmp_path) == 0

    fake_llm.script(reply(GOOD))
    resumed = cli("resume", "r")

    assert resumed.exit_code == 0, resumed.output
    assert asked(fake_llm) == 4  # asked afresh, not answered with the cached bad reply
    assert model_requests(fake_llm)[3].messages == model_requests(fake_llm)[0].messages
    assert output(tmp_path, "r") == GOOD
    assert cached_entries(tmp_path) == 1


def test_chain_failing_with_a_provider_error_leaves_no_cache_entry(
    cli, fake_llm: FakeLLMServer, tmp_path: Path
):
    write_config(tmp_path)
    fake_llm.script(reply(BAD), ErrorReply(400, "invalid_request_error", "prompt is too long"))
    failed = cli("run", "notes.txt", "--run-id", "r")
    assert_clean_error(failed, 1, "Anthropic API 400: prompt is too long")
    assert asked(fake_llm) == 2

    fake_llm.script(reply(GOOD))
    resumed = cli("resume", "r")

    assert resumed.exit_code == 0, resumed.output
    # A failed chain is dropped, so the retry asks the first question afresh instead of
    # replaying the rejected first reply from the cache.
    assert model_requests(fake_llm)[2].messages == model_requests(fake_llm)[0].messages
    assert cached_entries(tmp_path) == 1


def test_changing_the_schema_changes_the_cache_key(cli, fake_llm: FakeLLMServer, tmp_path: Path):
    write_config(tmp_path)
    fake_llm.responder = lambda request: reply(GOOD)
    assert cli("run", "notes.txt", "--run-id", "a").exit_code == 0
    assert cli("run", "notes.txt", "--run-id", "b").exit_code == 0
    assert asked(fake_llm) == 1

    looser = json.loads(json.dumps(SCHEMA))
    looser["properties"]["items"]["items"]["properties"]["priority"]["maximum"] = 5
    write_config(tmp_path, schema=looser)
    assert cli("run", "notes.txt", "--run-id", "c").exit_code == 0

    assert asked(fake_llm) == 2
    hashes = [calls(tmp_path, run)[0]["request_hash"] for run in ("a", "b", "c")]
    assert hashes[0] == hashes[1] != hashes[2]
    assert calls(tmp_path, "b")[0]["cache_hit"] is True


def test_changing_the_schema_re_runs_the_step_on_resume(
    cli, fake_llm: FakeLLMServer, tmp_path: Path
):
    write_config(tmp_path)
    fake_llm.responder = lambda request: reply(GOOD)
    assert cli("run", "notes.txt", "--run-id", "r").exit_code == 0

    write_config(tmp_path, schema={**SCHEMA, "description": "v2"})
    plan = cli("resume", "r", "--dry-run", "--json")

    assert plan.exit_code == 0, plan.output
    decision = json.loads(plan.stdout)["plan"][0]
    assert (decision["action"], decision["reason"]) == ("run", "its config changed: schema")


def test_repair_chain_is_recorded_and_replayed_offline(
    cli, fake_llm: FakeLLMServer, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
):
    write_config(tmp_path)
    fake_llm.script(reply(BAD), reply(GOOD))
    recorded = cli("run", "notes.txt", "--run-id", "live", "--record", "chain.jsonl")
    assert recorded.exit_code == 0, recorded.output
    lines = [json.loads(line) for line in (tmp_path / "chain.jsonl").read_text().splitlines()]
    assert [line["completion"]["text"] for line in lines] == [json.dumps(BAD), json.dumps(GOOD)]

    fake_llm.stop()
    monkeypatch.delenv("ANTHROPIC_API_KEY")
    replayed = cli("run", "notes.txt", "--run-id", "offline", "--replay", "chain.jsonl")

    assert replayed.exit_code == 0, replayed.output
    assert asked(fake_llm) == 2
    assert output(tmp_path, "offline") == GOOD
    assert state(tmp_path, "offline")["usage"]["replayed"] == 2


def test_repair_chain_replays_from_a_step_cassette(
    cli, fake_llm: FakeLLMServer, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
):
    write_config(tmp_path)
    fake_llm.script(reply(BAD), reply(GOOD))
    assert cli("run", "notes.txt", "--record", "chain.jsonl").exit_code == 0

    write_config(tmp_path, llm={"provider": "replay", "cassette": "chain.jsonl"})
    fake_llm.stop()
    monkeypatch.delenv("ANTHROPIC_API_KEY")
    replayed = cli("run", "notes.txt", "--run-id", "offline")

    assert replayed.exit_code == 0, replayed.output
    assert asked(fake_llm) == 2
    assert output(tmp_path, "offline") == GOOD
    assert [r["replayed"] for r in calls(tmp_path, "offline")] == [True, True]
    assert state(tmp_path, "offline")["steps"][0]["metrics"]["repairs"] == 1


# --------------------------------------------------------------------------------------------
# Unit tests of steps/structured.py
# --------------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    "text",
    [
        json.dumps(GOOD),
        "```json\n" + json.dumps(GOOD) + "\n```",
        "```\n" + json.dumps(GOOD, indent=2) + "\n```\n",
    ],
)
def test_structured_value_accepts_json_with_or_without_a_fence(text: str):
    assert structured_value(text, SCHEMA) == GOOD


def test_structured_value_names_the_path_of_the_problem():
    with pytest.raises(ReplyProblem) as caught:
        structured_value(json.dumps(BAD), SCHEMA)

    assert caught.value.path == BAD_PATH
    assert caught.value.message.startswith(f"the reply does not match the schema at {BAD_PATH}")


def test_structured_value_problem_at_the_root():
    with pytest.raises(ReplyProblem) as caught:
        structured_value("[]", SCHEMA)

    assert caught.value.path == "/"
    assert "at /: [] is not of type 'object'" in caught.value.message


@pytest.mark.parametrize("text", ["Here you go: {}", "```json\n{}\n``` hope that helps", ""])
def test_structured_value_refuses_text_around_the_json(text: str):
    with pytest.raises(ReplyProblem, match="the reply is not JSON"):
        structured_value(text, None)


def test_repair_text_quotes_a_small_schema_only():
    problem = ReplyProblem("the reply is not JSON (x)")

    small = repair_request_text(problem, SCHEMA)
    large_schema = {"type": "object", "description": "x" * MAX_SCHEMA_IN_REPAIR}
    large = repair_request_text(problem, large_schema)

    assert small.startswith("Your reply could not be used: the reply is not JSON (x).\n")
    assert json.loads(small.split("JSON Schema:\n", 1)[1]) == SCHEMA
    assert "JSON Schema" not in large
    assert re.search(r"Reply again with only the corrected JSON", large)
