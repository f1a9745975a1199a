"""Steps at once: wall time of a run as a graph beside the same run one step at a time.

1. Fan-in: one Python step, three LLM steps that each read only it, and a join step that
   reads all three, against the tests' fake Anthropic server answering after ``--latency``
   seconds. The ideal is the critical path, two replies (the input step costs nothing); the
   baseline is the same pipeline with ``jobs=1`` (list order), four replies.
2. notes-to-backlog (configs/), every reply the demo's hand-written one after ``--latency``:
   the run as a graph (``risks`` and ``questions`` overlap) beside ``jobs=1``.

Times are the steps' own (run_started to the run's end in events.jsonl), so loading the
config and importing stepline count in neither.

    .venv/bin/python bench/graph.py [--latency 0.5] [--rounds 3]
"""

from __future__ import annotations

import argparse
import importlib.util
import json
import os
import statistics
import sys
import tempfile
from collections.abc import Callable
from datetime import datetime
from pathlib import Path
from typing import Any

import stepline

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))
from tests.fakes import FakeLLMServer, RecordedRequest, Reply  # noqa: E402

FAN_IN = """
name: fan-in
llm: {model: claude-haiku-4-5, max_tokens: 100, cache: {enabled: false}}
steps:
  - {id: read, kind: python, function: "helpers:read"}
  - {id: a, kind: llm, prompt: "A {{ steps.read }}"}
  - {id: b, kind: llm, prompt: "B {{ steps.read }}"}
  - {id: c, kind: llm, prompt: "C {{ steps.read }}"}
  - {id: join, kind: llm, prompt: "Join {{ steps.a }} {{ steps.b }} {{ steps.c }}"}
"""
HELPERS = """
def read(ctx):
    return ctx.input.text.strip()
"""


def steps_seconds(run_dir: Path) -> float:
    lines = (run_dir / "events.jsonl").read_text().splitlines()
    first, last = (
        datetime.fromisoformat(json.loads(line)["time"]) for line in (lines[0], lines[-1])
    )
    return (last - first).total_seconds()


def timed(config: Path, input_path: Path, workdir: Path, **options: Any) -> float:
    result = stepline.run(config, input_path, workdir=workdir, no_cache=True, **options)
    assert result.status.value == "completed", result.message
    return steps_seconds(result.run_dir)


def paired(run: Callable[..., float], rounds: int) -> tuple[float, float]:
    """Medians of (as a graph, one step at a time), the two alternating round by round."""
    graph, listed = [], []
    for _ in range(rounds):
        graph.append(run())
        listed.append(run(jobs=1))
    return statistics.median(graph), statistics.median(listed)


def fan_in(server: FakeLLMServer, latency: float, rounds: int) -> None:
    server.responder = lambda request: Reply(text="ok", delay=latency)
    with tempfile.TemporaryDirectory() as name:
        folder = Path(name)
        (folder / "helpers.py").write_text(HELPERS)
        (folder / "in.txt").write_text("x")
        (folder / "pipeline-config.yaml").write_text(FAN_IN)
        graph, listed = paired(
            lambda **jobs: timed(
                folder / "pipeline-config.yaml", folder / "in.txt", folder / ".pipeline", **jobs
            ),
            rounds,
        )
    ideal = 2 * latency
    print(f"fan-in (1 input step, 3 independent LLM steps, 1 join) at {latency:g} s per reply")
    print(f"   critical path (ideal)          {ideal:6.2f} s")
    print(f"   as a graph                     {graph:6.2f} s   {graph / ideal:.2f}x the ideal")
    print(f"   one step at a time (jobs=1)    {listed:6.2f} s   {listed / ideal:.2f}x the ideal")


def notes_to_backlog(server: FakeLLMServer, latency: float, rounds: int) -> None:
    example = ROOT / "configs" / "notes-to-backlog"
    spec = importlib.util.spec_from_file_location("demo_replies", example / "demo_replies.py")
    assert spec is not None and spec.loader is not None
    replies = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(replies)

    def answer(request: RecordedRequest) -> Reply:
        text = replies.reply(request.prompt, request.model or "")
        return Reply(text=text, delay=latency)

    server.responder = answer
    with tempfile.TemporaryDirectory() as name:
        out = Path(name)
        graph, listed = paired(
            lambda **jobs: timed(
                example / "pipeline.yaml",
                example / replies.INPUT,
                out / ".pipeline",
                variables={"out_dir": str(out / "outputs")},
                **jobs,
            ),
            rounds,
        )
    print(f"notes-to-backlog at {latency:g} s per reply")
    print(f"   as a graph                     {graph:6.2f} s   {graph / listed:.2f}x list order")
    print(f"   one step at a time (jobs=1)    {listed:6.2f} s")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--latency", type=float, default=0.5)
    parser.add_argument("--rounds", type=int, default=3)
    args = parser.parse_args()
    with FakeLLMServer() as server:
        os.environ["ANTHROPIC_BASE_URL"] = server.base_url
        os.environ.setdefault("ANTHROPIC_API_KEY", "bench-key")
        fan_in(server, args.latency, args.rounds)
        notes_to_backlog(server, args.latency, args.rounds)


if __name__ == "__main__":
    main()
