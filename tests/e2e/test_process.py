"""The real command in a child process: kill -9, SIGTERM, SIGINT, the run lock, lazy imports."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest

from stepline.store.state import load_state
from tests.fakes import FakeLLMServer, Reply
from tests.helpers import eventually, heavy_modules_imported_by, run_pipeline_process, write

SLOW_PIPELINE = """
name: slow
llm: {model: claude-test-model}
steps:
  - id: prepare
    kind: shell
    command: ["python3", "-c", "open('calls.log','a').write('prepare\\\\n'); print(7)"]
  - id: ask
    kind: llm
    prompt: "Number {{ steps.prepare }}"
  - id: wait
    kind: shell
    command: ["python3", "slow.py"]
  - id: after
    kind: shell
    command: echo "{{ steps.wait }}"
"""

ASK_PIPELINE = """
name: ask
llm: {model: claude-test-model, cache: {enabled: false}}
steps:
  - id: ask
    kind: llm
    for_each: input.lines
    prompt: "Say {{ item }}"
"""

SLOW_SCRIPT = """
import os, time
from pathlib import Path
Path("wait.started").touch()
if Path("slow").exists():
    time.sleep(60)
print("waited")
"""


@pytest.fixture
def slow_pipeline(tmp_path: Path, fake_llm: FakeLLMServer) -> Path:
    write(tmp_path / "pipeline-config.yaml", SLOW_PIPELINE)
    write(tmp_path / "slow.py", SLOW_SCRIPT)
    write(tmp_path / "in.txt", "input")
    (tmp_path / "slow").touch()
    fake_llm.responder = lambda request: Reply(text="answer")
    return tmp_path


def start_run(folder: Path, run_id: str) -> subprocess.Popen[str]:
    return subprocess.Popen(
        [sys.executable, "-m", "stepline", "run", "in.txt", "--run-id", run_id],
        cwd=folder,
        stdin=subprocess.DEVNULL,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )


def wait_for(path: Path, process: subprocess.Popen[str]) -> None:
    def appeared() -> bool:
        if process.poll() is not None:
            raise AssertionError(f"run ended early: {process.communicate()}")
        return path.exists()

    eventually(appeared, what=f"{path} to appear")


def state_of(folder: Path, run_id: str) -> dict:
    """The state as stepline reads it: the snapshot and the changes logged since."""
    return load_state(folder / ".pipeline" / run_id / "state.json").model_dump(mode="json")


def test_killed_run_resumes_without_repeating_completed_work(
    slow_pipeline: Path, fake_llm: FakeLLMServer
):
    process = start_run(slow_pipeline, "k")
    wait_for(slow_pipeline / "wait.started", process)
    process.kill()
    process.wait()

    state = state_of(slow_pipeline, "k")
    assert state["status"] == "running"
    assert [s["status"] for s in state["steps"]] == ["completed", "completed", "running", "pending"]
    listing = run_pipeline_process("list", "--json", cwd=slow_pipeline)
    assert json.loads(listing.stdout)[0]["status"] == "interrupted"

    (slow_pipeline / "slow").unlink()
    resumed = run_pipeline_process("resume", "k", cwd=slow_pipeline)

    assert resumed.returncode == 0, resumed.stderr
    assert fake_llm.count() == 1
    assert (slow_pipeline / "calls.log").read_text().split() == ["prepare"]
    assert state_of(slow_pipeline, "k")["status"] == "completed"


@pytest.mark.parametrize(("sig", "code"), [(signal.SIGTERM, 143), (signal.SIGINT, 130)])
def test_signal_stops_the_run_gracefully(slow_pipeline: Path, sig: int, code: int):
    process = start_run(slow_pipeline, "s")
    wait_for(slow_pipeline / "wait.started", process)

    process.send_signal(sig)
    stdout, stderr = process.communicate(timeout=30)

    assert process.returncode == code, stderr
    state = state_of(slow_pipeline, "s")
    assert state["status"] == "interrupted"
    assert [s["status"] for s in state["steps"]] == ["completed", "completed", "pending", "pending"]
    assert "interrupted" in stdout and "pipeline resume s" in stdout
    (slow_pipeline / "slow").unlink()
    assert run_pipeline_process("resume", "s", cwd=slow_pipeline).returncode == 0


def test_second_process_cannot_run_the_same_run(slow_pipeline: Path):
    process = start_run(slow_pipeline, "locked")
    try:
        wait_for(slow_pipeline / "wait.started", process)

        second = run_pipeline_process("resume", "locked", cwd=slow_pipeline)

        assert second.returncode == 2
        assert f'run "locked" is in use by process {process.pid}' in second.stderr
        assert "Traceback" not in second.stderr
    finally:
        process.kill()
        process.wait()
    (slow_pipeline / "slow").unlink()
    assert run_pipeline_process("resume", "locked", cwd=slow_pipeline).returncode == 0


@pytest.mark.parametrize("args", [["--help"], ["list"]])
def test_help_and_list_do_not_import_the_heavy_libraries(tmp_path: Path, args: list[str]):
    assert heavy_modules_imported_by(args, tmp_path) == []


def test_help_does_not_read_the_settings(tmp_path: Path):
    assert heavy_modules_imported_by(["--help"], tmp_path, ("pydantic_settings",)) == []


def test_unstreamed_llm_calls_do_not_import_the_sdk(tmp_path: Path, fake_llm: FakeLLMServer):
    """Unstreamed Anthropic calls go over stepline's own HTTP client: a run (and a resume)
    reaches its first request without the SDK's import, which takes seconds."""
    write(tmp_path / "pipeline-config.yaml", ASK_PIPELINE)
    write(tmp_path / "in.txt", "a\nb\n")

    assert heavy_modules_imported_by(["run", "in.txt"], tmp_path, ("anthropic",)) == []

    assert sorted(request.prompt for request in fake_llm.requests) == ["Say a", "Say b"]
    streamed = ASK_PIPELINE.replace(
        "cache: {enabled: false}", "cache: {enabled: false}, stream: true"
    )
    write(tmp_path / "streamed.yaml", streamed)
    args = ["run", "in.txt", "-c", "streamed.yaml"]
    assert heavy_modules_imported_by(args, tmp_path, ("anthropic",)) == ["anthropic"]
    assert len(fake_llm.requests) == 4 and fake_llm.requests[-1].stream


def test_dry_run_writes_nothing(tmp_path: Path):
    write(tmp_path / "pipeline-config.yaml", SLOW_PIPELINE)
    write(tmp_path / "in.txt", "input")
    before = sorted(os.listdir(tmp_path))

    result = run_pipeline_process("run", "in.txt", "--dry-run", cwd=tmp_path)

    assert result.returncode == 0, result.stderr
    assert "not run yet" in result.stdout
    assert "ANTHROPIC_API_KEY is not set" in result.stdout
    assert sorted(os.listdir(tmp_path)) == before


SHELL_PIPELINE = """
name: shell
steps:
  - id: work
    kind: shell
    command:
      - sh
      - -c
      - >-
        echo $$ > leader.pid;
        if [ -e slow ]; then sleep 60 & echo $! > child.pid; wait; fi;
        echo done
"""


LINUX_ONLY = pytest.mark.skipif(
    not Path("/proc/self/stat").exists(), reason="process groups are noted on Linux"
)


def alive(pid: int) -> bool:
    """Whether ``pid`` runs (a zombie waiting for its parent to reap it does not)."""
    try:
        stat = Path(f"/proc/{pid}/stat").read_text()
    except FileNotFoundError:
        return False
    return stat.rpartition(")")[2].split()[0] != "Z"


def wait_until_gone(*pids: int) -> None:
    def all_ended() -> bool:
        running = [pid for pid in pids if alive(pid)]
        assert not running, f"still running: {running}"
        return True

    eventually(all_ended, what=f"processes {list(pids)} to end", ignoring=(AssertionError,))


@pytest.fixture
def shell_pipeline(tmp_path: Path) -> Path:
    write(tmp_path / "pipeline-config.yaml", SHELL_PIPELINE)
    write(tmp_path / "in.txt", "input")
    (tmp_path / "slow").touch()
    return tmp_path


def started_shell_step(folder: Path, run_id: str) -> tuple[subprocess.Popen[str], int, int]:
    """A run whose shell step (a ``sh`` and the ``sleep`` it started) is under way."""
    process = start_run(folder, run_id)
    wait_for(folder / "child.pid", process)
    leader = int((folder / "leader.pid").read_text())  # written before child.pid was created
    # The shell creates child.pid before it writes the pid into it.
    child = eventually(
        lambda: int((folder / "child.pid").read_text()), what="child.pid", ignoring=(ValueError,)
    )
    assert alive(leader) and alive(child)
    return process, leader, child


@LINUX_ONLY
def test_a_resume_stops_what_a_killed_runner_left_running(shell_pipeline: Path):
    process, leader, child = started_shell_step(shell_pipeline, "k")
    process.kill()
    process.wait()
    time.sleep(0.2)
    assert alive(leader) and alive(child)  # nobody stopped the step's process group

    (shell_pipeline / "slow").unlink()
    resumed = run_pipeline_process("resume", "k", cwd=shell_pipeline)

    assert resumed.returncode == 0, resumed.stderr
    wait_until_gone(leader, child)
    events = (shell_pipeline / ".pipeline/k/events.jsonl").read_text()
    assert "stopped 1 process group(s) of shell steps" in events
    assert not any((shell_pipeline / ".pipeline/k/processes").iterdir())


@LINUX_ONLY
def test_cancel_force_stops_the_shell_steps_processes(shell_pipeline: Path):
    process, leader, child = started_shell_step(shell_pipeline, "c")

    cancelled = run_pipeline_process("cancel", "c", "--force", cwd=shell_pipeline)

    assert cancelled.returncode == 0, cancelled.stderr
    process.wait(timeout=10)
    wait_until_gone(leader, child)
    (shell_pipeline / "slow").unlink()
    assert run_pipeline_process("resume", "c", cwd=shell_pipeline).returncode == 0


def test_a_noted_pid_that_now_names_another_process_is_left_alone(tmp_path: Path):
    """A pid noted by a killed runner may have been given to another process since: its
    start time differs, so it is not signalled."""
    from stepline.processes import ProcessGroups

    other = subprocess.Popen(["sleep", "30"], start_new_session=True)
    try:
        (tmp_path / str(other.pid)).write_text("1")  # noted with another start time
        assert ProcessGroups(tmp_path).stop_all() == 0
        time.sleep(0.1)  # a signal wrongly sent would have landed (late only hides a bug)
        assert other.poll() is None
        assert not (tmp_path / str(other.pid)).exists()
    finally:
        other.kill()
        other.wait()
