"""Shell completion: run ids complete for ``resume`` and ``show``, through the real command
the shell calls on Tab (typer's ``_PIPELINE_COMPLETE`` protocol), newest first."""

from __future__ import annotations

import os
import subprocess
import sys
import time
from pathlib import Path

from stepline.cli.completion import run_ids
from tests.helpers import run_pipeline_process, write


def make_runs(workdir: Path, *names: str) -> None:
    """Run folders as the store lays them out, each newer than the last."""
    for number, name in enumerate(names):
        state = write(workdir / name / "state.json", "{}")
        os.utime(state, (time.time() + number, time.time() + number))


def complete(words: str, cwd: Path) -> list[str]:
    """What bash would offer after ``words`` (the last word is the one being completed)."""
    result = run_pipeline_process(
        cwd=cwd,
        env={
            "_PIPELINE_COMPLETE": "complete_bash",
            "COMP_WORDS": words,
            "COMP_CWORD": str(len(words.split()) - (0 if words.endswith(" ") else 1)),
        },
    )
    assert result.returncode == 0, result.stderr
    return result.stdout.split()


def test_run_ids_complete_newest_first_for_resume_and_show(tmp_path: Path) -> None:
    make_runs(tmp_path / ".pipeline", "run-20260101-a", "run-20260102-b", "nightly")
    (tmp_path / ".pipeline" / "run-not-a-run").mkdir()  # no state.json: not offered
    write(tmp_path / ".pipeline" / "cache.sqlite", "")
    assert complete("pipeline show run-", tmp_path) == ["run-20260102-b", "run-20260101-a"]
    assert complete("pipeline resume ", tmp_path) == [
        "nightly",
        "run-20260102-b",
        "run-20260101-a",
        "last",
    ]
    assert complete("pipeline show zzz", tmp_path) == []


def test_last_is_offered_once_there_is_a_run(tmp_path: Path) -> None:
    workdir = tmp_path / ".pipeline"
    workdir.mkdir()
    assert complete("pipeline show la", tmp_path) == []  # no run for it to name
    make_runs(workdir, "nightly")
    assert complete("pipeline show la", tmp_path) == ["last"]
    assert complete("pipeline diff nightly l", tmp_path) == ["last"]
    make_runs(workdir, "last")  # a run really called last is offered once
    assert complete("pipeline report la", tmp_path) == ["last"]


def test_completion_without_a_work_folder_offers_nothing(tmp_path: Path) -> None:
    assert complete("pipeline show ", tmp_path) == []
    assert run_ids(tmp_path, "") == []


def test_install_and_show_completion_are_offered() -> None:
    # --show-completion takes no value: typer asks which shell started the command, so a
    # bash that waits for it (no exec) must be its parent, wherever the tests themselves run.
    command = '"$0" -m stepline --show-completion; exit $?'
    shown = subprocess.run(
        ["bash", "-c", command, sys.executable], capture_output=True, text=True, timeout=60
    )
    assert shown.returncode == 0, shown.stderr
    assert "_PIPELINE_COMPLETE=complete_bash" in shown.stdout
    helped = run_pipeline_process("--help", cwd=Path.cwd())
    assert "--install-completion" in helped.stdout
