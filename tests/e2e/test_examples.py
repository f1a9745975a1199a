"""The shipped example pipelines validate and run end to end (LLM steps against the fake server)."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import pytest

from tests.fakes import FakeLLMServer, RecordedRequest, Reply
from tests.helpers import write

ROOT = Path(__file__).resolve().parents[2]
CONFIGS = sorted((ROOT / "configs").glob("*/pipeline.yaml"))


@pytest.mark.parametrize("config", CONFIGS, ids=lambda path: path.parent.name)
def test_example_config_validates(cli, config: Path):
    result = cli("validate", "-c", str(config))

    assert result.exit_code == 0, result.output


def test_example_config_file_validates(cli, tmp_path: Path):
    """The every-key example validates once the helpers.py its comments describe exists."""
    shutil.copy(ROOT / "pipeline-config.example.yaml", tmp_path)
    write(tmp_path / "helpers.py", "def count_items(ctx):\n    return {'total': 0}\n")

    result = cli("validate", "-c", str(tmp_path / "pipeline-config.example.yaml"))

    assert result.exit_code == 0, result.output


def copy_example(name: str, destination: Path) -> Path:
    shutil.copytree(ROOT / "configs" / name, destination / name)
    return destination / name


def test_action_items_demo_runs_end_to_end(cli, tmp_path: Path):
    example = copy_example("action-items", tmp_path)

    result = cli(
        "run",
        str(example / "meeting-notes.txt"),
        "-c",
        str(example / "pipeline.yaml"),
        "--run-id",
        "demo",
    )

    assert result.exit_code == 0, result.output
    steps = tmp_path / ".pipeline" / "demo" / "steps"
    assert json.loads((steps / "03-stats.json").read_text()) == {
        "total": 4,
        "by_owner": {"Ana": 2, "Bo": 1, "Chen": 1},
    }
    report = json.loads((steps / "04-report.json").read_text())
    assert report.startswith("# Action items")
    assert "## Chen (1)\n- I will move the slow integration tests" in report


def backlog_responder(request: RecordedRequest) -> Reply:
    if "Meeting notes:" in request.prompt:
        items = [
            {
                "title": "Fix SSO plus-sign emails",
                "detail": "Login breaks for emails with a plus sign; write a failing test first.",
                "owner": "Ana",
                "type": "bug",
            },
            {
                "title": "Add CSV export",
                "detail": "Reports as CSV.",
                "owner": None,
                "type": "feature",
            },
        ]
        return Reply(text=json.dumps(items))
    questions = [{"title": "Add CSV export", "question": "Which columns does sales need?"}]
    return Reply(text="```json\n" + json.dumps(questions) + "\n```")


def test_notes_to_backlog_runs_against_the_llm(cli, fake_llm: FakeLLMServer, tmp_path: Path):
    example = copy_example("notes-to-backlog", tmp_path)
    fake_llm.responder = backlog_responder

    result = cli(
        "run",
        str(example / "meeting-notes.txt"),
        "-c",
        str(example / "pipeline.yaml"),
        "--run-id",
        "backlog",
    )

    assert result.exit_code == 0, result.output
    assert [request.model for request in fake_llm.requests] == [
        "claude-sonnet-5-5",
        "claude-haiku-5-5",
    ]
    assert "the product team" in (fake_llm.requests[0].system or "")
    assert fake_llm.requests[0].body["temperature"] == 0.2
    backlog = json.loads((tmp_path / ".pipeline/backlog/steps/04-backlog.json").read_text())
    assert "## Fix SSO plus-sign emails (bug, readiness 1.0)" in backlog
    assert "> Question: Which columns does sales need?" in backlog


def test_notes_to_backlog_demo_replays_offline(cli, tmp_path: Path):
    """What make demo runs: LLM steps answered from the shipped cassette, no key, no server."""
    example = copy_example("notes-to-backlog", tmp_path)

    result = cli(
        "run",
        str(example / "meeting-notes.txt"),
        "-c",
        str(example / "pipeline.yaml"),
        "--replay",
        str(example / "demo-cassette.jsonl"),
        "--run-id",
        "demo",
    )

    assert result.exit_code == 0, result.output
    backlog = json.loads((tmp_path / ".pipeline/demo/steps/04-backlog.json").read_text())
    assert "## Fix SSO login for emails with a plus sign (bug, readiness 1.0)" in backlog
    assert "> Question: Which report columns does sales need" in backlog
    for line in (example / "demo-cassette.jsonl").read_text().splitlines():
        assert json.loads(line)["example"].startswith("Hand-written example reply")
