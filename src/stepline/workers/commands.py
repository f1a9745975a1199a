"""A shell step's command, rendered: what runs it needs, here or on a cluster worker.

``steps/shell.py`` renders it in the runner (the templates read the run's outputs); this
module holds only what running it needs, so a cluster worker imports no pydantic and no
jinja2, as for Python steps.
"""

from __future__ import annotations

import contextlib
import json
import signal
from collections.abc import Iterator, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from stepline.errors import StepFailed

STDERR_TAIL_CHARS = 2000


@dataclass(frozen=True)
class ShellCommand:
    """One attempt's command: argv and the environment it adds, with ``cwd:`` rendered."""

    step_id: str
    argv: tuple[str, ...]
    env: Mapping[str, str]  # STEPLINE_* and the step's env:, over the process's own
    cwd: str | None  # the step's cwd:, relative to the folder it runs in

    def folder(self, base_dir: Path) -> Path:
        """Where it runs: ``cwd:`` under ``base_dir`` (the config's folder, or the worker's
        copy of it); a failure when that is not a folder."""
        folder = base_dir if self.cwd is None else base_dir / self.cwd
        if not folder.is_dir():
            raise StepFailed(
                self.step_id, f"the working folder {folder} does not exist or is not a folder"
            )
        return folder

    def value(self, returncode: int | None, stdout: bytes, stderr: bytes) -> Any:
        """The output of a command that ended so, or the failure naming its program."""
        if returncode != 0:
            raise StepFailed(
                self.step_id,
                _failure_message(self.argv[0], returncode, stderr),
                returncode=returncode,
            )
        return parse_stdout(stdout.decode("utf-8", errors="replace"))

    @contextlib.contextmanager
    def start_errors(self) -> Iterator[None]:
        """A command that cannot start is a failure naming its program."""
        program = self.argv[0]
        try:
            yield
        except FileNotFoundError as exc:
            missing = program if exc.filename in (None, program) else exc.filename
            raise StepFailed(
                self.step_id, f"cannot run {program}: {missing} not found", retryable=False
            ) from None
        except PermissionError:
            raise StepFailed(
                self.step_id, f"cannot run {program}: permission denied", retryable=False
            ) from None
        except OSError as exc:
            raise StepFailed(self.step_id, f"cannot run {program}: {exc.strerror or exc}") from None


def parse_stdout(text: str) -> Any:
    """JSON when stdout is a JSON document, else the text without its final newline."""
    stripped = text.strip()
    if stripped:
        with contextlib.suppress(json.JSONDecodeError):
            return json.loads(stripped)
    return text.removesuffix("\n")


def _failure_message(program: str, returncode: int | None, stderr: bytes) -> str:
    if returncode is not None and returncode < 0:
        status = f"was killed by signal {signal.Signals(-returncode).name}"
    else:
        status = f"exited with code {returncode}"
    tail = stderr.decode("utf-8", errors="replace").strip()[-STDERR_TAIL_CHARS:]
    return f"{program} {status}" + (f"; stderr:\n{tail}" if tail else "")
