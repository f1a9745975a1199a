"""Background runs with real processes: ``--detach``, ``cancel`` (and ``--force``), ``logs -f``,
and ``list`` showing a detached run's progress, or ``interrupted`` once its process is gone.

The pipeline fans out over the input's lines with a Python step that naps per item (the nap is
read from a ``delay`` file) and, from the fourth item on, waits while a ``hold`` file exists:
a run does three items and then stays running exactly as long as a test needs, whatever the
machine's speed. Every item that finishes is appended to ``items.log``, which shows what a
resume repeated.
"""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import threading
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest

from stepline.store.lock import holder, is_locked
from stepline.store.state import load_state
from tests.e2e.test_errors import assert_clean_error
from tests.helpers import eventually, run_pipeline_process, write

ITEMS = [f"item{n:02d}" for n in range(30)]

CONFIG = """
name: background
vars: {team: platform}  # --set team=ops: a name must be declared to be set
steps:
  - id: work
    kind: python
    for_each: input.lines
    concurrency: 1
    function: helpers:nap
  - id: total
    kind: python
    function: helpers:total
"""

HELPERS = """
import asyncio
from pathlib import Path

HERE = Path(__file__).parent
GATE = 3


async def nap(ctx):
    delay = HERE / "delay"
    await asyncio.sleep(float(delay.read_text()) if delay.exists() else 0)
    while ctx.item_index >= GATE and (HERE / "hold").exists():
        await asyncio.sleep(0.02)
    with (HERE / "items.log").open("a") as log:
        log.write(ctx.item + "\\n")
    return ctx.item.upper()


def total(ctx):
    return len(ctx.steps["work"])
"""


@pytest.fixture
def project(tmp_path: Path) -> Iterator[Path]:
    """The pipeline and 30 input lines; items nap 0.3 s and wait at the gate; no run outlives
    its test."""
    write(tmp_path / "pipeline-config.yaml", CONFIG)
    write(tmp_path / "helpers.py", HELPERS)
    write(tmp_path / "in.txt", "\n".join(ITEMS) + "\n")
    (tmp_path / "delay").write_text("0.3")
    (tmp_path / "hold").touch()
    yield tmp_path
    for lock in (tmp_path / ".pipeline").glob("*/.lock"):
        pid = holder(lock)
        if pid is not None and pid != os.getpid():
            os.kill(pid, signal.SIGKILL)


def state_of(folder: Path, run_id: str) -> dict[str, Any]:
    """The state as stepline reads it: the snapshot and the changes logged since."""
    return load_state(folder / ".pipeline" / run_id / "state.json").model_dump(mode="json")


def items_run(folder: Path) -> list[str]:
    log = folder / "items.log"
    return log.read_text().split() if log.exists() else []


def wait_for_row(cli: Any, run_id: str, ready: Callable[[dict[str, Any]], bool]) -> dict[str, Any]:
    """Poll ``pipeline list --json`` until the run's row satisfies ``ready``."""

    def ready_row() -> dict[str, Any]:
        result = cli("list", "--json")
        if result.exit_code != 0:  # fails at once: only "not ready" below is waited out
            pytest.fail(result.output)
        row = next(row for row in json.loads(result.stdout) if row["run_id"] == run_id)
        assert ready(row), f"not ready: {row}"
        return row

    return eventually(ready_row, what=f"run {run_id}'s row to be ready", ignoring=(AssertionError,))


def wait_until_free(folder: Path, run_id: str) -> None:
    lock = folder / ".pipeline" / run_id / ".lock"
    eventually(lambda: not is_locked(lock), what="the run's process to end")


def assert_resume_completes_without_redoing_items(cli: Any, folder: Path, run_id: str) -> None:
    """Resume in the foreground: the items done before the stop are not run again."""
    assert items_run(folder) == ITEMS[:3]
    (folder / "delay").unlink()
    (folder / "hold").unlink()
    resumed = cli("resume", run_id)

    assert resumed.exit_code == 0, resumed.output
    assert state_of(folder, run_id)["status"] == "completed"
    assert items_run(folder) == ITEMS
    output = folder / ".pipeline" / run_id / "steps" / "02-total.json"
    assert json.loads(output.read_text()) == len(ITEMS)


def test_detach_list_cancel_resume(cli, project: Path):
    started = run_pipeline_process(
        "run", "in.txt", "--detach", "--run-id", "bg", "--set", "team=ops", cwd=project
    )

    # The command that started it has exited; the run goes on in its own process.
    assert started.returncode == 0, started.stderr
    assert started.stdout == "bg\n"
    assert "pipeline cancel bg" in started.stderr and "pipeline logs bg -f" in started.stderr
    state = state_of(project, "bg")
    assert state["status"] == "running" and state["vars"] == {"team": "ops"}
    pid = state["pid"]
    row = wait_for_row(cli, "bg", lambda row: row["items_done"] == 3)
    assert (row["status"], row["current_step"], row["pid"]) == ("running", "work", pid)
    assert (row["steps_done"], row["steps_total"], row["items_total"]) == (0, 2, len(ITEMS))
    listing = cli("list")
    assert "running" in listing.stdout and f"/{len(ITEMS)} items" in listing.stdout

    cancelled = cli("cancel", "bg")

    assert cancelled.exit_code == 0, cancelled.output
    assert f"SIGTERM to process {pid}" in cancelled.stdout
    assert "interrupted" in cancelled.stdout and "pipeline resume bg" in cancelled.stdout
    assert state_of(project, "bg")["status"] == "interrupted"
    assert not is_locked(project / ".pipeline" / "bg" / ".lock")
    again = cli("cancel", "bg", "--json")
    assert again.exit_code == 0, again.output
    assert json.loads(again.stdout) == {
        "run_id": "bg",
        "was_running": False,
        "pid": None,
        "signal": None,
        "status": "interrupted",
        "batches_canceled": [],
    }
    assert_resume_completes_without_redoing_items(cli, project, "bg")


def test_cancel_force_kills_and_the_run_resumes(cli, project: Path):
    started = cli("run", "in.txt", "--detach", "--run-id", "f", "--json")
    assert started.exit_code == 0, started.output
    info = json.loads(started.stdout)
    assert Path(info["log"]) == Path(".pipeline/f/detached.log")
    wait_for_row(cli, "f", lambda row: row["items_done"] == 3)

    cancelled = cli("cancel", "f", "--force", "--json")

    assert cancelled.exit_code == 0, cancelled.output
    report = json.loads(cancelled.stdout)
    assert report["pid"] == info["pid"] and report["signal"] == "SIGKILL"
    assert report["status"] == "interrupted"
    assert state_of(project, "f")["status"] == "running"  # killed: it recorded nothing more
    assert_resume_completes_without_redoing_items(cli, project, "f")


def test_a_killed_detached_run_lists_as_interrupted(cli, project: Path):
    started = cli("run", "in.txt", "--detach", "--run-id", "k", "--json")
    assert started.exit_code == 0, started.output
    pid = json.loads(started.stdout)["pid"]
    twice = cli("resume", "k", "--detach")  # the second process reports the lock, and ends
    assert_clean_error(twice, 2, f'run "k" is in use by process {pid}')
    assert json.loads((project / ".pipeline" / "k" / "state.json").read_text())["pid"] == pid

    os.kill(pid, signal.SIGKILL)
    wait_until_free(project, "k")

    row = wait_for_row(cli, "k", lambda row: True)
    assert row["status"] == "interrupted"
    assert (row["current_step"], row["pid"], row["items_done"]) == (None, None, None)
    logs = cli("logs", "k")
    assert logs.exit_code == 0, logs.output
    assert "run started" in logs.stdout
    assert "ended without recording how" in logs.stdout  # then the detached log's tail
    assert "[1/2] work..." in logs.stdout.split("ended without recording how")[1]


def test_logs_follow_ends_when_the_run_ends(cli, project: Path):
    (project / "delay").unlink()  # the gate keeps it running until the follower follows
    started = cli("run", "in.txt", "--detach", "--run-id", "l")
    assert started.exit_code == 0, started.output
    follower = subprocess.Popen(
        [sys.executable, "-m", "stepline", "logs", "l", "-f"],
        cwd=project,
        stdin=subprocess.DEVNULL,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )
    try:
        lines = read_lines_in_background(follower)

        def following_the_step() -> bool:
            if follower.poll() is not None:  # fails at once: only the line is waited for
                pytest.fail(follower.stderr.read() if follower.stderr else "")
            assert any("[1/2] work..." in line for line in lines), lines
            return True

        eventually(following_the_step, what="the step's line", ignoring=(AssertionError,))
        assert follower.poll() is None  # still following: the run is waiting

        (project / "hold").unlink()
        assert follower.wait(timeout=15) == 0
    finally:
        follower.kill()
        follower.wait()

    assert state_of(project, "l")["status"] == "completed"
    assert lines[0].split(" ", 1)[1].startswith("run started")
    assert "✓ [1/2] work" in "\n".join(lines)
    assert lines[-1].endswith("run completed")
    raw = cli("logs", "l", "--json")
    events_file = (project / ".pipeline" / "l" / "events.jsonl").read_text().splitlines()
    assert raw.stdout.splitlines() == events_file
    assert "item_progress" in {json.loads(line)["type"] for line in events_file}


def read_lines_in_background(process: subprocess.Popen[str]) -> list[str]:
    """The process's stdout lines, appended to the returned list as they arrive."""
    lines: list[str] = []

    def pump() -> None:
        assert process.stdout is not None
        for line in process.stdout:
            lines.append(line.rstrip("\n"))

    threading.Thread(target=pump, daemon=True).start()
    return lines


def test_detach_reports_a_bad_config_and_leaves_nothing(cli, project: Path):
    write(project / "bad.yaml", "name: bad\nsteps:\n  - {id: x, kind: python, functon: a:b}\n")

    result = cli("run", "in.txt", "--detach", "-c", "bad.yaml", "--run-id", "b")

    assert_clean_error(result, 2, "functon")
    assert result.stdout == ""
    workdir = project / ".pipeline"
    assert not (workdir / "b").exists()
    assert [path.name for path in workdir.iterdir()] == []  # no log left behind


@pytest.mark.parametrize(
    ("args", "fragment"),
    [
        (["resume", "nope", "--detach"], 'no run "nope"'),
        (["run", "in.txt", "--detach", "--dry-run"], "cannot be combined"),
        (["cancel", "nope"], 'no run "nope"'),
        (["logs", "nope"], 'no run "nope"'),
    ],
)
def test_background_commands_refuse_bad_input(cli, project: Path, args: list[str], fragment: str):
    assert_clean_error(cli(*args), 2, fragment)


def test_cancel_never_signals_a_pid_left_in_a_free_lock_file(cli, project: Path):
    (project / "hold").unlink()
    (project / "delay").unlink()
    assert cli("run", "in.txt", "--run-id", "done").exit_code == 0
    bystander = subprocess.Popen([sys.executable, "-c", "import time; time.sleep(30)"])
    try:  # as if the run's process had died and its pid gone to an unrelated process
        (project / ".pipeline" / "done" / ".lock").write_text(f"{bystander.pid}\n")

        result = cli("cancel", "done")

        assert result.exit_code == 0, result.output
        assert "not running (completed); nothing to cancel" in result.stdout
        assert bystander.poll() is None
    finally:
        bystander.kill()
        bystander.wait()
