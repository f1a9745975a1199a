"""pipeline clean: remove old runs, never a running one."""

from __future__ import annotations

import json
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest

from stepline.store.lock import RunLock
from tests.e2e.test_errors import assert_clean_error
from tests.helpers import write

CONFIG = """
name: tidy
steps:
  - id: echo
    kind: shell
    command: echo hi
"""


@pytest.fixture
def runs(cli, tmp_path: Path) -> Path:
    """Four runs: old completed, old failed, old 'running' (locked), new completed."""
    write(tmp_path / "pipeline-config.yaml", CONFIG)
    write(tmp_path / "in.txt", "x")
    for run_id in ("old-done", "old-failed", "old-running", "new-done"):
        assert cli("run", "in.txt", "--run-id", run_id).exit_code == 0
    workdir = tmp_path / ".pipeline"
    long_ago = (datetime.now(UTC) - timedelta(days=40)).isoformat()
    for run_id, status in (
        ("old-done", None),
        ("old-failed", "failed"),
        ("old-running", "running"),
    ):
        path = workdir / run_id / "state.json"
        state = json.loads(path.read_text())
        state["updated_at"] = long_ago
        state["status"] = status or state["status"]
        path.write_text(json.dumps(state))
    return workdir


def test_clean_removes_old_runs_only(cli, runs: Path):
    result = cli("clean", "--older-than", "30d")

    assert result.exit_code == 0, result.output
    # "old-running" says running, but no process holds it: it was interrupted, so it goes too.
    assert [path.name for path in runs.iterdir() if path.is_dir()] == ["new-done"]
    assert "Removed 3 runs" in result.stdout and "old-failed" in result.stdout


def test_clean_never_removes_a_run_a_process_holds(cli, runs: Path):
    with RunLock(runs / "old-running" / ".lock", "old-running"):
        result = cli("clean", "--older-than", "30d", "--json")

    assert result.exit_code == 0, result.output
    assert "old-running" not in json.loads(result.stdout)["removed"]
    assert (runs / "old-running" / "state.json").exists()


def test_clean_by_status_and_dry_run(cli, runs: Path):
    dry = cli("clean", "--older-than", "30d", "--status", "failed", "--dry-run", "--json")

    assert json.loads(dry.stdout) == {"would_remove": ["old-failed"]}
    assert (runs / "old-failed").exists(), "a dry run removes nothing"

    assert cli("clean", "--older-than", "30d", "--status", "failed").exit_code == 0
    assert not (runs / "old-failed").exists()
    assert (runs / "old-done").exists()
    assert not [path for path in runs.iterdir() if path.name.startswith(".removing-")]


def test_clean_needs_a_valid_age_and_status(cli, runs: Path):
    assert_clean_error(cli("clean", "--older-than", "soon"), 2, "--older-than")
    assert_clean_error(cli("clean", "--older-than", "1d", "--status", "done"), 2, "unknown status")


def set_status(workdir: Path, run_id: str, status: str) -> None:
    path = workdir / run_id / "state.json"
    path.write_text(json.dumps({**json.loads(path.read_text()), "status": status}))


def test_status_alone_selects_runs_of_any_age(cli, runs: Path):
    set_status(runs, "new-done", "failed")  # changed just now: --older-than would keep it

    dry = cli("clean", "--status", "failed", "--dry-run", "--json")
    assert dry.exit_code == 0, dry.output
    assert sorted(json.loads(dry.stdout)["would_remove"]) == ["new-done", "old-failed"]

    result = cli("clean", "--status", "failed")

    assert result.exit_code == 0, result.output
    assert "Removed 2 runs" in result.stdout
    assert sorted(path.name for path in runs.iterdir() if path.is_dir()) == [
        "old-done",
        "old-running",
    ]


def test_status_alone_never_removes_a_run_a_process_holds(cli, runs: Path):
    # A resume that has taken the lock but not yet written "running" still says failed.
    with RunLock(runs / "old-failed" / ".lock", "old-failed"):
        dry = cli("clean", "--status", "failed", "--dry-run", "--json")
        result = cli("clean", "--status", "failed", "--json")

    assert json.loads(dry.stdout) == {"would_remove": []}
    assert result.exit_code == 0, result.output
    assert json.loads(result.stdout) == {"removed": []}
    assert (runs / "old-failed" / "state.json").exists()


def test_clean_needs_an_age_or_a_status_and_refuses_running(cli, runs: Path):
    assert_clean_error(cli("clean"), 2, "--older-than", "--status", "--dry-run")
    assert_clean_error(cli("clean", "--status", "running"), 2, "never removes a running run")
    assert len([path for path in runs.iterdir() if path.is_dir()]) == 4
