"""Resume after a kill: only the unfinished items are asked again, and quickly.

A run of N LLM items (the fake server in its own process, fixed latency) is killed with
SIGKILL once about half of the requests have reached the server. ``pipeline resume`` then
finishes it. Printed: requests before the kill, items committed, requests the resume sent,
how many of those repeat a request made before the kill (items that were in flight), and the
time from starting the resume process to its first request, beside the time a fresh
``pipeline run`` of the same config takes to its first request (the baseline).

    .venv/bin/python bench/resume.py [--items 10000] [--latency 0.05] [--concurrency 100]
"""

from __future__ import annotations

import argparse
import os
import signal
import sqlite3
import subprocess
import sys
import tempfile
import time
from pathlib import Path

from fake_server import ServerProcess

CONFIG = """
name: bench-resume
concurrency: {concurrency}
llm: {{model: claude-haiku-4-5, max_tokens: 16, cache: {{enabled: false}}}}
steps:
  - id: ask
    kind: llm
    for_each: input.lines
    item_key: "{{{{ item }}}}"
    prompt: "{{{{ item }}}}"
"""


def requests_in(log: Path) -> list[tuple[float, str]]:
    if not log.exists():
        return []
    lines = [line.split(" ", 1) for line in log.read_text().splitlines() if " " in line]
    return [(float(stamp), prompt) for stamp, prompt in lines]


def pipeline(folder: Path, *args: str) -> subprocess.Popen[bytes]:
    return subprocess.Popen(
        [sys.executable, "-m", "stepline", *args, "--no-pause"],
        cwd=folder,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )


def first_request_after(log: Path, started: float, timeout: float = 60) -> float:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        later = [stamp for stamp, _ in requests_in(log) if stamp >= started]
        if later:
            return min(later) - started
        time.sleep(0.005)
    raise TimeoutError("no request arrived")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--items", type=int, default=10_000)
    parser.add_argument("--latency", type=float, default=0.05)
    parser.add_argument("--concurrency", type=int, default=100)
    args = parser.parse_args()
    with tempfile.TemporaryDirectory() as name:
        folder = Path(name)
        log = folder / "requests.log"
        (folder / "in.txt").write_text("".join(f"item-{n}\n" for n in range(args.items)))
        config = CONFIG.format(concurrency=args.concurrency)
        (folder / "pipeline-config.yaml").write_text(config)
        with ServerProcess(args.latency, log) as url:
            os.environ.update(ANTHROPIC_BASE_URL=url, ANTHROPIC_API_KEY="bench-key")

            started = time.time()
            baseline = pipeline(folder, "run", "in.txt", "--run-id", "fresh")
            fresh_first = first_request_after(log, started)
            baseline.kill()
            baseline.wait()
            log.write_text("")  # the server appends to the same open file

            run = pipeline(folder, "run", "in.txt", "--run-id", "r")
            while len(requests_in(log)) < args.items // 2:
                time.sleep(0.01)
            run.send_signal(signal.SIGKILL)
            run.wait()
            before = requests_in(log)
            items_db = folder / ".pipeline" / "r" / "items.sqlite"
            with sqlite3.connect(items_db) as db:
                committed = db.execute("SELECT COUNT(*) FROM items WHERE status = 'done'")
                done = committed.fetchone()[0]

            started = time.time()
            resume = pipeline(folder, "resume", "r")
            resume_first = first_request_after(log, started)
            assert resume.wait(timeout=600) == 0
            after = [prompt for stamp, prompt in requests_in(log) if stamp >= started]

    asked_before = {prompt for _, prompt in before}
    latency_ms = args.latency * 1e3
    print(f"{args.items} items, {latency_ms:.0f} ms latency, concurrency {args.concurrency}")
    print(f"requests before the kill                 {len(before):7d}")
    print(f"items committed before the kill          {done:7d}")
    print(
        f"requests sent by the resume              {len(after):7d}  (expected {args.items - done})"
    )
    repeated = sum(prompt in asked_before for prompt in after)
    print(f"  of which repeat a request made before  {repeated:7d}  (items in flight at the kill)")
    print(f"first request: fresh run (baseline)      {fresh_first:7.3f} s")
    print(f"first request: resume                    {resume_first:7.3f} s")


if __name__ == "__main__":
    main()
