"""Run the tests' fake Anthropic server in its own process, for benchmarks.

In a process of its own the server's CPU is not counted as the runner's, and it survives the
runner being killed. Prints its base URL on the first line, then serves until stdin closes;
with ``--log FILE`` it appends one line per request: arrival time (Unix) and the prompt.

    python bench/fake_server.py --latency 0.05 [--log requests.log]
"""

from __future__ import annotations

import argparse
import subprocess
import sys
import threading
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]


def main() -> None:
    sys.path.insert(0, str(ROOT))
    from tests.fakes import FakeLLMServer, RecordedRequest, Reply

    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--latency", type=float, default=0.05)
    parser.add_argument("--log", type=Path)
    args = parser.parse_args()
    log = args.log.open("a", buffering=1) if args.log else None
    lock = threading.Lock()

    def answer(request: RecordedRequest) -> Reply:
        if log is not None:
            with lock:
                log.write(f"{time.time():.6f} {request.prompt}\n")
        return Reply(text="ok", delay=args.latency)

    with FakeLLMServer() as server:
        server.responder = answer
        print(server.base_url, flush=True)
        sys.stdin.read()  # until the benchmark closes our stdin


class ServerProcess:
    """``with ServerProcess(latency) as url:`` a fake server in a child process."""

    def __init__(self, latency: float, log: Path | None = None) -> None:
        self.latency = latency
        self.log = log
        self.process: subprocess.Popen[str] | None = None

    def __enter__(self) -> str:
        log = ["--log", str(self.log)] if self.log else []
        self.process = subprocess.Popen(
            [sys.executable, __file__, "--latency", str(self.latency), *log],
            stdin=subprocess.PIPE,
            stdout=subprocess.PIPE,
            text=True,
        )
        assert self.process.stdout is not None
        return self.process.stdout.readline().strip()

    def __exit__(self, *exc: object) -> None:
        assert self.process is not None and self.process.stdin is not None
        self.process.stdin.close()
        self.process.wait(timeout=10)


if __name__ == "__main__":
    main()
