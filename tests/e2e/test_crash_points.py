"""Crash safety at the exact moments that matter, through the named crash points of
``stepline.faults``: the process kills itself there (SIGKILL, no cleanup), then a resume must
finish with the outputs of an uninterrupted run, sending again only what the crash caught in
flight. A random kill rarely lands in these windows; ``test_crash_loop.py`` covers the rest."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
from collections import Counter
from pathlib import Path

import pytest

from stepline.store.atomic import TEMP_PREFIX
from stepline.store.state import RunStatus, load_state
from tests.fakes import FakeLLMServer, Reply
from tests.helpers import SENTINEL_KEY, run_pipeline_process, write

CONFIG = """
name: points
concurrency: 1
llm:
  model: claude-haiku-4-5
  retry: {attempts: 1}
steps:
  - id: first
    kind: llm
    prompt: "First {{ input.text.split() | length }}"
  - id: each
    kind: llm
    for_each: input.lines
    item_key: "{{ item }}"
    prompt: "Each {{ item }}"
    needs: [first]  # one step at a time: each point below is the n-th of one sequence
  - id: last
    kind: python
    function: helpers:last
"""

HELPERS = """
def last(ctx):
    return {"first": ctx.steps["first"], "each": ctx.steps["each"]}
"""

# Arms a crash point in the child process only: nothing a user can set reaches faults.arm.
WRAPPER = (
    "import sys; from stepline import faults; faults.arm(sys.argv[1], after=int(sys.argv[2])); "
    "from stepline.cli.app import main; main(sys.argv[3:])"
)
PROMPTS = ["First 3", "Each a", "Each b", "Each c"]


@pytest.fixture
def project(tmp_path: Path, fake_llm: FakeLLMServer) -> Path:
    fake_llm.responder = lambda request: Reply(text=f"re: {request.prompt}")
    write(tmp_path / "pipeline-config.yaml", CONFIG)
    write(tmp_path / "helpers.py", HELPERS)
    write(tmp_path / "in.txt", "a\nb\nc\n")
    return tmp_path


# Three steps that start together, then one that needs them all.
PARALLEL = """
name: points
concurrency: 1
llm:
  model: claude-haiku-4-5
  retry: {attempts: 1}
steps:
  - {id: one, kind: llm, prompt: "One {{ input.text | length }}"}
  - {id: each, kind: llm, for_each: input.lines, item_key: "{{ item }}", prompt: "Each {{ item }}"}
  - {id: two, kind: llm, prompt: "Two {{ input.text | length }}"}
  - {id: last, kind: python, function: helpers:all_three, needs: [one, each, two]}
"""
PARALLEL_HELPERS = """
def all_three(ctx):
    return [ctx.steps["one"], ctx.steps["each"], ctx.steps["two"]]
"""


def crash_at(
    project: Path, point: str, after: int, input_name: str = "in.txt"
) -> subprocess.CompletedProcess[str]:
    """``pipeline run INPUT --run-id r`` in a child process that dies at ``point``."""
    return subprocess.run(
        [sys.executable, "-c", WRAPPER, point, str(after), "run", input_name, "--run-id", "r"],
        cwd=project,
        env={**os.environ, "ANTHROPIC_API_KEY": SENTINEL_KEY},
        capture_output=True,
        text=True,
        timeout=60,
        stdin=subprocess.DEVNULL,
    )


def requests(fake_llm: FakeLLMServer) -> Counter[str]:
    return Counter(request.prompt for request in fake_llm.requests)


UNINTERRUPTED = {"first": "re: First 3", "each": ["re: Each a", "re: Each b", "re: Each c"]}


@pytest.mark.parametrize(
    ("point", "after", "sent_twice", "cut_short"),
    [
        # the second item's intent row is committed; its request was never sent
        ("item-intent-committed", 1, [], 1),
        # the first step's reply arrived and died with the process: it is asked again
        ("reply-received", 0, ["First 3"], 0),
        # the second item's reply arrived, not committed: only that item is asked again
        ("reply-received", 2, ["Each b"], 1),
        # a state change dies before it is appended: the reply is in the cache, nothing is
        # resent (the third change: "each" completed and "last" started)
        ("before-append:state-changes.jsonl", 2, [], 0),
        # the run's final snapshot dies before its rename: the change log still holds every
        # step's end, so the resume asks nothing again
        ("before-rename:state.json", 1, [], 0),
        # the first step's output dies before its rename: answered again from the cache
        ("before-rename:01-first.json", 0, [], 0),
    ],
)
def test_a_crash_at_a_named_point_loses_nothing_and_resends_only_what_was_in_flight(
    project: Path,
    fake_llm: FakeLLMServer,
    point: str,
    after: int,
    sent_twice: list[str],
    cut_short: int,
):
    crashed = crash_at(project, point, after)

    assert crashed.returncode == -signal.SIGKILL, crashed.stderr
    run = project / ".pipeline" / "r"
    assert load_state(run / "state.json").status == RunStatus.RUNNING  # parses; nobody holds it
    if point.startswith("before-rename:"):
        assert list(run.rglob(f"{TEMP_PREFIX}{point.partition(':')[2]}.*")), "the torn write"

    resumed = run_pipeline_process("resume", "r", cwd=project)

    assert resumed.returncode == 0, resumed.stderr
    assert json.loads((run / "steps" / "03-last.json").read_text()) == UNINTERRUPTED
    assert requests(fake_llm) == Counter({prompt: 1 + (prompt in sent_twice) for prompt in PROMPTS})
    if cut_short:
        assert f"{cut_short} item(s) were cut short last time" in resumed.stdout + resumed.stderr
    assert not list(run.rglob(f"{TEMP_PREFIX}*")), "the crash's temp files are cleaned up"


def test_an_unarmed_point_is_passed_by(project: Path, fake_llm: FakeLLMServer):
    finished = crash_at(project, "no-such-point", 0)

    assert finished.returncode == 0, finished.stderr
    assert requests(fake_llm) == Counter(PROMPTS)


def test_after_a_kill_and_a_resume_every_view_counts_the_calls_that_were_made(
    project: Path, fake_llm: FakeLLMServer
):
    """state.json saves the usage with its next write; the call log has every call. A kill
    between the two must not leave list, show or the resumed run with fewer requests."""
    crashed = crash_at(project, "item-intent-committed", 2)  # "Each a" and "Each b" answered
    assert crashed.returncode == -signal.SIGKILL, crashed.stderr
    env = {"ANTHROPIC_API_KEY": SENTINEL_KEY}

    def views() -> tuple[int, int, int]:
        listed = json.loads(run_pipeline_process("list", "--json", cwd=project, env=env).stdout)
        shown = json.loads(run_pipeline_process("show", "r", "--json", cwd=project, env=env).stdout)
        calls = (project / ".pipeline/r/llm-calls.jsonl").read_text().splitlines()
        return listed[0]["requests"], shown["usage"]["requests"], len(calls)

    assert views() == (3, 3, 3)
    assert (
        json.loads(run_pipeline_process("list", "--json", cwd=project, env=env).stdout)[0][
            "duration_s"
        ]
        > 0
    )  # to the last write, not the state's last save

    resumed = run_pipeline_process("resume", "r", "--json", cwd=project, env=env)

    assert resumed.returncode == 0, resumed.stderr
    assert views() == (4, 4, 4)
    assert load_state(project / ".pipeline/r/state.json").usage.requests == 4


@pytest.mark.parametrize(
    ("point", "after", "running"),
    [
        # the third step's start dies as it is appended: the first two are marked running
        # (every start is written before any of their requests goes out)
        ("before-append:state-changes.jsonl", 2, ["one", "each"]),
        # the run's final snapshot dies before its rename: the log holds every LLM step's
        # end; the last step's end was to be saved with that snapshot, so it runs again
        ("before-rename:state.json", 1, ["last"]),
    ],
)
def test_a_crash_with_steps_running_at_once_loses_nothing_and_sends_nothing_twice(
    tmp_path: Path, fake_llm: FakeLLMServer, point: str, after: int, running: list[str]
):
    fake_llm.responder = lambda request: Reply(text=f"re: {request.prompt}")
    write(tmp_path / "pipeline-config.yaml", PARALLEL)
    write(tmp_path / "helpers.py", PARALLEL_HELPERS)
    write(tmp_path / "in.txt", "a\nb\nc\n")

    crashed = crash_at(tmp_path, point, after)

    assert crashed.returncode == -signal.SIGKILL, crashed.stderr
    run = tmp_path / ".pipeline" / "r"
    state = load_state(run / "state.json")
    assert [step.id for step in state.steps if step.status == "running"] == running

    resumed = run_pipeline_process("resume", "r", cwd=tmp_path)

    assert resumed.returncode == 0, resumed.stderr
    assert json.loads((run / "steps" / "04-last.json").read_text()) == [
        "re: One 6",
        ["re: Each a", "re: Each b", "re: Each c"],
        "re: Two 6",
    ]
    assert requests(fake_llm) == Counter(["One 6", "Each a", "Each b", "Each c", "Two 6"])
