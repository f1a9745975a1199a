"""Steps as a graph through the real command and the fake Anthropic server: independent steps'
requests are at the server at the same time and the join comes after them; Ctrl-C with two
steps in flight; the dry run's graph; and the new keys' bad values."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import threading
from collections import Counter
from pathlib import Path

import pytest

from tests.e2e.test_errors import assert_clean_error
from tests.fakes import FakeLLMServer, RecordedRequest, Reply
from tests.helpers import SENTINEL_KEY, run_pipeline_process, write

FAN_IN = """
name: fan-in
llm: {model: claude-haiku-4-5, max_tokens: 100, retry: {attempts: 1}}
steps:
  - {id: first, kind: llm, prompt: "First {{ input.text }}"}
  - {id: a, kind: llm, prompt: "A {{ steps.first }}"}
  - {id: b, kind: llm, prompt: "B {{ steps.first }}"}
  - {id: c, kind: llm, prompt: "C {{ steps.first }}"}
  - {id: join, kind: llm, prompt: "Join {{ steps.a }} {{ steps.b }} {{ steps.c }}"}
"""


@pytest.fixture
def fan_in(tmp_path: Path) -> Path:
    write(tmp_path / "pipeline-config.yaml", FAN_IN)
    write(tmp_path / "in.txt", "x")
    return tmp_path


class AllAtOnce:
    """Answers a, b and c only once all three are at the server: run one after another, they
    never would be, and the barrier would break (each then fails, and so does the test)."""

    def __init__(self) -> None:
        self.barrier = threading.Barrier(3, timeout=30)
        self.answered: list[str] = []
        self.join_saw: list[str] = []

    def __call__(self, request: RecordedRequest) -> Reply:
        word = request.prompt.split()[0]
        if word in ("A", "B", "C"):
            self.barrier.wait()
        if word == "Join":
            self.join_saw = sorted(self.answered)
        self.answered.append(word)
        return Reply(text=word.lower())


def test_independent_steps_are_at_the_server_at_once_and_the_join_comes_after(
    cli, fan_in: Path, fake_llm: FakeLLMServer
):
    server = AllAtOnce()
    fake_llm.responder = server

    result = cli("run", "in.txt", "--run-id", "r", "--workdir", str(fan_in / ".pipeline"), "-c",
                 str(fan_in / "pipeline-config.yaml"))  # fmt: skip

    assert result.exit_code == 0, result.stderr
    assert server.join_saw == ["A", "B", "C", "First"]  # the join after all three replies
    prompts = [request.prompt for request in fake_llm.requests]
    assert prompts[0] == "First x" and prompts[-1] == "Join a b c"
    assert sorted(prompts[1:4]) == ["A first", "B first", "C first"]


def test_jobs_1_would_never_have_them_at_once(cli, fan_in: Path, fake_llm: FakeLLMServer):
    """The other side of the test above: the barrier really does need them together."""
    server = AllAtOnce()
    server.barrier = threading.Barrier(3, timeout=0.5)
    fake_llm.responder = server

    result = cli("run", "in.txt", "--run-id", "r", "--jobs", "1", "--workdir",
                 str(fan_in / ".pipeline"), "-c", str(fan_in / "pipeline-config.yaml"))  # fmt: skip

    assert result.exit_code == 1
    assert [request.prompt for request in fake_llm.requests] == ["First x", "A first"]
    fake_llm.errors.clear()  # the broken barrier, raised in the responder on purpose


def test_ctrl_c_with_two_steps_in_flight_then_resume_asks_only_those_again(
    tmp_path: Path, fake_llm: FakeLLMServer
):
    write(tmp_path / "pipeline-config.yaml", FAN_IN.replace(
        '  - {id: c, kind: llm, prompt: "C {{ steps.first }}"}\n', "").replace(
        " {{ steps.c }}", ""))  # fmt: skip
    write(tmp_path / "in.txt", "x")
    both_in_flight = threading.Barrier(3, timeout=30)
    release = threading.Event()

    def hold(request: RecordedRequest) -> Reply:
        if request.prompt.split()[0] in ("A", "B"):
            both_in_flight.wait()
            release.wait(30)
        return Reply(text="ok")

    fake_llm.responder = hold
    process = subprocess.Popen(
        [sys.executable, "-m", "stepline", "run", "in.txt", "--run-id", "r"],
        cwd=tmp_path,
        env={**os.environ, "ANTHROPIC_API_KEY": SENTINEL_KEY},
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        stdin=subprocess.DEVNULL,
        text=True,
    )
    try:
        both_in_flight.wait()  # a's and b's requests are both at the server
        process.send_signal(signal.SIGINT)
        _, stderr = process.communicate(timeout=30)
    finally:
        release.set()
        if process.poll() is None:
            process.kill()

    assert process.returncode == 130, stderr
    state = json.loads(run_pipeline_process("show", "r", "--json", cwd=tmp_path).stdout)
    assert [(step["id"], step["status"]) for step in state["steps"]] == [
        ("first", "completed"),
        ("a", "pending"),
        ("b", "pending"),
        ("join", "pending"),
    ]

    fake_llm.responder = lambda request: Reply(text="ok")
    resumed = run_pipeline_process("resume", "r", cwd=tmp_path)

    assert resumed.returncode == 0, resumed.stderr
    asked = Counter(request.prompt for request in fake_llm.requests)
    assert asked == Counter({"First x": 1, "A ok": 2, "B ok": 2, "Join ok ok": 1})


def test_the_dry_run_shows_what_each_step_waits_for_and_what_can_run_together(cli, fan_in: Path):
    config = str(fan_in / "pipeline-config.yaml")
    workdir = str(fan_in / ".pipeline")

    shown = cli("run", str(fan_in / "in.txt"), "-c", config, "--workdir", workdir, "--dry-run")
    as_json = cli("run", str(fan_in / "in.txt"), "-c", config, "--workdir", workdir,
                  "--dry-run", "--json", "--jobs", "2")  # fmt: skip

    assert shown.exit_code == 0, shown.stderr
    plan = shown.stdout[: shown.stdout.index("└")]  # the plan table, before the LLM ones
    cells = [line.split("│") for line in plan.splitlines() if line.startswith("│")]
    rows = {row[2].strip(): row[4].strip() for row in cells}
    assert rows == {"first": "-", "a": "first", "b": "first", "c": "first", "join": "a, b, c"}
    assert "Can run together: a, b, c (at most 4 steps at once)" in shown.stdout
    assert "Critical path: first → a → join (3 of the 5 steps that run)" in shown.stdout
    preview = json.loads(as_json.stdout)
    assert preview["graph"] == {
        "max_parallel_steps": 2,
        "waves": [["first"], ["a", "b", "c"], ["join"]],
        "critical_path": ["first", "a", "join"],
    }
    assert preview["plan"][4]["waits_for"] == ["a", "b", "c"]
    assert not (fan_in / ".pipeline").exists()


@pytest.mark.parametrize(
    ("setting", "where", "words"),
    [
        ("max_parallel_steps: 0", "pipeline-config.yaml:2", "max_parallel_steps"),
        ("max_parallel_steps: many", "pipeline-config.yaml:2", "max_parallel_steps"),
    ],
)
def test_a_bad_max_parallel_steps_is_refused_with_its_line(
    cli, tmp_path: Path, setting: str, where: str, words: str
):
    write(tmp_path / "pipeline-config.yaml",
          f"name: p\n{setting}\nsteps:\n  - {{id: s, kind: shell, command: [echo]}}\n")  # fmt: skip
    write(tmp_path / "in.txt", "x")

    assert_clean_error(cli("validate"), 2, where, words)
    assert_clean_error(cli("run", "in.txt"), 2, where, words)
    assert not (tmp_path / ".pipeline").exists()


def test_a_needs_entry_naming_a_later_step_is_refused_before_any_run_folder(cli, tmp_path: Path):
    write(tmp_path / "pipeline-config.yaml", """name: p
steps:
  - id: first
    kind: shell
    command: [echo, one]
    needs: [second]
  - {id: second, kind: shell, command: [echo, two]}
""")  # fmt: skip
    write(tmp_path / "in.txt", "x")

    result = cli("run", "in.txt")

    assert_clean_error(
        result, 2, "pipeline-config.yaml:6", 'step "first" needs: "second" runs later'
    )
    assert not (tmp_path / ".pipeline").exists()


@pytest.mark.parametrize("jobs", ["0", "65", "two"])
def test_a_bad_jobs_value_is_a_usage_error(cli, fan_in: Path, jobs: str):
    result = cli("run", str(fan_in / "in.txt"), "-c", str(fan_in / "pipeline-config.yaml"),
                 "--jobs", jobs)  # fmt: skip

    assert result.exit_code == 2
    assert "--jobs" in result.stderr and "Traceback" not in result.stderr
