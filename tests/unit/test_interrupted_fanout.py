"""Issue 15, part 2: a fan-out stopped partway (Ctrl-C, or a kill -9) says how far its items
got, in ``pipeline show`` and in the dry run's plan, and the dry run prices only the items a
resume would not take from the checkpoints. The run is stopped in-process on the mock clock
(Ctrl-C) or killed at a crash point in a child process; ``show`` and ``--dry-run`` are the
real CLI reading what it left."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
from pathlib import Path

import pytest

from stepline.providers.base import LLMRequest
from stepline.store.state import RunStatus
from tests.fakes import FakeLLMServer, Reply
from tests.fakes.scripted import ScriptedProvider
from tests.helpers import SENTINEL_KEY
from tests.inprocess import InProcess

ITEMS = [f"item-{number:02}" for number in range(10)]  # one length: the same tokens each

CONFIG = """
name: fan
llm: {model: claude-haiku-4-5, max_tokens: 100, cache: {enabled: false}, retry: {attempts: 1}}
steps:
  - id: label
    kind: llm
    for_each: input.lines
    item_key: "{{ item }}"
    concurrency: 1
    prompt: "Label {{ item }}"
"""


def interrupted(folder: Path, *, at: str = "Label item-04") -> InProcess:
    """A run ``r`` stopped by Ctrl-C as the request for ``at`` goes out (concurrency 1: the
    items before it are done, it is in flight)."""
    provider = ScriptedProvider(latency=1.0)
    harness = InProcess(folder, CONFIG, "\n".join(ITEMS) + "\n", provider=provider)

    def ctrl_c(request: LLMRequest) -> None:
        if request.prompt == at:
            harness.interrupt()

    provider.on_request = ctrl_c
    stopped = harness.run(run_id="r")
    assert stopped.status == RunStatus.INTERRUPTED
    provider.on_request = None
    return harness


def status_cell(shown: str, step: str) -> str:
    """The status words of ``step``'s row in a steps table (a wide terminal: one line)."""
    row = next(line for line in shown.splitlines() if f" {step} " in line)
    return row.split("│")[4].strip()


def test_show_says_how_many_items_an_interrupted_fan_out_finished(cli, tmp_path: Path):
    interrupted(tmp_path)

    shown = cli("show", "r")

    assert shown.exit_code == 0, shown.output
    assert status_cell(shown.stdout, "label") == "pending (4 of 10 items done)"
    progress = json.loads(cli("show", "r", "--json").stdout)["items_progress"]
    assert progress == {"label": {"done": 4, "failed": 0, "in_flight": 1, "total": 10}}


def test_the_dry_run_says_how_far_the_items_got_and_prices_only_the_rest(cli, tmp_path: Path):
    harness = interrupted(tmp_path)
    fresh = cli("run", "input.txt", "--dry-run", "--json")  # a new run: every item to send
    (whole,) = json.loads(fresh.stdout)["llm"]

    plan = cli("resume", "r", "--dry-run")
    preview = cli("resume", "r", "--dry-run", "--json")

    assert plan.exit_code == 0, plan.output
    assert "unfinished: 4 of 10 items done" in plan.stdout
    assert "not run yet" not in plan.stdout
    (left,) = json.loads(preview.stdout)["llm"]
    assert (whole["items"], whole["items_done"]) == (10, 0)
    assert (left["items"], left["items_done"]) == (10, 4)
    assert left["max_output_tokens"] == 6 * 100
    assert left["input_tokens"] == pytest.approx(whole["input_tokens"] * 6 / 10, abs=1)
    assert left["cost_usd"] == pytest.approx(whole["cost_usd"] * 6 / 10)
    assert "10 items, 4 done in the checkpoints, 6 to send" in left["note"]

    resumed = harness.resume("r")  # the run takes from the checkpoints what the dry run said

    assert resumed.status == RunStatus.COMPLETED
    assert harness.state("r").steps[0].metrics["items_reused"] == 4
    assert harness.provider.prompts[5:] == [f"Label {item}" for item in ITEMS[4:]]


def test_a_dry_run_after_the_prompt_changed_prices_every_item_again(cli, tmp_path: Path):
    harness = interrupted(tmp_path)
    harness.config_path.write_text(
        harness.config_path.read_text().replace('"Label {{ item }}"', '"Name {{ item }}"')
    )

    preview = cli("resume", "r", "--dry-run", "--json")

    (estimate,) = json.loads(preview.stdout)["llm"]
    assert (estimate["items"], estimate["items_done"]) == (10, 0)
    assert estimate["max_output_tokens"] == 10 * 100


def test_a_dry_run_with_fresh_items_prices_every_item(cli, tmp_path: Path):
    interrupted(tmp_path)

    preview = cli("resume", "r", "--dry-run", "--json", "--fresh-items")

    (estimate,) = json.loads(preview.stdout)["llm"]
    assert estimate["items_done"] == 0 and estimate["max_output_tokens"] == 10 * 100


WRAPPER = (
    "import sys; from stepline import faults; faults.arm(sys.argv[1], after=int(sys.argv[2])); "
    "from stepline.cli.app import main; main(sys.argv[3:])"
)


def test_a_kill_reads_as_a_ctrl_c_does(cli, tmp_path: Path, fake_llm: FakeLLMServer):
    fake_llm.responder = lambda request: Reply(text=f"re: {request.prompt}")
    killed_folder, stopped_folder = tmp_path / "killed", tmp_path / "stopped"
    killed_folder.mkdir()
    stopped_folder.mkdir()
    (killed_folder / "pipeline-config.yaml").write_text(CONFIG)
    (killed_folder / "input.txt").write_text("\n".join(ITEMS) + "\n")
    # Killed as the fifth item's intent is committed: four items are done, one in flight.
    killed = subprocess.run(
        [sys.executable, "-c", WRAPPER, "item-intent-committed", "4", "run", "input.txt"]
        + ["--run-id", "r"],
        cwd=killed_folder,
        env={**os.environ, "ANTHROPIC_API_KEY": SENTINEL_KEY},
        capture_output=True,
        text=True,
        timeout=60,
        stdin=subprocess.DEVNULL,
    )
    assert killed.returncode == -signal.SIGKILL, killed.stderr
    interrupted(stopped_folder)

    views = {}
    for folder in (killed_folder, stopped_folder):
        os.chdir(folder)
        shown = cli("show", "r")
        plan = cli("resume", "r", "--dry-run")
        views[folder.name] = (status_cell(shown.stdout, "label"), _why(plan.stdout, "label"))

    assert views["killed"] == views["stopped"]
    assert views["killed"] == ("pending (4 of 10 items done)", "unfinished: 4 of 10 items done")


def _why(plan: str, step: str) -> str:
    """The last cell of ``step``'s row in the dry run's plan table (a wide terminal)."""
    row = next(line for line in plan.splitlines() if f" {step} " in line)
    return row.split("│")[-2].strip()
