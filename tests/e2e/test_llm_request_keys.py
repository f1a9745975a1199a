"""Per-step request keys: stop, extra, temperature, max_tokens, timeout, stream, prompt_version
and cassette with provider: replay -- on the wire, in the cache key and in the fingerprint.

The fake server records every request body, so each test asserts what a real API would have
received; cache hits and replays are counted as requests that never arrived.
"""

from __future__ import annotations

import datetime
import json
import re
from pathlib import Path
from typing import Any

import pytest
import yaml

from stepline.hashing import hash_value
from tests.e2e.test_errors import assert_clean_error
from tests.fakes import (
    ANTHROPIC_MESSAGES_PATH,
    OPENAI_CHAT_PATH,
    ErrorReply,
    FakeLLMServer,
    RecordedRequest,
    Reply,
)
from tests.helpers import SENTINEL_KEY, write

RETRY = {"attempts": 3, "initial_delay": "1ms", "max_delay": "5ms"}
MODEL = "claude-haiku-4-5"


def model_requests(fake_llm: FakeLLMServer) -> list[RecordedRequest]:
    """Requests for a completion (a dry run's free count_tokens requests are left out)."""
    return [r for r in fake_llm.requests if r.path in (ANTHROPIC_MESSAGES_PATH, OPENAI_CHAT_PATH)]


def asked(fake_llm: FakeLLMServer) -> int:
    return len(model_requests(fake_llm))


def write_config(
    folder: Path,
    *steps: dict[str, Any],
    llm: dict[str, Any] | None = None,
    name: str = "pipeline-config.yaml",
) -> Path:
    """A pipeline of the given steps (default: one LLM step ``ask``)."""
    if not steps:
        steps = ({"id": "ask", "kind": "llm", "prompt": "Summarise: {{ input.text }}"},)
    config = {
        "name": "keys",
        "llm": {"model": MODEL, "retry": RETRY, **(llm or {})},
        "steps": list(steps),
    }
    write(folder / "notes.txt", "the notes")
    path = folder / name
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(yaml.safe_dump(config, sort_keys=False), encoding="utf-8")
    return path


def llm_step(step_id: str, prompt: str, **keys: Any) -> dict[str, Any]:
    return {"id": step_id, "kind": "llm", "prompt": prompt, **keys}


def run_dir(tmp_path: Path, run_id: str) -> Path:
    return tmp_path / ".pipeline" / run_id


def state(tmp_path: Path, run_id: str) -> dict[str, Any]:
    return json.loads((run_dir(tmp_path, run_id) / "state.json").read_text())


def output(tmp_path: Path, run_id: str, file: str = "01-ask.json") -> Any:
    return json.loads((run_dir(tmp_path, run_id) / "steps" / file).read_text())


def calls(tmp_path: Path, run_id: str) -> list[dict[str, Any]]:
    lines = (run_dir(tmp_path, run_id) / "llm-calls.jsonl").read_text().splitlines()
    return [json.loads(line) for line in lines]


def plan(cli, run_id: str) -> dict[str, tuple[str, str]]:
    result = cli("resume", run_id, "--dry-run", "--json")
    assert result.exit_code == 0, result.output
    return {d["step"]: (d["action"], d["reason"]) for d in json.loads(result.stdout)["plan"]}


def numbered_replies(fake_llm: FakeLLMServer) -> None:
    fake_llm.responder = lambda request: Reply(text=f"reply {asked(fake_llm)}")


# --------------------------------------------------------------------------------------------
# On the wire
# --------------------------------------------------------------------------------------------

KEYS = {
    "model": "claude-haiku-5-5",
    "max_tokens": 300,
    "effort": "low",
    "stop": ["END", "###"],
    "extra": {"metadata": {"user_id": "team-a"}},
    "prompt_version": "v3",
}
"""Keys every provider takes: Anthropic's current API refuses sampling parameters."""
SAMPLING = {"temperature": 0.25, "extra": {"top_k": 7, "metadata": {"user_id": "team-a"}}}


def test_anthropic_request_carries_stop_extra_and_effort(
    cli, fake_llm: FakeLLMServer, tmp_path: Path
):
    write_config(tmp_path, llm=KEYS)

    result = cli("run", "notes.txt", "--run-id", "r")

    assert result.exit_code == 0, result.output
    body = model_requests(fake_llm)[0].body
    assert model_requests(fake_llm)[0].path == "/v1/messages"
    assert body["max_tokens"] == 300
    assert body["output_config"] == {"effort": "low"}
    assert body["stop_sequences"] == ["END", "###"]
    assert body["metadata"] == {"user_id": "team-a"}
    # Config names that are not API fields never reach the API.
    for key in ("stop", "extra", "prompt_version", "timeout", "schema", "extra_body", "effort"):
        assert key not in body
    assert "stream" not in body or body["stream"] is False


def test_openai_request_carries_stop_extra_and_sampling(
    cli, fake_llm: FakeLLMServer, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
):
    monkeypatch.delenv("ANTHROPIC_API_KEY")
    openai = {**KEYS, **SAMPLING, "provider": "openai", "base_url": fake_llm.openai_base_url}
    write_config(tmp_path, llm=openai)

    result = cli("run", "notes.txt", "--run-id", "r")

    assert result.exit_code == 0, result.output
    request = model_requests(fake_llm)[0]
    assert request.path == "/v1/chat/completions"
    body = request.body
    assert (body["max_tokens"], body["temperature"]) == (300, 0.25)
    assert body["reasoning_effort"] == "low"
    assert body["stop"] == ["END", "###"]
    assert body["top_k"] == 7 and body["metadata"] == {"user_id": "team-a"}
    for key in ("stop_sequences", "extra", "prompt_version", "extra_body"):
        assert key not in body


def test_step_keys_override_llm_defaults_and_extra_merges(
    cli, fake_llm: FakeLLMServer, tmp_path: Path
):
    write_config(
        tmp_path,
        llm_step(
            "own",
            "first",
            stop=["B"],
            effort="high",
            max_tokens=64,
            extra={"service_tier": "standard_only", "container": "c1"},
        ),
        llm_step("inherits", "second"),
        llm={
            "model": "claude-haiku-5-5",
            "stop": ["A"],
            "effort": "low",
            "max_tokens": 128,
            "extra": {"service_tier": "auto", "metadata": {"user_id": "u"}},
        },
    )

    result = cli("run", "notes.txt")

    assert result.exit_code == 0, result.output
    bodies = {request.prompt: request.body for request in model_requests(fake_llm)}
    own, inherits = bodies["first"], bodies["second"]  # the two steps run at once
    assert own["stop_sequences"] == ["B"]  # a list is replaced, not merged
    assert (own["output_config"], own["max_tokens"]) == ({"effort": "high"}, 64)
    assert (own["service_tier"], own["container"]) == ("standard_only", "c1")
    assert own["metadata"] == {"user_id": "u"}
    assert inherits["stop_sequences"] == ["A"]
    assert (inherits["output_config"], inherits["max_tokens"]) == ({"effort": "low"}, 128)
    assert (inherits["service_tier"], inherits["metadata"]) == ("auto", {"user_id": "u"})
    assert "container" not in inherits


@pytest.mark.parametrize(
    ("where", "provider"), [("llm", "anthropic"), ("step", "anthropic"), ("llm", "openai")]
)
def test_timeout_bounds_each_request_and_is_retried(
    cli, fake_llm: FakeLLMServer, tmp_path: Path, where: str, provider: str
):
    llm: dict[str, Any] = {"provider": provider}
    if provider == "openai":
        llm["base_url"] = fake_llm.openai_base_url
    if where == "llm":
        write_config(tmp_path, llm={**llm, "timeout": "500ms"})
    else:
        write_config(tmp_path, llm_step("ask", "Summarise", timeout="500ms"), llm=llm)
    # The first request times out, so the step as a whole takes longer than 500ms: the limit
    # applies to each request (which is retried), not to the whole step.
    fake_llm.script(Reply(text="too late", delay=2.0), Reply(text="on time"))

    result = cli("run", "notes.txt", "--run-id", "r")

    assert result.exit_code == 0, result.output
    assert asked(fake_llm) == 2
    assert output(tmp_path, "r") == "on time"
    first, second = calls(tmp_path, "r")
    assert first["outcome"] == "error" and "timed out" in first["error"]
    assert second["outcome"] == "ok"


def test_timeout_on_every_attempt_fails_the_step(cli, fake_llm: FakeLLMServer, tmp_path: Path):
    write_config(tmp_path, llm={"timeout": "100ms", "retry": {**RETRY, "attempts": 2}})
    fake_llm.responder = lambda request: Reply(text="late", delay=2.0)

    result = cli("run", "notes.txt")

    assert_clean_error(result, 1, 'step "ask"', "timed out")
    assert asked(fake_llm) == 2


@pytest.mark.parametrize("provider", ["anthropic", "openai"])
def test_stream_key_streams_the_reply(cli, fake_llm: FakeLLMServer, tmp_path: Path, provider: str):
    llm: dict[str, Any] = {"provider": provider, "stream": True}
    if provider == "openai":
        llm["base_url"] = fake_llm.openai_base_url
    write_config(tmp_path, llm=llm)
    fake_llm.script(Reply(text="a streamed reply", input_tokens=21, output_tokens=4))

    result = cli("run", "notes.txt", "--run-id", "r")

    assert result.exit_code == 0, result.output
    request = model_requests(fake_llm)[0]
    assert request.stream is True
    if provider == "openai":
        assert request.body["stream_options"] == {"include_usage": True}
    assert output(tmp_path, "r") == "a streamed reply"
    metrics = state(tmp_path, "r")["steps"][0]["metrics"]
    assert (metrics["input_tokens"], metrics["output_tokens"]) == (21, 4)


def test_no_stream_key_sends_an_unstreamed_request(cli, fake_llm: FakeLLMServer, tmp_path: Path):
    write_config(tmp_path)

    assert cli("run", "notes.txt").exit_code == 0
    assert model_requests(fake_llm)[0].stream is False


# --------------------------------------------------------------------------------------------
# The cache key (request hash) and the step fingerprint
# --------------------------------------------------------------------------------------------


def test_request_hash_of_a_step_without_new_keys_is_unchanged(
    cli, fake_llm: FakeLLMServer, tmp_path: Path
):
    """Caches and cassettes made before these keys existed keep answering."""
    write_config(tmp_path)

    assert cli("run", "notes.txt", "--run-id", "r").exit_code == 0

    legacy = hash_value(
        {
            "provider": "anthropic",
            "base_url": None,
            "model": MODEL,
            "system": None,
            "prompt": "Summarise: the notes",
            "max_tokens": 1024,
            "temperature": None,
        }
    )
    assert calls(tmp_path, "r")[0]["request_hash"] == legacy


@pytest.mark.parametrize(
    ("key", "first", "second"),
    [
        ("prompt_version", "2026-11-01", "2026-11-23"),
        ("stop", ["END"], ["STOP"]),
        ("extra", {"metadata": {"user_id": "a"}}, {"metadata": {"user_id": "b"}}),
    ],
)
def test_request_keys_are_part_of_the_cache_key(
    cli, fake_llm: FakeLLMServer, tmp_path: Path, key: str, first: Any, second: Any
):
    numbered_replies(fake_llm)
    write_config(tmp_path, llm_step("ask", "Summarise", **{key: first}))
    assert cli("run", "notes.txt", "--run-id", "a").exit_code == 0
    assert cli("run", "notes.txt", "--run-id", "b").exit_code == 0
    assert asked(fake_llm) == 1  # same value: a cache hit
    assert output(tmp_path, "b") == "reply 1"

    write_config(tmp_path, llm_step("ask", "Summarise", **{key: second}))
    assert cli("run", "notes.txt", "--run-id", "c").exit_code == 0

    assert asked(fake_llm) == 2  # new value: a new request
    assert output(tmp_path, "c") == "reply 2"
    hashes = [calls(tmp_path, run)[0]["request_hash"] for run in "abc"]
    assert hashes[0] == hashes[1] != hashes[2]


@pytest.mark.parametrize(
    ("key", "value"),
    [("prompt_version", "v2"), ("stop", ["END"]), ("extra", {"service_tier": "auto"})],
)
def test_request_keys_that_shape_the_reply_re_run_the_step(
    cli, fake_llm: FakeLLMServer, tmp_path: Path, key: str, value: Any
):
    numbered_replies(fake_llm)
    write_config(tmp_path, llm_step("ask", "Summarise"))
    assert cli("run", "notes.txt", "--run-id", "r").exit_code == 0

    write_config(tmp_path, llm_step("ask", "Summarise", **{key: value}))
    assert plan(cli, "r") == {"ask": ("run", f"its config changed: {key}")}
    resumed = cli("resume", "r")

    assert resumed.exit_code == 0, resumed.output
    assert asked(fake_llm) == 2
    assert output(tmp_path, "r") == "reply 2"


def test_delivery_keys_do_not_re_run_the_step(cli, fake_llm: FakeLLMServer, tmp_path: Path):
    write_config(tmp_path, llm_step("ask", "Summarise"))
    assert cli("run", "notes.txt", "--run-id", "r").exit_code == 0

    write_config(
        tmp_path,
        llm_step("ask", "Summarise", stream=True, timeout="5m", repair_attempts=4),
        llm={"timeout": "1m", "stream": False},
    )

    assert plan(cli, "r") == {"ask": ("reuse", "completed, unchanged")}
    assert cli("resume", "r").exit_code == 0
    assert asked(fake_llm) == 1


def test_prompt_version_on_one_step_re_runs_only_that_step(
    cli, fake_llm: FakeLLMServer, tmp_path: Path
):
    numbered_replies(fake_llm)
    shell = {"id": "show", "kind": "shell", "command": ["echo", "{{ steps.first }}"]}
    write_config(tmp_path, llm_step("first", "one"), llm_step("second", "two"), shell)
    assert cli("run", "notes.txt", "--run-id", "r").exit_code == 0
    before = {step["id"]: step["spec_hash"] for step in state(tmp_path, "r")["steps"]}

    write_config(
        tmp_path, llm_step("first", "one"), llm_step("second", "two", prompt_version="v2"), shell
    )

    assert plan(cli, "r") == {
        "first": ("reuse", "completed, unchanged"),
        "second": ("run", "its config changed: prompt_version"),
        "show": ("reuse", "completed, unchanged"),
    }
    resumed = cli("resume", "r")
    assert resumed.exit_code == 0, resumed.output
    prompts = [request.prompt for request in model_requests(fake_llm)]
    assert (sorted(prompts[:2]), prompts[2:]) == (["one", "two"], ["two"])
    after = {step["id"]: step["spec_hash"] for step in state(tmp_path, "r")["steps"]}
    assert after["first"] == before["first"] and after["show"] == before["show"]
    assert after["second"] != before["second"]


def test_prompt_version_in_llm_defaults_re_runs_llm_steps_only(
    cli, fake_llm: FakeLLMServer, tmp_path: Path
):
    shell = {"id": "shell", "kind": "shell", "command": ["echo", "{{ input.text }}"]}
    write_config(tmp_path, llm_step("first", "one"), shell)
    assert cli("run", "notes.txt", "--run-id", "r").exit_code == 0

    write_config(tmp_path, llm_step("first", "one"), shell, llm={"prompt_version": "v2"})

    assert plan(cli, "r") == {
        "first": ("run", "its config changed: prompt_version"),
        "shell": ("reuse", "completed, unchanged"),
    }


def test_spec_hash_of_a_step_without_new_keys_is_unchanged(
    cli, fake_llm: FakeLLMServer, tmp_path: Path
):
    write_config(tmp_path)

    assert cli("run", "notes.txt", "--run-id", "r").exit_code == 0

    # The spec hash of this step as stepline computed it before the new keys existed.
    legacy = hash_value(
        {
            "id": "ask",
            "kind": "llm",
            "system": None,
            "prompt": "Summarise: {{ input.text }}",
            "output": "text",
            "llm": {
                "provider": "anthropic",
                "model": MODEL,
                "max_tokens": 1024,
                "temperature": None,
                "base_url": None,
            },
            "vars": {},
        }
    )
    assert state(tmp_path, "r")["steps"][0]["spec_hash"] == legacy


@pytest.mark.parametrize(
    ("llm", "message"),
    [
        ({"stop": [f"s{n}" for n in range(17)]}, "llm.stop"),
        ({"extra": ["top_k"]}, "llm.extra"),
        ({"timeout": "soon"}, "expected a duration"),
        ({"stream": "sometimes"}, "llm.stream"),
        ({"provider": "replai"}, "llm.provider"),
        ({"repair_attempts": -1}, "llm.repair_attempts"),
    ],
)
def test_bad_request_keys_are_config_errors(
    cli, fake_llm: FakeLLMServer, tmp_path: Path, llm: dict[str, Any], message: str
):
    write_config(tmp_path, llm=llm)

    assert_clean_error(cli("run", "notes.txt"), 2, "pipeline-config.yaml:", message)
    assert asked(fake_llm) == 0


def test_extra_with_a_yaml_date_is_a_config_error(cli, fake_llm: FakeLLMServer, tmp_path: Path):
    config = write_config(
        tmp_path, llm={"extra": {"metadata": {"since": datetime.date(2026, 1, 1)}}}
    )
    assert "since: 2026-01-01" in config.read_text()

    result = cli("run", "notes.txt")

    assert_clean_error(result, 2, "extra")
    assert "internal error" not in result.output
    assert asked(fake_llm) == 0


# --------------------------------------------------------------------------------------------
# provider: replay with cassette:
# --------------------------------------------------------------------------------------------


def record_two_steps(cli, fake_llm: FakeLLMServer, tmp_path: Path, **llm: Any) -> Path:
    """Run a two-step pipeline in conf/ against the fake, recording conf/recorded.jsonl."""
    numbered_replies(fake_llm)
    # "second" waits for "first", so the fake numbers their replies in this order
    first, second = llm_step("first", "one {{ input.text }}"), llm_step("second", "two")
    steps = (first, {**second, "needs": ["first"]})
    config = write_config(tmp_path, *steps, llm=llm, name="conf/pipeline.yaml")
    recorded = cli(
        "run", "notes.txt", "-c", str(config), "--run-id", "live", "--record", "conf/recorded.jsonl"
    )
    assert recorded.exit_code == 0, recorded.output
    assert asked(fake_llm) == 2
    return config


def switch_to_replay(config: Path, **llm: Any) -> None:
    data = yaml.safe_load(config.read_text())
    data["llm"] = {**data["llm"], **llm}
    config.write_text(yaml.safe_dump(data, sort_keys=False))


def test_provider_replay_answers_offline_from_a_recorded_cassette(
    cli, fake_llm: FakeLLMServer, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
):
    config = record_two_steps(cli, fake_llm, tmp_path)
    switch_to_replay(config, provider="replay", cassette="recorded.jsonl")  # config-relative
    fake_llm.stop()
    monkeypatch.delenv("ANTHROPIC_API_KEY")
    monkeypatch.setenv("ANTHROPIC_BASE_URL", "http://127.0.0.1:9")  # nothing listens here

    replayed = cli("run", "notes.txt", "-c", str(config), "--run-id", "offline")

    assert replayed.exit_code == 0, replayed.output
    assert asked(fake_llm) == 2
    for file in ("01-first.json", "02-second.json"):
        assert output(tmp_path, "offline", file) == output(tmp_path, "live", file)
    assert output(tmp_path, "offline", "02-second.json") == "reply 2"
    records = calls(tmp_path, "offline")
    assert [(r["replayed"], r["provider"], r["cost_usd"]) for r in records] == [
        (True, "anthropic", 0.0),
        (True, "anthropic", 0.0),
    ]
    usage = state(tmp_path, "offline")["usage"]
    assert (usage["requests"], usage["replayed"]) == (0, 2)


def test_provider_replay_answers_as_the_openai_endpoint_that_recorded(
    cli, fake_llm: FakeLLMServer, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
):
    monkeypatch.delenv("ANTHROPIC_API_KEY")
    config = record_two_steps(
        cli, fake_llm, tmp_path, provider="openai", base_url=fake_llm.openai_base_url
    )
    switch_to_replay(config, provider="replay", cassette="recorded.jsonl")
    fake_llm.stop()

    replayed = cli("run", "notes.txt", "-c", str(config), "--run-id", "offline")

    assert replayed.exit_code == 0, replayed.output
    assert asked(fake_llm) == 2
    assert output(tmp_path, "offline", "01-first.json") == "reply 1"
    assert {r["provider"] for r in calls(tmp_path, "offline")} == {"openai"}


def test_provider_replay_on_one_step_only(
    cli, fake_llm: FakeLLMServer, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
):
    config = record_two_steps(cli, fake_llm, tmp_path)
    data = yaml.safe_load(config.read_text())
    data["steps"][0].update(provider="replay", cassette="recorded.jsonl")
    data["steps"][1]["prompt"] = "two, asked live"
    config.write_text(yaml.safe_dump(data, sort_keys=False))

    result = cli("run", "notes.txt", "-c", str(config), "--run-id", "mixed")

    assert result.exit_code == 0, result.output
    assert [request.prompt for request in model_requests(fake_llm)[2:]] == ["two, asked live"]
    assert output(tmp_path, "mixed", "01-first.json") == "reply 1"
    assert output(tmp_path, "mixed", "02-second.json") == "reply 3"


@pytest.mark.parametrize("command", ["run", "validate"])
def test_provider_replay_without_a_cassette_is_a_config_error(
    cli, fake_llm: FakeLLMServer, tmp_path: Path, command: str
):
    write_config(tmp_path, llm={"provider": "replay"})

    result = cli(command, *(["notes.txt"] if command == "run" else []))

    assert_clean_error(result, 2, 'step "ask": provider replay needs a cassette', "--record")
    assert asked(fake_llm) == 0
    assert not (tmp_path / ".pipeline").exists()


def test_replay_miss_names_the_step_and_the_request_hash(
    cli, fake_llm: FakeLLMServer, tmp_path: Path
):
    config = record_two_steps(cli, fake_llm, tmp_path)
    data = yaml.safe_load(config.read_text())
    data["steps"][1]["prompt"] = "two, reworded"
    config.write_text(yaml.safe_dump(data, sort_keys=False))
    switch_to_replay(config, provider="replay", cassette="recorded.jsonl")

    result = cli("run", "notes.txt", "-c", str(config), "--run-id", "miss")

    assert_clean_error(result, 1, 'step "second"', "no recorded reply", "--record")
    missing = re.search(r"request (sha256:[0-9a-f]{64})", result.output)
    assert missing is not None, result.output
    assert asked(fake_llm) == 2
    assert state(tmp_path, "miss")["steps"][0]["status"] == "completed"

    # The hash named is the one a live run of the reworded step records.
    switch_to_replay(config, provider="anthropic", cassette=None)
    assert cli("run", "notes.txt", "-c", str(config), "--run-id", "live2").exit_code == 0
    assert calls(tmp_path, "live2")[-1]["request_hash"] == missing.group(1)


def test_missing_step_cassette_stops_the_run_before_it_starts(
    cli, fake_llm: FakeLLMServer, tmp_path: Path
):
    write_config(
        tmp_path,
        llm_step("live", "asked live"),
        llm_step("offline", "answered offline", provider="replay", cassette="absent.jsonl"),
    )

    result = cli("run", "notes.txt", "--run-id", "r")

    assert_clean_error(result, 2, 'step "offline"', "cassette not found", "absent.jsonl")
    assert model_requests(fake_llm) == []
    assert not (tmp_path / ".pipeline" / "r").exists()


def test_replay_as_a_fallback_is_a_config_error(cli, fake_llm: FakeLLMServer, tmp_path: Path):
    write_config(
        tmp_path,
        llm={
            "retry": {**RETRY, "attempts": 2},
            "fallback_models": [{"model": MODEL, "provider": "replay"}],
        },
    )
    fake_llm.responder = lambda request: ErrorReply.overloaded()

    result = cli("run", "notes.txt")

    assert_clean_error(result, 2, 'step "ask"', "provider replay cannot be a fallback")
    assert asked(fake_llm) == 0


# --------------------------------------------------------------------------------------------
# Credentials
# --------------------------------------------------------------------------------------------


def test_api_key_is_never_written_anywhere(cli, fake_llm: FakeLLMServer, tmp_path: Path):
    schema = {"type": "object", "required": ["n"], "properties": {"n": {"type": "integer"}}}
    write_config(
        tmp_path,
        llm_step(
            "ask",
            "Count: {{ input.text }}",
            schema=schema,
            stop=["END"],
            extra={"service_tier": "auto"},
        ),
        llm={"prompt_version": "v1"},
    )
    fake_llm.script(
        ErrorReply.overloaded(),
        Reply(text='{"n": "three"}'),
        Reply(text="not json"),
        Reply(text='{"n": 3}'),
    )

    result = cli("run", "notes.txt", "--run-id", "r", "--record", "cassette.jsonl")

    assert result.exit_code == 0, result.output
    assert asked(fake_llm) == 4
    for request in model_requests(fake_llm):  # the key did travel, in a header
        assert any(SENTINEL_KEY in value for value in request.headers.values())
    assert state(tmp_path, "r")["steps"][0]["metrics"]["repairs"] == 2
    files = [path for path in (tmp_path / ".pipeline").rglob("*") if path.is_file()]
    files.append(tmp_path / "cassette.jsonl")
    assert any(path.name.startswith("cache.sqlite") for path in files)
    assert any(path.name == "llm-calls.jsonl" for path in files)
    for path in files:
        assert SENTINEL_KEY.encode() not in path.read_bytes(), path
