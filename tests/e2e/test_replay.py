"""--record and --replay: record real completions once, then run offline with no key."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from tests.e2e.pipelines import REPLY, calls, clear_calls, write_backlog_pipeline
from tests.e2e.test_errors import assert_clean_error
from tests.fakes import FakeLLMServer, Reply
from tests.helpers import SENTINEL_KEY


def test_record_then_replay_offline(
    cli, fake_llm: FakeLLMServer, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
):
    write_backlog_pipeline(tmp_path)
    fake_llm.script(Reply(text=REPLY))
    recorded = cli("run", "notes.txt", "--run-id", "live", "--record", "cassette.jsonl")
    assert recorded.exit_code == 0, recorded.output
    cassette = (tmp_path / "cassette.jsonl").read_text()
    assert SENTINEL_KEY not in cassette
    assert json.loads(cassette.splitlines()[0])["completion"]["text"] == REPLY

    monkeypatch.delenv("ANTHROPIC_API_KEY")
    monkeypatch.setenv("ANTHROPIC_BASE_URL", "http://127.0.0.1:9")  # nothing listens here
    clear_calls(tmp_path)
    replayed = cli("run", "notes.txt", "--run-id", "offline", "--replay", "cassette.jsonl")

    assert replayed.exit_code == 0, replayed.output
    assert fake_llm.count() == 1
    assert calls(tmp_path) == ["count", "flaky", "report"]
    run = tmp_path / ".pipeline"
    assert (run / "offline/steps/01-extract.json").read_text() == (
        run / "live/steps/01-extract.json"
    ).read_text()
    usage = json.loads((run / "offline/state.json").read_text())["usage"]
    assert (usage["requests"], usage["replayed"], usage["cost_usd"]) == (0, 1, 0)


def test_request_missing_from_the_cassette_names_the_step_and_hash(
    cli, fake_llm: FakeLLMServer, tmp_path: Path
):
    write_backlog_pipeline(tmp_path)
    (tmp_path / "cassette.jsonl").write_text("")

    result = cli("run", "notes.txt", "--replay", "cassette.jsonl")

    assert_clean_error(result, 1, 'step "extract": no recorded reply', "request sha256:")
    assert fake_llm.count() == 0


def test_missing_or_malformed_cassette(cli, fake_llm: FakeLLMServer, tmp_path: Path):
    write_backlog_pipeline(tmp_path)

    assert_clean_error(cli("run", "notes.txt", "--replay", "nope.jsonl"), 2, "cassette not found")
    (tmp_path / "bad.jsonl").write_text('{"request_hash": "x"}\n')
    assert_clean_error(cli("run", "notes.txt", "--replay", "bad.jsonl"), 1, "bad.jsonl:1")


def record_a_cassette(cli, fake_llm: FakeLLMServer, tmp_path: Path, monkeypatch) -> None:
    """A cassette of the backlog pipeline's one LLM reply; afterwards there is no key."""
    write_backlog_pipeline(tmp_path)
    fake_llm.script(Reply(text=REPLY))
    assert cli("run", "notes.txt", "--run-id", "live", "--record", "cassette.jsonl").exit_code == 0
    monkeypatch.delenv("ANTHROPIC_API_KEY")
    monkeypatch.setenv("ANTHROPIC_BASE_URL", "http://127.0.0.1:9")  # nothing listens here


def test_replay_and_concurrency_stick_to_the_run_so_the_printed_resume_works(
    cli, fake_llm: FakeLLMServer, tmp_path: Path, monkeypatch
):
    record_a_cassette(cli, fake_llm, tmp_path, monkeypatch)
    paused = cli(
        "run", "notes.txt", "--run-id", "demo", "--replay", "cassette.jsonl", "--pause",
        "--concurrency", "3",
    )  # fmt: skip
    assert paused.exit_code == 3, paused.output
    assert "pipeline resume demo" in paused.stdout

    resumed = cli("resume", "demo")  # no key, no --replay: the run's cassette answers

    assert resumed.exit_code == 0, resumed.output
    state = json.loads((tmp_path / ".pipeline/demo/state.json").read_text())
    assert state["replay"] == str((tmp_path / "cassette.jsonl").resolve())
    assert state["concurrency"] == 3
    assert fake_llm.count() == 1  # only the recording went to the server


def test_no_replay_resumes_against_the_providers(
    cli, fake_llm: FakeLLMServer, tmp_path: Path, monkeypatch
):
    record_a_cassette(cli, fake_llm, tmp_path, monkeypatch)
    assert cli("run", "notes.txt", "--run-id", "demo", "--replay", "cassette.jsonl").exit_code == 0

    live = cli("resume", "demo", "--from-step", "extract", "--no-replay")

    assert_clean_error(live, 2, "ANTHROPIC_API_KEY")  # it would call Anthropic: a key is needed
    both = cli("resume", "demo", "--replay", "cassette.jsonl", "--no-replay")
    assert_clean_error(both, 2, "--replay and --no-replay")
