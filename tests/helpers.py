"""Small helpers shared by tests: writing files and running the real command in a process."""

from __future__ import annotations

import ast
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


HEAVY_MODULES = ("anthropic", "jinja2", "openai")


def heavy_modules_imported_by(
    args: list[str], cwd: Path, modules: tuple[str, ...] = HEAVY_MODULES
) -> list[str]:
    """Which of the slow-to-import ``modules`` ``pipeline ARGS`` imports, in a fresh process
    (commands people type often must answer without them)."""
    probe = (
        "import atexit, sys\n"
        f"atexit.register(lambda: print('HEAVY', sorted(m for m in {modules!r}"
        " if m in sys.modules), file=sys.stderr))\n"
        "from stepline.cli.app import main\n"
        f"main({args!r})\n"
    )
    result = subprocess.run(
        [sys.executable, "-c", probe], cwd=cwd, capture_output=True, text=True, timeout=60
    )
    assert result.returncode == 0, result.stderr
    heavy = [line for line in result.stderr.splitlines() if line.startswith("HEAVY ")]
    assert heavy, result.stderr
    return list(ast.literal_eval(heavy[-1].removeprefix("HEAVY ")))
