"""A whole run from the command line: LLM, Python and shell steps, files, state, events."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

import stepline
from stepline.errors import InputError
from stepline.store.state import SCHEMA_VERSION
from tests.e2e.pipelines import REPLY, calls, write_backlog_pipeline
from tests.fakes import FakeLLMServer, Reply
from tests.helpers import SENTINEL_KEY, write


def only_run(workdir: Path) -> Path:
    runs = [path for path in workdir.iterdir() if path.is_dir()]
    assert len(runs) == 1
    return runs[0]


def test_full_run_writes_outputs_state_and_events(cli, fake_llm: FakeLLMServer, tmp_path: Path):
    write_backlog_pipeline(tmp_path)
    fake_llm.script(Reply(text=REPLY, input_tokens=40, output_tokens=30))

    result = cli("run", "notes.txt")

    assert result.exit_code == 0, result.output
    run_dir = only_run(tmp_path / ".pipeline")
    assert (run_dir / "input" / "original.txt").read_text().startswith("Ana: login")
    assert (run_dir / "config.yaml").read_text() == (tmp_path / "pipeline-config.yaml").read_text()
    extract = json.loads((run_dir / "steps" / "01-extract.json").read_text())
    assert [item["title"] for item in extract] == ["Fix login", "Add export"]
    assert json.loads((run_dir / "steps" / "02-count.json").read_text())["count"] == 2
    assert json.loads((run_dir / "steps" / "04-report.json").read_text()) == "report for 2 items"
    assert calls(tmp_path) == ["count", "flaky", "report"]

    state = json.loads((run_dir / "state.json").read_text())
    assert state["status"] == "completed"
    assert state["schema_version"] == SCHEMA_VERSION
    assert state["config_hash"].startswith("sha256:")
    assert state["finished_at"] is not None
    assert [step["status"] for step in state["steps"]] == ["completed"] * 4
    first = state["steps"][0]
    assert first["output"] == "steps/01-extract.json"
    assert first["metrics"]["input_tokens"] == 40
    assert first["metrics"]["model"] == "claude-test-model"
    assert set(state["steps"][1]["reads"]) == {"extract", "@input"}

    events = [json.loads(line) for line in (run_dir / "events.jsonl").read_text().splitlines()]
    kinds = [event["type"] for event in events]
    assert kinds[0] == "run_started" and kinds[-1] == "run_completed"
    assert kinds.count("step_completed") == 4
    assert any(e["type"] == "log" and "counting 2 items" in e["message"] for e in events)
    assert any(e["type"] == "pause_passed" and e["step"] == "extract" for e in events)


def test_llm_request_matches_the_config(cli, fake_llm: FakeLLMServer, tmp_path: Path):
    write_backlog_pipeline(tmp_path)
    fake_llm.script(Reply(text=REPLY))

    assert cli("run", "notes.txt").exit_code == 0

    assert fake_llm.count() == 1
    assert calls(tmp_path) == ["count", "flaky", "report"]
    request = fake_llm.requests[0]
    assert request.body["model"] == "claude-test-model"
    assert request.body["max_tokens"] == 512
    assert "temperature" not in request.body
    assert request.system == "You turn meeting notes into backlog items."
    assert "Ana: login via SSO is broken." in request.prompt
    assert request.headers.get("authorization") == f"Bearer {SENTINEL_KEY}"


def test_api_key_never_reaches_the_run_folder(cli, fake_llm: FakeLLMServer, tmp_path: Path):
    write_backlog_pipeline(tmp_path)
    fake_llm.script(Reply(text=REPLY))

    result = cli("run", "notes.txt", "--json")

    assert result.exit_code == 0
    assert SENTINEL_KEY not in result.output
    for path in (tmp_path / ".pipeline").rglob("*"):
        if path.is_file():
            assert SENTINEL_KEY.encode() not in path.read_bytes(), path


def test_run_json_output_is_machine_readable(cli, fake_llm: FakeLLMServer, tmp_path: Path):
    write_backlog_pipeline(tmp_path)
    fake_llm.script(Reply(text=REPLY))

    result = cli("run", "notes.txt", "--json", "--run-id", "first")

    assert result.exit_code == 0
    payload = json.loads(result.stdout)
    assert payload["run_id"] == "first"
    assert payload["status"] == "completed"
    assert Path(payload["run_dir"]).name == "first"
    assert [step["id"] for step in payload["steps"]] == ["extract", "count", "check", "report"]


def test_list_and_show(cli, fake_llm: FakeLLMServer, tmp_path: Path):
    write_backlog_pipeline(tmp_path)
    fake_llm.script(Reply(text=REPLY))
    assert cli("run", "notes.txt", "--run-id", "listed").exit_code == 0

    listing = cli("list")
    assert listing.exit_code == 0
    assert "listed" in listing.stdout and "completed" in listing.stdout
    assert "4/4" in listing.stdout

    rows = json.loads(cli("list", "--json").stdout)
    assert rows[0]["run_id"] == "listed" and rows[0]["steps_done"] == 4
    assert json.loads(cli("list", "--json", "--status", "failed").stdout) == []

    shown = cli("show", "listed")
    assert shown.exit_code == 0
    assert "Count items" in shown.stdout and "steps/02-count.json" in shown.stdout

    output = cli("show", "listed", "--step", "count", "--json")
    assert json.loads(output.stdout) == {"count": 2, "titles": ["Fix login", "Add export"]}
    assert "report for 2 items" in cli("show", "listed", "--step", "4").stdout


def test_python_api_runs_and_reads_results(fake_llm: FakeLLMServer, tmp_path: Path):
    config = write_backlog_pipeline(tmp_path)
    fake_llm.script(Reply(text=REPLY))

    result = stepline.run(config, tmp_path / "notes.txt", run_id="from-python")

    assert result.status == "completed" and result.exit_code == 0
    assert result.outputs["count"]["count"] == 2
    again = stepline.resume("from-python", from_step="report")
    assert again.exit_code == 0
    assert fake_llm.count() == 1


def test_python_api_refuses_a_workdir_that_is_a_file(tmp_path: Path):
    config = write_backlog_pipeline(tmp_path)

    with pytest.raises(InputError, match="work folder .* is not a folder"):
        stepline.run(config, tmp_path / "notes.txt", workdir=tmp_path / "notes.txt")

    assert not list(tmp_path.rglob("state.json"))


def test_each_config_folder_gets_its_own_helpers_module(cli, tmp_path: Path):
    for name, answer in (("one", 1), ("two", 2)):
        folder = tmp_path / name
        write(folder / "helpers.py", f"def answer(ctx):\n    return {answer}\n")
        write(
            folder / "pipeline.yaml",
            """
            name: answers
            steps:
              - id: answer
                kind: python
                function: helpers:answer
            """,
        )
    write(tmp_path / "in.txt", "x")

    for name, answer in (("one", 1), ("two", 2)):
        result = cli("run", "in.txt", "-c", f"{name}/pipeline.yaml", "--run-id", name)
        assert result.exit_code == 0, result.output
        output = tmp_path / f".pipeline/{name}/steps/01-answer.json"
        assert json.loads(output.read_text()) == answer


def test_workdir_from_environment_and_flag(cli, tmp_path: Path, monkeypatch):
    write(tmp_path / "in.txt", "x")
    write(
        tmp_path / "pipeline-config.yaml",
        """
        name: where
        steps:
          - id: one
            kind: shell
            command: echo one
        """,
    )
    monkeypatch.setenv("PIPELINE_WORKDIR", str(tmp_path / "from-env"))

    assert cli("run", "in.txt", "--run-id", "a").exit_code == 0
    assert cli("run", "in.txt", "--run-id", "b", "--workdir", "from-flag").exit_code == 0

    assert (tmp_path / "from-env" / "a" / "state.json").is_file()
    assert (tmp_path / "from-flag" / "b" / "state.json").is_file()
    assert not (tmp_path / ".pipeline").exists()
    assert [row["run_id"] for row in json.loads(cli("list", "--json").stdout)] == ["a"]


def test_show_step_prints_long_text_without_wrapping_it(cli, tmp_path: Path, monkeypatch):
    monkeypatch.setenv("COLUMNS", "40")
    line = "word " * 30
    write(tmp_path / "in.txt", line)
    write(
        tmp_path / "pipeline-config.yaml",
        """
        name: long
        steps:
          - id: echo
            kind: shell
            command: ["python3", "-c", "import sys; print(open(sys.argv[1]).read())", "in.txt"]
        """,
    )
    assert cli("run", "in.txt", "--run-id", "l").exit_code == 0

    shown = cli("show", "l", "--step", "echo")

    assert line.strip() in shown.stdout


def test_a_failed_run_says_why_on_stdout_too(cli, tmp_path: Path):
    """Progress (and each step's ✗ line) goes to stderr; a script that keeps only stdout
    still learns what failed from the last line."""
    write(tmp_path / "in.txt", "x\n")
    write(
        tmp_path / "pipeline-config.yaml",
        """
        name: fails
        steps:
          - {id: boom, kind: shell, command: ["python3", "-c", "import sys; sys.exit(4)"]}
        """,
    )

    result = cli("run", "in.txt", "--run-id", "f")

    assert result.exit_code == 1
    last = result.stdout.strip().splitlines()[-1]
    assert last.startswith('Run f failed: step "boom"') and "pipeline resume f" in last
