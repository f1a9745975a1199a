"""Start-up time of the commands people type most, against baselines measured in the same run.

`pipeline --help` and `pipeline list` must not import the LLM SDK or jinja2. This prints the
median wall time of each command over several runs next to two baselines: a bare Python start
and a Python start that imports anthropic and jinja2 (what an eager import would cost).
`pipeline list` runs twice: in an empty work folder, and in one holding 1,000 runs (copies of
one real run of a one-step shell pipeline, each with its own id).

    .venv/bin/python bench/startup.py [--runs 15]
"""

from __future__ import annotations

import argparse
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

CASES = {
    "python -c pass (baseline)": [sys.executable, "-c", "pass"],
    "import anthropic, jinja2 (eager cost)": [sys.executable, "-c", "import anthropic, jinja2"],
    "pipeline --help": [sys.executable, "-m", "stepline", "--help"],
    "pipeline list": [sys.executable, "-m", "stepline", "list"],
}
MANY_RUNS = 1000
CONFIG = 'name: startup\nsteps:\n  - {id: greet, kind: shell, command: "echo hi"}\n'


def median_seconds(command: list[str], runs: int, cwd: str) -> float:
    times = []
    for _ in range(runs):
        started = time.perf_counter()
        subprocess.run(command, cwd=cwd, stdout=subprocess.DEVNULL, check=True)
        times.append(time.perf_counter() - started)
    return statistics.median(times)


def make_runs(folder: Path, count: int) -> None:
    """``count`` finished runs in ``folder/.pipeline``: one real run, then copies of it."""
    (folder / "pipeline-config.yaml").write_text(CONFIG)
    (folder / "in.txt").write_text("x")
    first = [sys.executable, "-m", "stepline", "run", "in.txt", "--run-id", "run-0000"]
    subprocess.run(first, cwd=folder, stdout=subprocess.DEVNULL, check=True)
    runs = folder / ".pipeline"
    state = (runs / "run-0000" / "state.json").read_text()
    for number in range(1, count):
        run_id = f"run-{number:04d}"
        shutil.copytree(runs / "run-0000", runs / run_id)
        (runs / run_id / "state.json").write_text(state.replace("run-0000", run_id))


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--runs", type=int, default=15)
    runs = parser.parse_args().runs
    with tempfile.TemporaryDirectory() as folder:
        results = {name: median_seconds(cmd, runs, folder) for name, cmd in CASES.items()}
    with tempfile.TemporaryDirectory() as folder:
        make_runs(Path(folder), MANY_RUNS)
        many = median_seconds(CASES["pipeline list"], runs, folder)
        results[f"pipeline list, {MANY_RUNS:,} runs"] = many
    baseline = results["python -c pass (baseline)"]
    print(f"median of {runs} runs each")
    for name, seconds in results.items():
        print(f"{name:40s} {seconds * 1000:8.1f} ms  {seconds / baseline:5.1f}x baseline")


if __name__ == "__main__":
    main()
