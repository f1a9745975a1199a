"""Crash safety, proven: kill -9 a run at random moments until it completes.

A run with Python, LLM and fan-out steps is killed with SIGKILL at seeded random moments and
resumed each time, until it completes (the first kill comes after a seeded number of requests,
so it lands mid-run however busy the machine is; later ones at seeded times). Then: its
outputs equal those of an uninterrupted run; state.json parsed after every kill; and no LLM
request was sent more often than once plus once per kill (a request in flight at a kill may be
sent again: LLM APIs take no idempotency key). Kept short here (a few kills);
``STEPLINE_CRASH_LOOPS`` raises the number of seeds.
"""

from __future__ import annotations

import json
import os
import random
import signal
import subprocess
import sys
import threading
import time
from collections import Counter
from pathlib import Path

import pytest

from stepline.store.state import load_state
from tests.fakes import FakeLLMServer, Reply
from tests.fakes.llm_server import RecordedRequest
from tests.helpers import write

CONFIG = """
name: crashy
concurrency: 4
llm:
  model: claude-haiku-4-5
  retry: {attempts: 2, initial_delay: 1ms, max_delay: 5ms}
  cache: {enabled: false}
steps:
  - id: make
    kind: python
    function: helpers:make
  - id: ask
    kind: llm
    for_each: "{{ steps.make }}"
    item_key: "{{ item }}"
    prompt: "Describe {{ item }}"
  - id: shout
    kind: python
    for_each: "{{ steps.ask }}"
    function: helpers:shout
  - id: sum
    kind: llm
    prompt: "Summarise {{ steps.shout | length }} items: {{ steps.shout | join(', ') }}"
"""

# The same work as a graph: "tag" runs beside "ask", so a kill lands with two fan-outs (and
# their items) in flight at once.
GRAPH = CONFIG.replace(
    "  - id: shout\n",
    """  - id: tag
    kind: llm
    for_each: "{{ steps.make }}"
    item_key: "{{ item }}"
    prompt: "Tag {{ item }}"
  - id: shout
""",
)
# The graph with its Python steps on worker processes: kills land with items on workers too.
PROCESSES = GRAPH.replace("concurrency: 4\n", "concurrency: 4\nexecutor: processes\nworkers: 2\n")
REQUESTS = {CONFIG: 25, GRAPH: 49, PROCESSES: 49}  # uninterrupted: 24 per fan-out + 1
IN_FLIGHT = {CONFIG: 4, GRAPH: 8, PROCESSES: 8}  # at most, at a kill: 4 per fan-out running

HELPERS = """
def make(ctx):
    return [f"thing-{number}" for number in range(24)]

def shout(ctx):
    return ctx.item.upper()
"""

SEEDS = int(os.environ.get("STEPLINE_CRASH_LOOPS", "2"))


class Counting:
    """Answers deterministically after a short delay, counting requests per prompt."""

    def __init__(self) -> None:
        self.counts: Counter[str] = Counter()
        self.lock = threading.Lock()

    def __call__(self, request: RecordedRequest) -> Reply:
        with self.lock:
            self.counts[request.prompt] += 1
        return Reply(text=f"about {request.prompt[-12:]}", delay=0.15)


def start(folder: Path, *args: str) -> subprocess.Popen[str]:
    return subprocess.Popen(
        [sys.executable, "-m", "stepline", *args, "--no-pause"],
        cwd=folder,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.PIPE,
        stdin=subprocess.DEVNULL,
        text=True,
    )


def wait_for_requests(counting: Counting, number: int, process: subprocess.Popen[str]) -> None:
    """Until the server has seen ``number`` requests (the run is then surely mid-way)."""
    deadline = time.monotonic() + 60
    while sum(counting.counts.values()) < number and time.monotonic() < deadline:
        assert process.poll() is None, "the run ended before the kill"
        time.sleep(0.005)


def outputs(folder: Path, run_id: str) -> dict[str, object]:
    steps = folder / ".pipeline" / run_id / "steps"
    return {path.name: json.loads(path.read_text()) for path in sorted(steps.glob("*.json"))}


@pytest.mark.parametrize("config", [CONFIG, GRAPH, PROCESSES], ids=["chain", "graph", "processes"])
@pytest.mark.parametrize("seed", range(SEEDS))
def test_runs_killed_at_random_moments_finish_with_the_same_outputs(
    fake_llm: FakeLLMServer, tmp_path: Path, seed: int, config: str
):
    write(tmp_path / "pipeline-config.yaml", config)
    write(tmp_path / "helpers.py", HELPERS)
    write(tmp_path / "in.txt", "x")
    counting = Counting()
    fake_llm.responder = counting
    began = time.monotonic()
    assert start(tmp_path, "run", "in.txt", "--run-id", "calm").wait(timeout=60) == 0
    calm_seconds = time.monotonic() - began
    expected = outputs(tmp_path, "calm")
    counting.counts.clear()

    chance = random.Random(seed)
    kills = 0
    state_path = tmp_path / ".pipeline" / "crashy" / "state.json"
    for attempt in range(40):
        # Killed before its first state write, a run has nothing to resume: start it again.
        command = (
            ["resume", "crashy"] if state_path.exists() else ["run", "in.txt", "--run-id", "crashy"]
        )
        process = start(tmp_path, *command)
        try:
            if attempt == 0:  # the first kill lands mid-run however busy the machine is
                wait_for_requests(counting, chance.randint(1, 20), process)
                raise subprocess.TimeoutExpired(command, 0)
            code = process.wait(timeout=calm_seconds * chance.uniform(0.4, 1.3))
        except subprocess.TimeoutExpired:
            process.send_signal(signal.SIGKILL)
            process.wait()
            kills += 1
            if state_path.exists():
                load_state(state_path)  # parses and validates after every kill
            continue
        assert code == 0, process.stderr.read() if process.stderr else code
        break
    else:
        pytest.fail("the run never completed")

    assert kills >= 1
    assert outputs(tmp_path, "crashy") == expected
    over = {prompt: count for prompt, count in counting.counts.items() if count > 1 + kills}
    assert not over, f"requests sent more than once plus once per kill ({kills}): {over}"
    assert sum(counting.counts.values()) <= REQUESTS[config] + kills * IN_FLIGHT[config]
