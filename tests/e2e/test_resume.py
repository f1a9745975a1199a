"""Resume, --from-step, --to-step and re-runs caused by edits: only what changed runs again."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from tests.e2e.pipelines import REPLY, calls, clear_calls, write_backlog_pipeline
from tests.fakes import FakeLLMServer, Reply
from tests.helpers import write


@pytest.fixture
def completed_run(cli, fake_llm: FakeLLMServer, tmp_path: Path) -> Path:
    """A completed run named "r1" of the backlog pipeline; calls.log cleared afterwards."""
    write_backlog_pipeline(tmp_path)
    fake_llm.script(Reply(text=REPLY))
    result = cli("run", "notes.txt", "--run-id", "r1")
    assert result.exit_code == 0, result.output
    clear_calls(tmp_path)
    return tmp_path / ".pipeline" / "r1"


def state_of(run_dir: Path) -> dict:
    return json.loads((run_dir / "state.json").read_text())


def plan_of(cli, *args: str) -> dict[str, str]:
    result = cli("resume", *args, "--dry-run", "--json")
    assert result.exit_code == 0, result.output
    return {step["step"]: step["action"] for step in json.loads(result.stdout)["plan"]}


def test_failed_step_fixed_then_resumed_runs_only_the_rest(
    cli, fake_llm: FakeLLMServer, tmp_path: Path
):
    write_backlog_pipeline(tmp_path)
    (tmp_path / "broken").touch()
    fake_llm.script(Reply(text=REPLY))

    failed = cli("run", "notes.txt", "--run-id", "r1")

    assert failed.exit_code == 1
    assert 'step "check": RuntimeError: the flaky step is broken' in failed.output
    assert "Traceback" not in failed.output
    assert "pipeline resume r1" in failed.output
    state = state_of(tmp_path / ".pipeline" / "r1")
    assert state["status"] == "failed"
    assert [s["status"] for s in state["steps"]] == ["completed", "completed", "failed", "pending"]
    assert "helpers.py" in state["steps"][2]["error"]
    assert calls(tmp_path) == ["count", "flaky"]

    (tmp_path / "broken").unlink()
    clear_calls(tmp_path)
    resumed = cli("resume", "r1")

    assert resumed.exit_code == 0, resumed.output
    assert calls(tmp_path) == ["flaky", "report"]
    assert fake_llm.count() == 1
    state = state_of(tmp_path / ".pipeline" / "r1")
    assert state["status"] == "completed"
    assert state["steps"][2]["attempts"] == 2


def test_resume_spelled_as_an_option(cli, completed_run: Path, tmp_path: Path):
    result = cli("--resume", "r1", "--from-step", "report")

    assert result.exit_code == 0, result.output
    assert calls(tmp_path) == ["report"]


def test_from_step_reruns_that_step_and_later_and_keeps_history(
    cli, completed_run: Path, fake_llm: FakeLLMServer, tmp_path: Path
):
    result = cli("resume", "r1", "--from-step", "count")

    assert result.exit_code == 0, result.output
    assert calls(tmp_path) == ["count", "flaky", "report"]
    assert fake_llm.count() == 1
    history = sorted(path.name for path in (completed_run / "history").iterdir())
    assert any(name.startswith("02-count.") for name in history)
    assert any(name.startswith("04-report.") for name in history)


def test_to_step_stops_and_resume_continues(cli, fake_llm: FakeLLMServer, tmp_path: Path):
    write_backlog_pipeline(tmp_path)
    fake_llm.script(Reply(text=REPLY))

    first = cli("run", "notes.txt", "--run-id", "r1", "--to-step", "2")

    assert first.exit_code == 0, first.output
    assert calls(tmp_path) == ["count"]
    state = state_of(tmp_path / ".pipeline" / "r1")
    assert state["status"] == "paused" and state["pause_reason"] == "to_step"

    clear_calls(tmp_path)
    assert cli("resume", "r1").exit_code == 0
    assert calls(tmp_path) == ["flaky", "report"]


def test_edited_upstream_output_reruns_only_its_readers(cli, completed_run: Path, tmp_path: Path):
    count_file = completed_run / "steps" / "02-count.json"
    count_file.write_text(json.dumps({"count": 7, "titles": []}, indent=4))

    assert plan_of(cli, "r1") == {
        "extract": "reuse",
        "count": "reuse",
        "check": "run",
        "report": "run",
    }
    result = cli("resume", "r1")

    assert result.exit_code == 0, result.output
    assert calls(tmp_path) == ["flaky", "report"]
    assert json.loads((completed_run / "steps" / "04-report.json").read_text()) == (
        "report for 7 items"
    )


def test_edit_nobody_reads_reruns_nothing(cli, completed_run: Path, tmp_path: Path):
    (completed_run / "steps" / "03-check.json").write_text('{"ok": false}')

    result = cli("resume", "r1")

    assert result.exit_code == 0, result.output
    assert calls(tmp_path) == []


def test_reindenting_an_output_is_not_an_edit(cli, completed_run: Path):
    count_file = completed_run / "steps" / "02-count.json"
    count_file.write_text(json.dumps(json.loads(count_file.read_text()), indent=8))

    assert set(plan_of(cli, "r1").values()) == {"reuse"}


def test_changed_prompt_reruns_the_llm_step_and_its_dependents(
    cli, completed_run: Path, fake_llm: FakeLLMServer, tmp_path: Path
):
    config = tmp_path / "pipeline-config.yaml"
    config.write_text(config.read_text().replace("Notes:", "Meeting notes:"))
    fake_llm.script(Reply(text=REPLY))

    plan = plan_of(cli, "r1")
    assert plan["extract"] == "run"
    result = cli("resume", "r1")

    assert result.exit_code == 0, result.output
    assert fake_llm.count("/v1/messages") == 2
    assert "Meeting notes:" in fake_llm.requests[-1].prompt
    assert calls(tmp_path) == ["count", "flaky", "report"]


def test_label_change_reruns_nothing(cli, completed_run: Path, tmp_path: Path):
    config = tmp_path / "pipeline-config.yaml"
    config.write_text(config.read_text().replace("Count items", "Count the items"))

    assert set(plan_of(cli, "r1").values()) == {"reuse"}


def test_edited_helper_module_reruns_its_python_steps(cli, completed_run: Path, tmp_path: Path):
    helpers = tmp_path / "helpers.py"
    helpers.write_text(helpers.read_text() + "\n# edited\n")

    result = cli("resume", "r1")

    assert result.exit_code == 0, result.output
    assert calls(tmp_path) == ["count", "flaky", "report"]


def test_set_variable_change_reruns_its_readers(cli, tmp_path: Path):
    write(
        tmp_path / "pipeline-config.yaml",
        """
        name: greet
        vars: {name: world}
        steps:
          - id: greet
            kind: shell
            command: echo "hello {{ vars.name }}"
          - id: other
            kind: shell
            command: echo unrelated
        """,
    )
    write(tmp_path / "in.txt", "x")
    assert cli("run", "in.txt", "--run-id", "g").exit_code == 0

    assert plan_of(cli, "g", "--set", "name=stepline") == {"greet": "run", "other": "reuse"}
    assert cli("resume", "g", "--set", "name=stepline").exit_code == 0
    output = json.loads((tmp_path / ".pipeline/g/steps/01-greet.json").read_text())
    assert output == "hello stepline"


def test_resume_uses_the_snapshot_when_the_config_file_is_gone(
    cli, completed_run: Path, tmp_path: Path
):
    (tmp_path / "pipeline-config.yaml").unlink()

    result = cli("resume", "r1", "--from-step", "count")

    assert result.exit_code == 0, result.output
    assert calls(tmp_path) == ["count", "flaky", "report"]


def test_completed_run_resumes_to_nothing(cli, completed_run: Path, tmp_path: Path):
    result = cli("resume", "r1")

    assert result.exit_code == 0
    assert calls(tmp_path) == []
    assert state_of(completed_run)["status"] == "completed"
