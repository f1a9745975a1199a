"""Run ids on the command line: ``last`` names the newest run (the first row of ``pipeline
list``), a unique prefix names the run it starts, and a run whose id is exactly what was typed
always wins. Every command that takes a run id, and ``stepline.resume``, resolves them alike."""

from __future__ import annotations

import json
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest

import stepline
from tests.e2e.test_errors import assert_clean_error
from tests.helpers import write

CONFIG = """
name: ids
steps:
  - id: echo
    kind: shell
    command: echo hi
  - id: check
    kind: python
    function: helpers:check
"""

HELPERS = """
from pathlib import Path


def check(ctx):
    if Path(__file__).with_name("broken").exists():
        raise RuntimeError("check is broken")
    return {"ok": True}
"""

BASE = datetime(2026, 1, 1, tzinfo=UTC)


@pytest.fixture
def project(tmp_path: Path) -> Path:
    write(tmp_path / "pipeline-config.yaml", CONFIG)
    write(tmp_path / "helpers.py", HELPERS)
    write(tmp_path / "in.txt", "x")
    return tmp_path


def make_run(cli, project: Path, run_id: str, *, started_hours: int) -> None:
    """A completed run whose start is ``started_hours`` after BASE (set in its state, so the
    order never depends on how fast the runs ran)."""
    result = cli("run", "in.txt", "--run-id", run_id)
    assert result.exit_code in (0, 1), result.output
    path = project / ".pipeline" / run_id / "state.json"
    state = json.loads(path.read_text())
    state["started_at"] = (BASE + timedelta(hours=started_hours)).isoformat()
    path.write_text(json.dumps(state))


def shown_id(cli, *args: str) -> str:
    result = cli("show", *args, "--json")
    assert result.exit_code == 0, result.output
    return str(json.loads(result.stdout)["run_id"])


def test_last_is_the_run_list_shows_first_not_the_last_by_name(cli, project: Path):
    make_run(cli, project, "zeta", started_hours=1)
    make_run(cli, project, "alpha", started_hours=2)
    make_run(cli, project, "mid", started_hours=0)

    listed = json.loads(cli("list", "--json").stdout)

    assert listed[0]["run_id"] == "alpha"
    assert shown_id(cli, "last") == "alpha"
    report = cli("report", "last", "--json")
    assert json.loads(report.stdout)["run_id"] == "alpha", report.output
    assert cli("logs", "last").exit_code == 0
    assert "alpha" in cli("cancel", "last").stdout  # not running: says so, exit 0


def test_resume_last_continues_the_newest_run(cli, project: Path):
    make_run(cli, project, "older", started_hours=0)
    (project / "broken").touch()
    make_run(cli, project, "newer", started_hours=1)
    (project / "broken").unlink()

    result = cli("resume", "last", "--json")

    assert result.exit_code == 0, result.output
    assert json.loads(result.stdout)["run_id"] == "newer"
    assert json.loads(result.stdout)["status"] == "completed"


def test_the_library_resolves_last_too(cli, project: Path):
    make_run(cli, project, "old", started_hours=0)
    (project / "broken").touch()
    make_run(cli, project, "new", started_hours=1)
    (project / "broken").unlink()

    result = stepline.resume("last", workdir=project / ".pipeline")

    assert (result.run_id, result.status.value) == ("new", "completed")


def test_a_unique_prefix_names_its_run(cli, project: Path):
    make_run(cli, project, "run-20261207-014340-16a3f2", started_hours=0)
    make_run(cli, project, "nightly", started_hours=1)

    assert shown_id(cli, "run-2026") == "run-20261207-014340-16a3f2"
    diff = cli("diff", "night", "run-", "--json")
    assert diff.exit_code == 0, diff.output
    assert json.loads(diff.stdout)["run_a"] == "nightly"
    assert json.loads(diff.stdout)["run_b"] == "run-20261207-014340-16a3f2"


def test_an_ambiguous_prefix_lists_the_runs_it_matches(cli, project: Path):
    make_run(cli, project, "nightly-1", started_hours=0)
    make_run(cli, project, "nightly-2", started_hours=1)

    result = cli("show", "night")

    assert_clean_error(result, 2, '"night" matches 2 runs', "nightly-1, nightly-2")


def test_an_exact_id_wins_over_a_prefix_and_over_last(cli, project: Path):
    make_run(cli, project, "nightly", started_hours=0)
    make_run(cli, project, "nightly-2", started_hours=1)
    make_run(cli, project, "last", started_hours=-5)  # the oldest, yet called "last"

    assert shown_id(cli, "nightly") == "nightly"  # though it is a prefix of nightly-2 too
    assert shown_id(cli, "nightly-") == "nightly-2"
    assert shown_id(cli, "last") == "last"
    assert shown_id(cli, "las") == "last"


def test_unknown_ids_keep_their_did_you_mean_and_last_needs_a_run(cli, project: Path):
    assert_clean_error(cli("show", "last"), 2, "no runs in", "pipeline run")

    make_run(cli, project, "nightly-2026", started_hours=0)

    assert_clean_error(cli("show", "nightly-2025"), 2, 'no run "nightly-2025"', "nightly-2026")
