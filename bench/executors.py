"""Executors: the same fan-out on ``threads``, ``processes``, ``ray`` and ``dask``, in one run.

1. CPU-bound: ``--items`` items of about ``--cpu-ms`` of pure-Python work each (a loop
   calibrated on this machine first). Threads hold the GIL, so they use one core whatever the
   concurrency; processes, ray and dask (a local instance or cluster the run starts) use
   ``workers`` (default: every core). Start-up is part of each figure, and ray's and dask's
   (a one-item run) are shown apart.
2. No-op: ``--noop`` items that return their item: the executor's own cost per item, beside
   threads'.

Times are the fan-out step's own (``duration_s`` in state.json), so loading the config and
importing stepline count in neither; the two executors alternate round by round.

    .venv/bin/python bench/executors.py [--items 400] [--cpu-ms 20] [--noop 20000] [--rounds 3]
"""

from __future__ import annotations

import argparse
import os
import statistics
import tempfile
import time
from pathlib import Path

import stepline

EXECUTORS = ("threads", "processes", "ray", "dask")
CLUSTERS = ("ray", "dask")
CONFIG = """
name: executors
concurrency: {concurrency}
steps:
  - {{id: items, kind: python, function: "helpers:items"}}
  - id: work
    kind: python
    function: helpers:{function}
    for_each: "{{{{ steps['items'] }}}}"
    executor: {executor}
"""

HELPERS = """
def items(ctx):
    return list(range({count}))

def burn(ctx):
    total = 0
    for number in range({loops}):
        total += number * number % 7
    return total

def noop(ctx):
    return ctx.item
"""


def loops_for(milliseconds: float) -> int:
    """How many turns of ``burn``'s loop take ``milliseconds`` here (one core)."""
    loops = 100_000
    started = time.perf_counter()
    total = 0
    for number in range(loops):
        total += number * number % 7
    per_loop = (time.perf_counter() - started) / loops
    return max(int(milliseconds / 1000 / per_loop), 1)


def step_seconds(folder: Path, executor: str, function: str, count: int, loops: int) -> float:
    """The fan-out step's own time."""
    concurrency = os.cpu_count() or 2
    (folder / "pipeline-config.yaml").write_text(
        CONFIG.format(concurrency=concurrency, function=function, executor=executor)
    )
    (folder / "helpers.py").write_text(HELPERS.format(count=count, loops=loops))
    result = stepline.run(folder / "pipeline-config.yaml", folder / "in.txt", workdir=folder)
    assert result.status.value == "completed", result.message
    duration = result.state.steps[1].duration_s
    assert duration is not None
    return duration


def compare(folder: Path, function: str, count: int, loops: int, rounds: int) -> dict[str, float]:
    times: dict[str, list[float]] = {executor: [] for executor in EXECUTORS}
    for _ in range(rounds):
        for executor in times:
            times[executor].append(step_seconds(folder, executor, function, count, loops))
    return {executor: statistics.median(values) for executor, values in times.items()}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--items", type=int, default=400)
    parser.add_argument("--cpu-ms", type=float, default=20.0)
    parser.add_argument("--noop", type=int, default=20_000)
    parser.add_argument("--rounds", type=int, default=3)
    args = parser.parse_args()
    loops = loops_for(args.cpu_ms)
    with tempfile.TemporaryDirectory() as name:
        folder = Path(name)
        (folder / "in.txt").write_text("x")
        cpu = compare(folder, "burn", args.items, loops, args.rounds)
        noop = compare(folder, "noop", args.noop, loops, args.rounds)
        start = {
            cluster: statistics.median(
                step_seconds(folder, cluster, "noop", 1, loops) for _ in range(args.rounds)
            )
            for cluster in CLUSTERS
        }
    ideal = args.items * args.cpu_ms / 1000
    print(f"CPU-bound, {args.items} items of ~{args.cpu_ms:g} ms ({os.cpu_count()} cores):")
    print(f"  threads    {cpu['threads']:6.2f} s   (one core: {ideal:.2f} s)")
    for executor in EXECUTORS[1:]:
        print(
            f"  {executor:<10} {cpu[executor]:6.2f} s   "
            f"{cpu['threads'] / cpu[executor]:.2f}x faster than threads"
        )
    for cluster in CLUSTERS:
        steady = cpu[cluster] - start[cluster]
        print(
            f"  ({cluster}'s start-up, a one-item run: {start[cluster]:.2f} s; without it "
            f"{steady:.2f} s, {cpu['threads'] / steady:.2f}x)"
        )
    per_thread = noop["threads"] / args.noop * 1000
    print(f"No-op, {args.noop:,} items (per item):")
    print(f"  threads    {noop['threads']:6.2f} s   {per_thread:.3f} ms")
    for executor in EXECUTORS[1:]:
        each = noop[executor] / args.noop * 1000
        print(
            f"  {executor:<10} {noop[executor]:6.2f} s   {each:.3f} ms "
            f"({each - per_thread:+.3f} ms beside threads)"
        )


if __name__ == "__main__":  # a local dask cluster's processes import this module
    main()
