"""Peak memory of a fan-out over a small and a large JSONL input: the growth should be flat.

Each case runs in a fresh process that prints its own peak RSS (and its largest child's: the
worker processes). Python case: a no-op Python step over ``input.records``, on threads and on
``executor: processes``. LLM case: one LLM call per record to the fake server (in its own
process) at 1 ms latency. The baseline is the same pipeline over the small input.

    .venv/bin/python bench/memory.py [--small 20000] [--large 1000000] [--llm-large 200000]
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import tempfile
from pathlib import Path

from fake_server import ServerProcess

PYTHON = """
name: memory-python
steps:
  - {id: each, kind: python, function: "helpers:noop", for_each: input.records}
"""

PROCESSES = PYTHON.replace("name: memory-python\n", "name: memory-processes\nexecutor: processes\n")
DASK = PYTHON.replace("name: memory-python\n", "name: memory-dask\nexecutor: dask\n")

LLM = """
name: memory-llm
concurrency: 50
llm: {model: claude-haiku-4-5, max_tokens: 16, cache: {enabled: false}}
steps:
  - id: ask
    kind: llm
    for_each: input.records
    prompt: "Ticket {{ item.id }}: {{ item.text }}"
"""

HELPERS = "def noop(ctx):\n    return ctx.item['id']\n"

MEASURE = """
import resource, sys, stepline
if __name__ == "__main__":  # a local dask cluster's processes import the main module
    result = stepline.run(sys.argv[1], sys.argv[2], workdir=sys.argv[3])
    assert result.status.value == "completed", result.message
    print(resource.getrusage(resource.RUSAGE_SELF).ru_maxrss)
    print(resource.getrusage(resource.RUSAGE_CHILDREN).ru_maxrss)
"""


def write_input(path: Path, records: int) -> None:
    with path.open("w") as handle:
        for number in range(records):
            handle.write(json.dumps({"id": number, "text": f"printer {number} is jammed"}) + "\n")


def peaks_mib(folder: Path, config: str, records: int) -> tuple[float, float]:
    """The runner's peak RSS and the largest child's (a worker process), in MiB."""
    (folder / "pipeline-config.yaml").write_text(config)
    (folder / "helpers.py").write_text(HELPERS)
    write_input(folder / "in.jsonl", records)
    done = subprocess.run(
        [sys.executable, "-c", MEASURE, "pipeline-config.yaml", "in.jsonl", f".pipeline-{records}"],
        cwd=folder,
        capture_output=True,
        text=True,
        check=True,
    )
    runner, child = done.stdout.split()[-2:]
    return int(runner) / 1024, int(child) / 1024  # ru_maxrss is in KiB on Linux


def peak_mib(folder: Path, config: str, records: int) -> float:
    return peaks_mib(folder, config, records)[0]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--small", type=int, default=20_000)
    parser.add_argument("--large", type=int, default=1_000_000)
    parser.add_argument("--llm-large", type=int, default=200_000)
    args = parser.parse_args()
    with tempfile.TemporaryDirectory() as name:
        folder = Path(name)
        small = peak_mib(folder, PYTHON, args.small)
        large = peak_mib(folder, PYTHON, args.large)
        print(
            f"Python step: {args.small:,} records {small:6.1f} MiB (baseline), "
            f"{args.large:,} records {large:6.1f} MiB, growth {large - small:+.1f} MiB"
        )
        for executor, config in (("processes", PROCESSES), ("dask", DASK)):
            small_peaks = peaks_mib(folder, config, args.small)
            large_peaks = peaks_mib(folder, config, args.large)
            for name, small, large in zip(
                ("runner", "largest worker"), small_peaks, large_peaks, strict=True
            ):
                print(
                    f"{executor}, {name}: {args.small:,} records {small:6.1f} MiB (baseline), "
                    f"{args.large:,} records {large:6.1f} MiB, growth {large - small:+.1f} MiB"
                )
        with ServerProcess(0.001) as url:
            os.environ.update(ANTHROPIC_BASE_URL=url, ANTHROPIC_API_KEY="bench-key")
            small = peak_mib(folder, LLM, args.small)
            large = peak_mib(folder, LLM, args.llm_large)
        print(
            f"LLM step:    {args.small:,} records {small:6.1f} MiB (baseline), "
            f"{args.llm_large:,} records {large:6.1f} MiB, growth {large - small:+.1f} MiB"
        )


if __name__ == "__main__":
    main()
