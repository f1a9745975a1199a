"""Start-up time of the commands people type most, against baselines measured in the same run.

`pipeline --help` and `pipeline list` must not import the LLM SDK or jinja2. This prints the
median wall time of each command over several runs next to two baselines: a bare Python start
and a Python start that imports anthropic and jinja2 (what an eager import would cost).

    .venv/bin/python bench/startup.py [--runs 15]
"""

from __future__ import annotations

import argparse
import statistics
import subprocess
import sys
import tempfile
import time

CASES = {
    "python -c pass (baseline)": [sys.executable, "-c", "pass"],
    "import anthropic, jinja2 (eager cost)": [sys.executable, "-c", "import anthropic, jinja2"],
    "pipeline --help": [sys.executable, "-m", "stepline", "--help"],
    "pipeline list": [sys.executable, "-m", "stepline", "list"],
}


def median_seconds(command: list[str], runs: int, cwd: str) -> float:
    times = []
    for _ in range(runs):
        started = time.perf_counter()
        subprocess.run(command, cwd=cwd, stdout=subprocess.DEVNULL, check=True)
        times.append(time.perf_counter() - started)
    return statistics.median(times)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--runs", type=int, default=15)
    runs = parser.parse_args().runs
    with tempfile.TemporaryDirectory() as folder:
        results = {name: median_seconds(cmd, runs, folder) for name, cmd in CASES.items()}
    baseline = results["python -c pass (baseline)"]
    print(f"median of {runs} runs each")
    for name, seconds in results.items():
        print(f"{name:40s} {seconds * 1000:8.1f} ms  {seconds / baseline:5.1f}x baseline")


if __name__ == "__main__":
    main()
