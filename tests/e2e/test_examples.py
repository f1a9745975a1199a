"""The shipped example pipelines validate and run end to end (LLM steps against the fake server)."""

from __future__ import annotations

import importlib.util
import json
import shutil
from pathlib import Path
from types import ModuleType

import pytest

from tests.e2e.test_report import Page
from tests.fakes import FakeLLMServer, Reply
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


def assert_report_renders(cli, run_dir: Path) -> None:
    """The run's HTML report is written and parses, with every step and its output."""
    result = cli("report", run_dir.name, "-o", str(run_dir / "report.html"))
    assert result.exit_code == 0, result.output
    page = Page((run_dir / "report.html").read_text(encoding="utf-8"))
    state = json.loads((run_dir / "state.json").read_text())
    ids = [step["id"] for step in state["steps"]]
    steps = page.root.find("section", id="steps")
    assert [
        row.attrs["data-step"] for row in steps.find_all("tr") if "data-step" in row.attrs
    ] == ids
    assert [d.attrs["data-step"] for d in page.root.find_all("details")] == ids


def run_example(cli, example: Path, run_id: str, *args: str):
    """``pipeline run`` on the example's own input, as its README says."""
    return cli(
        "run",
        str(example / "meeting-notes.txt"),
        "-c",
        str(example / "pipeline.yaml"),
        "--run-id",
        run_id,
        *args,
    )


def notes_replies(example: Path) -> ModuleType:
    """The example's hand-written replies (the ones its cassette was recorded from)."""
    spec = importlib.util.spec_from_file_location("demo_replies", example / "demo_replies.py")
    assert spec and spec.loader
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def test_notes_to_backlog_demo_replays_offline(cli, tmp_path: Path):
    """What make demo runs: LLM steps answered from the shipped cassette, no key, no server."""
    example = copy_example("notes-to-backlog", tmp_path)

    result = run_example(
        cli, example, "demo", "--replay", str(example / "demo-cassette.jsonl"), "--no-pause"
    )

    assert result.exit_code == 0, result.output
    outputs = tmp_path / ".pipeline/demo/outputs"
    backlog = json.loads((outputs / "backlog.json").read_text())
    assert [p["name"] for p in backlog["meeting"]["participants"]] == ["Ana", "Bo", "Chen"]
    verdicts = {item["id"]: item["verdict"] for item in backlog["items"]}
    assert verdicts == {
        "B1": "ready",
        "B2": "needs clarification",
        "B3": "needs clarification",
        "B4": "not ready",
        "B5": "needs clarification",
    }
    sso = next(item for item in backlog["items"] if item["id"] == "B1")
    assert sso["confidence"] == 0.95
    assert sso["context"][0]["doc"] == "authentication.md"  # retrieved by BM25
    markdown = (outputs / "backlog.md").read_text()
    assert markdown.startswith("# Backlog\n\n## B1. Fix SSO login for emails with a plus sign")
    assert "- Conflict: A new job needs a third runner" in markdown
    assert "> Question: Which report columns does sales need in the CSV?" in markdown
    assert (
        "Items: 5; ready: 1; needs clarification: 3; not ready: 1"
        in (outputs / "summary.md").read_text()
    )
    for line in (example / "demo-cassette.jsonl").read_text().splitlines():
        assert json.loads(line)["example"].startswith("Hand-written example reply")
    assert_report_renders(cli, tmp_path / ".pipeline/demo")


def test_notes_to_backlog_uses_a_model_per_step_and_resumes_after_review(
    cli, fake_llm: FakeLLMServer, tmp_path: Path
):
    """Against the fake server: strong model for reading, cheap for scoring; a person drops an
    item at the pause and only the kept items are scored; vars choose formats and top_k."""
    example = copy_example("notes-to-backlog", tmp_path)
    replies = notes_replies(example)
    fake_llm.responder = lambda request: Reply(text=replies.reply(request.prompt, request.model))

    paused = run_example(cli, example, "live", "--pause")
    assert paused.exit_code == 3, paused.output
    extract = tmp_path / ".pipeline/live/steps/02-extract.json"
    items = json.loads(extract.read_text())
    extract.write_text(json.dumps([item for item in items if item["id"] != "B4"]))
    resumed = cli("resume", "live", "--set", "formats=json, summary", "--set", "top_k=1")

    assert resumed.exit_code == 0, resumed.output
    models = [(request.prompt.splitlines()[0], request.model) for request in fake_llm.requests]
    assert models[:6] == [
        ("Task: describe the meeting behind these notes.", "claude-sonnet-5-5"),
        ("Task: extract candidate backlog items.", "claude-sonnet-5-5"),
        *[("Task: score one candidate backlog item.", "claude-haiku-5-5")] * 4,
    ]
    assert sorted(models[6:]) == [  # both read only the enriched items: they run at once
        ("Task: ask clarifying questions about backlog items.", "claude-haiku-5-5"),
        ("Task: check backlog items for risks and conflicts.", "claude-sonnet-5-5"),
    ]
    outputs = tmp_path / ".pipeline/live/outputs"
    assert sorted(path.name for path in outputs.iterdir()) == ["backlog.json", "summary.md"]
    kept = json.loads((outputs / "backlog.json").read_text())["items"]
    assert sorted(item["id"] for item in kept) == ["B1", "B2", "B3", "B5"]
    assert all(len(item["context"]) == 1 for item in kept)
