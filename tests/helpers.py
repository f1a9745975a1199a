"""Small helpers shared by tests: writing files and running the real command in a process."""

from __future__ import annotations

import os
import subprocess
import sys
import textwrap
from pathlib import Path

SENTINEL_KEY = "sk-ant-test-SENTINEL-0123456789"


def run_pipeline_process(
    *args: str, cwd: Path, env: dict[str, str] | None = None, timeout: float = 60
) -> subprocess.CompletedProcess[str]:
    """Run the real ``pipeline`` command in a child process (for signals and kill tests)."""
    return subprocess.run(
        [sys.executable, "-m", "stepline", *args],
        cwd=cwd,
        env={**os.environ, **(env or {})},
        capture_output=True,
        text=True,
        timeout=timeout,
        stdin=subprocess.DEVNULL,
    )


def write(path: Path, text: str) -> Path:
    """Write dedented text, creating folders; returns the path."""
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(textwrap.dedent(text).lstrip("\n"), encoding="utf-8")
    return path
