"""Per-step cost of a sequential pipeline, with full durability, beside a baseline.

A pipeline of N no-op Python steps runs through ``stepline.run``; every step's output and the
state after it are written with temp file, fsync, rename (and the folder fsynced). The
baseline is that durable write alone, done the way a careful hand-written runner would: for
each step, the step's output file and a state file, each written to a temp file, fsynced and
renamed, in the same folder, with the folder fsynced. The difference per step is what the
runner adds: fingerprints, events, the step's context and its own bookkeeping, and a state
file that holds every step (so it grows with the pipeline). The whole run is shown too: it
adds loading and checking the config, which grows with the number of steps as well.

    .venv/bin/python bench/steps.py [--steps 200] [--rounds 3]
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import tempfile
import time
from datetime import datetime
from pathlib import Path

import stepline

HELPERS = """
def noop(ctx):
    return {"step": ctx.step_id}
"""


def config(steps: int) -> str:
    lines = ["name: bench-steps", "steps:"]
    lines += [f'  - {{id: s{n}, kind: python, function: "helpers:noop"}}' for n in range(steps)]
    return "\n".join(lines) + "\n"


def durable_write(path: Path, data: bytes) -> None:
    temp = path.with_name(f".tmp-{path.name}")
    with temp.open("wb") as handle:
        handle.write(data)
        handle.flush()
        os.fsync(handle.fileno())
    os.replace(temp, path)
    folder = os.open(path.parent, os.O_RDONLY)
    try:
        os.fsync(folder)
    finally:
        os.close(folder)


def baseline(steps: int) -> float:
    """Seconds for the durable writes alone: each step's output, then the state."""
    with tempfile.TemporaryDirectory() as name:
        folder = Path(name)
        state: dict[str, object] = {"steps": []}
        started = time.perf_counter()
        for number in range(steps):
            durable_write(folder / f"{number:03d}.json", json.dumps({"step": number}).encode())
            state["steps"] = [*state["steps"], {"id": number, "status": "completed"}]  # type: ignore[list-item]
            durable_write(folder / "state.json", json.dumps(state).encode())
        return time.perf_counter() - started


def pipeline(steps: int) -> tuple[float, float]:
    """(the whole ``stepline.run`` call, the steps alone: from run_started to the run's end
    in events.jsonl, so without loading and checking the config)."""
    with tempfile.TemporaryDirectory() as name:
        folder = Path(name)
        (folder / "helpers.py").write_text(HELPERS)
        (folder / "in.txt").write_text("x")
        (folder / "pipeline-config.yaml").write_text(config(steps))
        started = time.perf_counter()
        result = stepline.run(
            folder / "pipeline-config.yaml", folder / "in.txt", workdir=folder / ".pipeline"
        )
        elapsed = time.perf_counter() - started
        assert result.status.value == "completed", result.message
        lines = (result.run_dir / "events.jsonl").read_text().splitlines()
        started_at, ended_at = (
            datetime.fromisoformat(json.loads(line)["time"]) for line in (lines[0], lines[-1])
        )
        return elapsed, (ended_at - started_at).total_seconds()


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--steps", type=int, default=200)
    parser.add_argument("--rounds", type=int, default=3)
    args = parser.parse_args()
    pipeline(5)  # warm: imports, the helpers module
    bare = statistics.median(baseline(args.steps) for _ in range(args.rounds))
    timings = [pipeline(args.steps) for _ in range(args.rounds)]
    whole = statistics.median(total for total, _ in timings)
    steps_alone = statistics.median(steps for _, steps in timings)
    per_step = {
        "durable writes alone (output + state per step)": bare,
        "stepline: the steps (run_started to the end)": steps_alone,
        "stepline: the whole run, config loading included": whole,
        "added by the runner to the steps": steps_alone - bare,
    }
    print(f"{args.steps} sequential no-op steps, median of {args.rounds} runs")
    for label, seconds in per_step.items():
        print(f"   {label:52s} {seconds / args.steps * 1e3:6.2f} ms/step")


if __name__ == "__main__":
    main()
