"""Run folders written by older stepline versions stay readable and resumable.

``tests/fixtures/runs/`` holds real run folders, each written by the stepline named in its
README row (``tests/fixtures/make_old_runs.py`` made them): ``v1-core`` by the first core
runner (state.json without ``usage`` or ``overrides``), ``v1-fanout`` by the first fan-out
(``items.sqlite`` at migration 1), ``v1-llm`` by the stepline of its commit (LLM, fan-out and
shell steps). Each has a ``completed`` run and a ``failed`` one. A format change that breaks
one of these tests breaks every user's existing runs: keep them readable, or migrate them.
"""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import pytest

from tests.fakes import FakeLLMServer

FIXTURES = Path(__file__).resolve().parent.parent / "fixtures" / "runs"
NAMES = ["v1-core", "v1-fanout", "v1-llm"]
STEPS = {
    "v1-core": ["words", "count", "report"],
    "v1-fanout": ["words", "loud", "count", "report"],
    "v1-llm": ["words", "loud", "count", "report"],
}
FIRST = {"v1-core": "alpha", "v1-fanout": "ALPHA", "v1-llm": "ALPHA"}


@pytest.fixture(params=NAMES)
def old(request: pytest.FixtureRequest, tmp_path: Path, fake_llm: FakeLLMServer) -> str:
    """A copy of one fixture: its project in the test's folder, its runs in ``.pipeline``.

    The LLM server answers nothing: a resume must not ask it again for completed work.
    """
    name: str = request.param
    shutil.copytree(FIXTURES / name / "project", tmp_path, dirs_exist_ok=True)
    shutil.copytree(FIXTURES / name / "workdir", tmp_path / ".pipeline")
    return name


def test_list_reads_old_runs(cli, old: str):
    result = cli("list", "--json")

    assert result.exit_code == 0, result.output
    rows = {row["run_id"]: row for row in json.loads(result.stdout)}
    assert rows["completed"]["status"] == "completed" and rows["completed"]["problem"] is None
    assert rows["failed"]["status"] == "failed" and rows["failed"]["problem"] is None
    assert rows["completed"]["steps_done"] == len(STEPS[old]) == rows["completed"]["steps_total"]
    assert rows["completed"]["pipeline"] == "fixture-" + old.removeprefix("v1-")


def test_show_reads_old_runs(cli, old: str):
    shown = cli("show", "completed", "--json")
    report = cli("show", "completed", "--step", "report", "--json")
    table = cli("show", "failed")

    assert shown.exit_code == report.exit_code == table.exit_code == 0, table.output
    state = json.loads(shown.stdout)
    assert [step["id"] for step in state["steps"]] == STEPS[old]
    assert {step["status"] for step in state["steps"]} == {"completed"}
    assert json.loads(report.stdout) == {"count": 3, "first": FIRST[old]}
    assert "is broken" in table.stdout


def test_an_old_failed_run_resumes_where_it_stopped(cli, old: str, fake_llm: FakeLLMServer):
    plan = cli("resume", "failed", "-c", "pipeline-config.yaml", "--dry-run", "--json")
    assert plan.exit_code == 0, plan.output
    actions = [step["action"] for step in json.loads(plan.stdout)["plan"]]
    assert actions[0] == "reuse"  # completed work of the old version is not redone

    result = cli("resume", "failed", "-c", "pipeline-config.yaml")

    assert result.exit_code == 0, result.output
    assert fake_llm.count() == 0
    report = json.loads(cli("show", "failed", "--step", "report", "--json").stdout)
    assert report == {"count": 3, "first": FIRST[old]}


@pytest.mark.parametrize("old", ["v1-fanout", "v1-llm"], indirect=True)
def test_an_old_fan_out_resumes_from_its_migrated_item_checkpoints(cli, old: str):
    assert cli("resume", "failed", "-c", "pipeline-config.yaml").exit_code == 0

    state = json.loads(cli("show", "failed", "--json").stdout)
    loud = next(step for step in state["steps"] if step["id"] == "loud")
    assert loud["metrics"]["items_reused"] == 1  # "alpha", done before the failure
    assert loud["metrics"]["items_done"] == 2


def test_an_old_completed_run_reruns_from_a_step(cli, old: str, fake_llm: FakeLLMServer):
    result = cli("resume", "completed", "-c", "pipeline-config.yaml", "--from-step", "2")

    assert result.exit_code == 0, result.output
    assert fake_llm.count() == 0  # step 1 (the LLM step in v1-llm) is reused
    state = json.loads(cli("show", "completed", "--json").stdout)
    assert [step["status"] for step in state["steps"]] == ["completed"] * len(STEPS[old])
    assert state["steps"][1]["attempts"] == 2
    history = list((Path(".pipeline") / "completed" / "history").iterdir())
    assert len(history) >= 1  # the old output of step 2 was kept
