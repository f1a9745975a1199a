"""Small helpers shared by tests: writing files and running the real command in a process."""

from __future__ import annotations

import ast
import os
import subprocess
import sys
import textwrap
import time
from collections.abc import Callable
from pathlib import Path
from typing import TypeVar

SENTINEL_KEY = "sk-ant-test-SENTINEL-0123456789"

T = TypeVar("T")


def eventually(
    condition: Callable[[], T],
    timeout: float = 30,
    *,
    what: str | None = None,
    ignoring: tuple[type[Exception], ...] = (),
) -> T:
    """Call ``condition`` until it returns something truthy, and return that.

    Tests wait for what another process or thread does, on machines that may be busy: a fixed
    sleep races the clock, so they wait for an observable condition instead. ``timeout`` is
    only a safety net that turns a hang into a failure, never a statement about speed, so the
    default is generous. Between calls it sleeps 0.01 s, growing to 0.1 s.

    An exception of a type in ``ignoring`` (say ``FileNotFoundError`` or
    ``json.JSONDecodeError`` while a file is being written) counts as "not yet"; any other
    propagates at once. On timeout it raises ``AssertionError`` naming ``what`` was awaited
    (by default the condition's name) with the last value seen, or the last ignored exception.
    """
    if what is None:
        name = getattr(condition, "__name__", "<lambda>")
        what = repr(condition) if name == "<lambda>" else name
    deadline = time.monotonic() + timeout
    pause = 0.01
    while True:
        failure: Exception | None = None
        try:
            value = condition()
        except ignoring as error:
            failure, last = error, f"last exception: {error!r}"
        else:
            if value:
                return value
            last = f"last value: {value!r}"
        remaining = deadline - time.monotonic()
        if remaining <= 0:
            message = f"timed out after {timeout} s waiting for {what}; {last}"
            raise AssertionError(message) from failure
        time.sleep(min(pause, remaining))
        pause = min(pause * 1.5, 0.1)


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
