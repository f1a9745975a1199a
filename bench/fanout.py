"""Fan-out costs, each beside a baseline measured in the same run.

1. Runner overhead per item: a no-op Python step over N items through ``for_each`` (item
   checkpoint, context, thread hand-off), against the same N no-op calls made in one loop by a
   single Python step. The difference divided by N is what fan-out adds per item.
2. LLM fan-out against latency: N items, one LLM call each, to a local fake Anthropic server
   that answers after a fixed delay, at a given concurrency, through the real SDK. Beside it,
   the baseline: a bare ``asyncio`` + ``AsyncAnthropic`` + semaphore loop making the same calls
   to the same server. The ideal is ``ceil(N / concurrency) x latency``.

3. Saturation: N items at a short latency (50 ms) and concurrency 50 and 200, with the fake
   server in its own process, so the CPU measured (user + system of this process) is the
   client's alone: items per second and CPU ms per item, stepline beside the bare SDK loop.

    .venv/bin/python bench/fanout.py [--items 2000] [--llm-items 500] [--latency 0.5]
                                     [--concurrency 100] [--saturation-items 2000]
"""

from __future__ import annotations

import argparse
import asyncio
import math
import os
import resource
import statistics
import tempfile
import time
from pathlib import Path

from fake_server import ServerProcess

import stepline

HELPERS = """
def items(ctx):
    return list(range(int(ctx.vars["n"])))

def noop(ctx):
    return ctx.item

def loop(ctx):
    return [noop_value(value) for value in ctx.steps["items"]]

def noop_value(value):
    return value
"""

FANOUT = """
name: bench-fanout
concurrency: {concurrency}
vars: {{n: "0"}}
steps:
  - {{id: items, kind: python, function: "helpers:items"}}
  - {{id: each, kind: python, function: "helpers:noop", for_each: "{{{{ steps.items }}}}"}}
"""

LOOP = """
name: bench-loop
vars: {n: "0"}
steps:
  - {id: items, kind: python, function: "helpers:items"}
  - {id: each, kind: python, function: "helpers:loop"}
"""

LLM = """
name: bench-llm
concurrency: {concurrency}
llm: {{model: claude-haiku-4-5, max_tokens: 16, cache: {{enabled: false}}}}
vars: {{n: "0"}}
steps:
  - {{id: items, kind: python, function: "helpers:items"}}
  - id: ask
    kind: llm
    for_each: "{{{{ steps.items }}}}"
    prompt: "Item {{{{ item }}}}"
"""


def timed_run(folder: Path, config: str, items: int) -> float:
    (folder / "pipeline-config.yaml").write_text(config)
    started = time.perf_counter()
    result = stepline.run(
        folder / "pipeline-config.yaml",
        folder / "in.txt",
        variables={"n": str(items)},
        workdir=folder / ".pipeline",
    )
    elapsed = time.perf_counter() - started
    assert result.status.value == "completed", result.message
    return elapsed


def per_item_overhead(items: int, rounds: int) -> tuple[float, float]:
    fanout, loop = [], []
    for _ in range(rounds):
        with tempfile.TemporaryDirectory() as name:
            folder = Path(name)
            (folder / "helpers.py").write_text(HELPERS)
            (folder / "in.txt").write_text("x")
            loop.append(timed_run(folder, LOOP, items))
            fanout.append(timed_run(folder, FANOUT.format(concurrency=8), items))
    return statistics.median(fanout), statistics.median(loop)


def llm_fanout(items: int, latency: float, concurrency: int) -> tuple[float, float]:
    """(bare SDK loop, stepline fan-out) wall times against the same fake server, which runs
    in its own process so that its work does not compete with the client's."""
    with tempfile.TemporaryDirectory() as name:
        folder = Path(name)
        requests = folder / "requests.log"
        with ServerProcess(latency, log=requests) as url:
            os.environ["ANTHROPIC_BASE_URL"] = url
            os.environ.setdefault("ANTHROPIC_API_KEY", "bench-key")
            bare = asyncio.run(bare_sdk_loop(url, items, concurrency))
            (folder / "helpers.py").write_text(HELPERS)
            (folder / "in.txt").write_text("x")
            elapsed = timed_run(folder, LLM.format(concurrency=concurrency), items)
        assert len(requests.read_text().splitlines()) == 2 * items  # no retries, no repeats
        return bare, elapsed


async def bare_sdk_loop(base_url: str, items: int, concurrency: int) -> float:
    """The baseline: the SDK's async client, a semaphore, and nothing else."""
    import anthropic

    client = anthropic.AsyncAnthropic(api_key="bench-key", base_url=base_url, max_retries=0)
    limit = asyncio.Semaphore(concurrency)

    async def one(number: int) -> None:
        async with limit:
            await client.messages.create(
                model="claude-haiku-4-5",
                max_tokens=16,
                messages=[{"role": "user", "content": f"Item {number}"}],
            )

    started = time.perf_counter()
    await asyncio.gather(*(one(number) for number in range(items)))
    elapsed = time.perf_counter() - started
    await client.close()
    return elapsed


def cpu_seconds() -> float:
    usage = resource.getrusage(resource.RUSAGE_SELF)
    return usage.ru_utime + usage.ru_stime


def saturation(items: int, concurrency: int, latency: float) -> dict[str, tuple[float, float]]:
    """(wall s, CPU s) of the bare SDK loop and of stepline, against one server process."""
    figures = {}
    with ServerProcess(latency) as url, tempfile.TemporaryDirectory() as name:
        os.environ["ANTHROPIC_BASE_URL"] = url
        os.environ.setdefault("ANTHROPIC_API_KEY", "bench-key")
        cpu = cpu_seconds()
        wall = asyncio.run(bare_sdk_loop(url, items, concurrency))
        figures["bare SDK + semaphore loop"] = (wall, cpu_seconds() - cpu)
        folder = Path(name)
        (folder / "helpers.py").write_text(HELPERS)
        (folder / "in.txt").write_text("x")
        cpu = cpu_seconds()
        wall = timed_run(folder, LLM.format(concurrency=concurrency), items)
        figures["stepline for_each"] = (wall, cpu_seconds() - cpu)
    return figures


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--items", type=int, default=2000)
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--llm-items", type=int, default=500)
    parser.add_argument("--latency", type=float, default=0.5)
    parser.add_argument("--concurrency", type=int, default=100)
    parser.add_argument("--saturation-items", type=int, default=2000)
    args = parser.parse_args()

    fanout, loop = per_item_overhead(args.items, args.rounds)
    print(f"1. no-op Python step, {args.items} items, median of {args.rounds} runs")
    print(f"   one step looping over the items (baseline) {loop:7.3f} s")
    print(f"   for_each over the items                    {fanout:7.3f} s")
    per_item_ms = (fanout - loop) / args.items * 1e3
    print(f"   fan-out overhead per item                  {per_item_ms:7.3f} ms")

    ideal = math.ceil(args.llm_items / args.concurrency) * args.latency
    bare, elapsed = llm_fanout(args.llm_items, args.latency, args.concurrency)
    print(
        f"2. {args.llm_items} LLM items at {args.latency * 1e3:.0f} ms latency, "
        f"concurrency {args.concurrency}"
    )
    print(f"   ideal (ceil(items / concurrency) x latency) {ideal:7.3f} s")
    print(f"   bare SDK + semaphore loop (baseline)       {bare:7.3f} s  ({bare / ideal:.2f}x)")
    print(
        f"   stepline for_each                          {elapsed:7.3f} s  ({elapsed / ideal:.2f}x)"
    )

    for concurrency in (50, 200):
        figures = saturation(args.saturation_items, concurrency, 0.05)
        print(f"3. {args.saturation_items} LLM items at 50 ms latency, concurrency {concurrency}")
        for label, (wall, cpu) in figures.items():
            rate = args.saturation_items / wall
            per_item = cpu / args.saturation_items * 1e3
            print(f"   {label:26s} {rate:7.0f} items/s  {per_item:6.2f} CPU ms/item")


if __name__ == "__main__":
    main()
