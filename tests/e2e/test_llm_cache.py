"""The response cache: a repeated request is answered from <workdir>/cache.sqlite for free."""

from __future__ import annotations

import json
import time
from pathlib import Path

import pytest

from tests.e2e.test_errors import assert_clean_error
from tests.fakes import FakeLLMServer, Reply
from tests.helpers import write

CONFIG = """
name: cached
llm:
  model: claude-haiku-4-5
  CACHE
steps:
  - id: ask
    kind: llm
    prompt: "Summarise: {{ input.text }}"
"""


@pytest.fixture
def pipeline(tmp_path: Path, fake_llm: FakeLLMServer):
    def make(cache: str = "") -> Path:
        write(tmp_path / "in.txt", "the notes")
        fake_llm.responder = lambda request: Reply(text=f"reply {fake_llm.count()}")
        return write(tmp_path / "pipeline-config.yaml", CONFIG.replace("CACHE", cache))

    return make


def output(tmp_path: Path, run_id: str) -> str:
    return json.loads((tmp_path / ".pipeline" / run_id / "steps" / "01-ask.json").read_text())


def state(tmp_path: Path, run_id: str) -> dict:
    return json.loads((tmp_path / ".pipeline" / run_id / "state.json").read_text())


def test_same_request_in_a_new_run_is_a_free_cache_hit(
    cli, fake_llm: FakeLLMServer, pipeline, tmp_path: Path
):
    pipeline()
    assert cli("run", "in.txt", "--run-id", "a").exit_code == 0
    assert cli("run", "in.txt", "--run-id", "b").exit_code == 0

    assert fake_llm.count() == 1
    assert output(tmp_path, "b") == output(tmp_path, "a") == "reply 1"
    usage = state(tmp_path, "b")["usage"]
    assert (usage["requests"], usage["cache_hits"], usage["cost_usd"]) == (0, 1, 0)
    record = json.loads((tmp_path / ".pipeline/b/llm-calls.jsonl").read_text())
    assert record["cache_hit"] is True and record["cost_usd"] == 0
    assert (
        record["request_hash"]
        == json.loads((tmp_path / ".pipeline/a/llm-calls.jsonl").read_text())["request_hash"]
    )


def test_expired_entry_calls_again(cli, fake_llm: FakeLLMServer, pipeline, tmp_path: Path):
    pipeline("cache: {ttl: 50ms}")
    assert cli("run", "in.txt", "--run-id", "a").exit_code == 0
    time.sleep(0.1)

    assert cli("run", "in.txt", "--run-id", "b").exit_code == 0

    assert fake_llm.count() == 2
    assert output(tmp_path, "b") == "reply 2"


def test_no_cache_asks_again_and_refreshes_the_entry(
    cli, fake_llm: FakeLLMServer, pipeline, tmp_path: Path
):
    pipeline()
    assert cli("run", "in.txt", "--run-id", "a").exit_code == 0
    assert cli("run", "in.txt", "--run-id", "b", "--no-cache").exit_code == 0
    assert cli("run", "in.txt", "--run-id", "c").exit_code == 0

    assert fake_llm.count() == 2
    assert [output(tmp_path, run) for run in "abc"] == ["reply 1", "reply 2", "reply 2"]


def test_cache_can_be_turned_off(cli, fake_llm: FakeLLMServer, pipeline, tmp_path: Path):
    pipeline("cache: {enabled: false}")
    assert cli("run", "in.txt", "--run-id", "a").exit_code == 0
    assert cli("run", "in.txt", "--run-id", "b").exit_code == 0

    assert fake_llm.count() == 2
    assert not (tmp_path / ".pipeline" / "cache.sqlite").exists()


def test_a_different_prompt_is_a_miss(cli, fake_llm: FakeLLMServer, pipeline, tmp_path: Path):
    pipeline()
    assert cli("run", "in.txt", "--run-id", "a").exit_code == 0
    (tmp_path / "in.txt").write_text("other notes")

    assert cli("run", "in.txt", "--run-id", "b").exit_code == 0
    assert fake_llm.count() == 2


def test_cache_commands(cli, fake_llm: FakeLLMServer, pipeline):
    pipeline()
    assert cli("run", "in.txt").exit_code == 0

    stats = json.loads(cli("cache", "stats", "--json").stdout)
    assert stats["entries"] == 1
    assert "1 cached reply" in cli("cache", "stats").stdout
    assert cli("cache", "prune", "--older-than", "1d").stdout.startswith("Removed 0 cached")
    assert cli("cache", "clear").stdout.startswith("Removed 1 cached reply")
    assert json.loads(cli("cache", "stats", "--json").stdout)["entries"] == 0
    assert_clean_error(cli("cache", "prune", "--older-than", "soon"), 2, "--older-than")


def test_damaged_cache_file_is_a_clear_error(cli, pipeline, tmp_path: Path):
    pipeline()
    (tmp_path / ".pipeline").mkdir()
    (tmp_path / ".pipeline" / "cache.sqlite").write_bytes(b"this is not a database" * 100)

    result = cli("run", "in.txt")

    assert_clean_error(result, 1, "cache.sqlite is damaged or unusable")


def test_cache_from_a_newer_stepline_is_refused(cli, tmp_path: Path):
    import sqlite3

    (tmp_path / ".pipeline").mkdir()
    db = sqlite3.connect(tmp_path / ".pipeline" / "cache.sqlite")
    db.execute("PRAGMA user_version = 99")
    db.close()

    assert_clean_error(cli("cache", "stats"), 2, "written by a newer stepline")
