"""``stepline.run``, ``resume``, ``plan`` and ``plan_resume`` take what the CLI takes, under
the same names, and give back what its ``--json`` prints."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

import stepline
from tests.e2e.pipelines import REPLY, write_backlog_pipeline
from tests.fakes import FakeLLMServer, Reply


@pytest.fixture
def cassette(fake_llm: FakeLLMServer, tmp_path: Path, monkeypatch) -> Path:
    """The backlog pipeline's reply recorded through the Python API; then no key is set."""
    config = write_backlog_pipeline(tmp_path)
    fake_llm.script(Reply(text=REPLY))
    recorded = stepline.run(config, tmp_path / "notes.txt", record=tmp_path / "cassette.jsonl")
    assert recorded.exit_code == 0, recorded.message
    monkeypatch.delenv("ANTHROPIC_API_KEY")
    return tmp_path / "cassette.jsonl"


def test_run_replays_a_cassette_offline(cassette: Path, tmp_path: Path) -> None:
    result = stepline.run(
        tmp_path / "pipeline-config.yaml", tmp_path / "notes.txt", replay=str(cassette)
    )

    assert result.exit_code == 0, result.message
    assert result.outputs["count"]["count"] == 2
    assert result.state.usage.replayed == 1 and result.state.usage.requests == 0


def test_plan_is_the_dry_run_as_data(cli, cassette: Path, tmp_path: Path) -> None:
    config, notes = tmp_path / "pipeline-config.yaml", tmp_path / "notes.txt"

    preview = stepline.plan(config, notes, run_id="planned", replay=cassette)
    printed = cli(
        "run", str(notes), "--run-id", "planned", "--replay", str(cassette), "--dry-run", "--json"
    )

    assert [decision.action.value for decision in preview.prepared.decisions] == ["run"] * 4
    assert preview.estimates[0].cache == "replay (recorded)"
    assert preview.to_json() == json.loads(printed.stdout)
    assert not (tmp_path / ".pipeline" / "planned").exists()


def test_plan_resume_and_resume_take_the_resume_options(cassette: Path, tmp_path: Path) -> None:
    config, notes = tmp_path / "pipeline-config.yaml", tmp_path / "notes.txt"
    first = stepline.run(config, notes, run_id="r", replay=cassette)
    assert first.exit_code == 0

    preview = stepline.plan_resume("r", from_step="count")
    again = stepline.resume("r", from_step="count")  # the run's cassette sticks

    assert [d.action.value for d in preview.prepared.decisions] == ["reuse", "run", "run", "run"]
    assert again.exit_code == 0, again.message
    assert again.to_json()["steps"][0]["status"] == "completed"


def test_result_to_json_is_what_run_json_prints(cli, cassette: Path, tmp_path: Path) -> None:
    printed = json.loads(
        cli("run", "notes.txt", "--run-id", "cli", "--replay", str(cassette), "--json").stdout
    )
    result = stepline.run(
        tmp_path / "pipeline-config.yaml", tmp_path / "notes.txt", run_id="api", replay=cassette
    )

    assert set(result.to_json()) == set(printed)
    assert result.to_json()["status"] == printed["status"] == "completed"


def test_no_cache_asks_the_model_again(fake_llm: FakeLLMServer, tmp_path: Path) -> None:
    config = write_backlog_pipeline(tmp_path)
    fake_llm.script(Reply(text=REPLY), Reply(text=REPLY))
    assert stepline.run(config, tmp_path / "notes.txt").exit_code == 0
    assert stepline.run(config, tmp_path / "notes.txt").exit_code == 0
    assert fake_llm.count() == 1  # the second run was answered by the response cache

    assert stepline.run(config, tmp_path / "notes.txt", no_cache=True).exit_code == 0

    assert fake_llm.count() == 2


def test_an_unknown_option_is_a_type_error_that_suggests_the_name(tmp_path: Path) -> None:
    config = write_backlog_pipeline(tmp_path)

    with pytest.raises(TypeError, match='unknown run option "concurency"; did you mean'):
        stepline.run(config, tmp_path / "notes.txt", concurency=2)
    assert not (tmp_path / ".pipeline").exists()
