"""Issue 15, part 1: a fan-out under ``on_item_error: skip`` or ``collect`` fails once more
items failed than ``max_failed_items`` allows (by default: when every item failed), keeps its
checkpoints so a resume runs only the failed items, and the run's last line says how many
items a completed step left out."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from tests.helpers import write

CONFIG = """
name: failures
concurrency: 1
steps:
  - id: each
    kind: python
    label: Each word
    function: helpers:each
    for_each: input.lines
    item_key: "{{ item }}"
    on_item_error: STRATEGY
EXTRA
  - id: after
    kind: python
    function: helpers:after
"""

HELPERS = """
from pathlib import Path

def each(ctx):
    with open("ran.txt", "a") as log:
        log.write(ctx.item + "\\n")
    if ctx.item in Path("bad.txt").read_text().split():
        raise ValueError(f"bad item {ctx.item}")
    return ctx.item.upper()

def after(ctx):
    return len(ctx.steps["each"])
"""

WORDS = [f"w{number}" for number in range(10)]


def project(folder: Path, *, bad: list[str], strategy: str = "collect", extra: str = "") -> None:
    """The two-step pipeline over ``WORDS``; the items named in bad.txt raise."""
    config = CONFIG.replace("STRATEGY", strategy).replace("EXTRA", extra and f"    {extra}")
    write(folder / "pipeline-config.yaml", config)
    write(folder / "helpers.py", HELPERS)
    write(folder / "in.txt", "\n".join(WORDS) + "\n")
    write(folder / "bad.txt", " ".join(bad))


def ran(folder: Path) -> list[str]:
    """The items the step function ran for, in order, since the last call."""
    log = folder / "ran.txt"
    items = log.read_text().split() if log.exists() else []
    log.write_text("")
    return items


def state(folder: Path) -> dict:
    return json.loads((folder / ".pipeline/r/state.json").read_text())


def step(folder: Path, step_id: str) -> dict:
    return next(s for s in state(folder)["steps"] if s["id"] == step_id)


@pytest.mark.parametrize("strategy", ["skip", "collect"])
def test_a_fan_out_where_every_item_failed_fails_by_default(cli, tmp_path: Path, strategy: str):
    project(tmp_path, bad=WORDS, strategy=strategy)

    result = cli("run", "in.txt", "--run-id", "r")

    assert result.exit_code == 1, result.output
    assert 'step "each": all 10 items failed; item "w0": ValueError: bad item w0' in result.output
    assert "raise max_failed_items" in result.output
    assert step(tmp_path, "each")["status"] == "failed"
    assert step(tmp_path, "after")["status"] == "pending"  # a critical failure stops the run


def test_max_failed_items_100_percent_lets_a_step_complete_with_every_item_failed(
    cli, tmp_path: Path
):
    project(tmp_path, bad=WORDS, extra='max_failed_items: "100%"')

    result = cli("run", "in.txt", "--run-id", "r")

    assert result.exit_code == 0, result.output
    assert step(tmp_path, "each")["metrics"]["items_failed"] == 10
    assert 'Run r completed; 10 of 10 items of step "Each word" failed.' in result.stdout


def test_past_a_count_the_step_stops_launching_fails_and_a_resume_runs_only_the_rest(
    cli, tmp_path: Path
):
    project(tmp_path, bad=["w2", "w4"], extra="max_failed_items: 1")

    failed = cli("run", "in.txt", "--run-id", "r")

    assert failed.exit_code == 1, failed.output
    message = (
        'step "each": 2 of 10 items failed, more than max_failed_items: 1; 5 not run; '
        'item "w2": ValueError: bad item w2'
    )
    assert message in failed.output
    assert ran(tmp_path) == WORDS[:5]  # nothing was launched past the second failure
    assert "failed (3 of 10 items done, 2 failed)" in failed.stdout

    write(tmp_path / "bad.txt", "")  # the cause is fixed
    resumed = cli("resume", "r")

    assert resumed.exit_code == 0, resumed.output
    assert ran(tmp_path) == ["w2", "w4", *WORDS[5:]]  # the finished items are reused
    assert step(tmp_path, "each")["metrics"]["items_reused"] == 3
    assert step(tmp_path, "after")["status"] == "completed"


@pytest.mark.parametrize(
    ("limit", "exit_code"),
    [('"10%"', 1), ('"20%"', 0), ("2", 0), ("1", 1), ('"19.9%"', 1)],
)
def test_a_percentage_or_a_count_is_passed_only_by_more_failed_items(
    cli, tmp_path: Path, limit: str, exit_code: int
):
    project(tmp_path, bad=["w8", "w9"], extra=f"max_failed_items: {limit}")

    result = cli("run", "in.txt", "--run-id", "r")

    assert result.exit_code == exit_code, result.output
    if exit_code:
        shown = limit.strip('"')
        assert f"2 of 10 items failed, more than max_failed_items: {shown}" in result.output
    else:
        assert 'completed; 2 of 10 items of step "Each word" failed.' in result.stdout


def test_a_percentage_names_the_count_it_allows(cli, tmp_path: Path):
    project(tmp_path, bad=["w1", "w2", "w3"], strategy="skip", extra='max_failed_items: "25%"')

    result = cli("run", "in.txt", "--run-id", "r")

    assert result.exit_code == 1, result.output
    assert "3 of 10 items failed, more than max_failed_items: 25% (2 of 10)" in result.output


def test_the_last_line_of_a_completed_run_says_how_many_items_failed(cli, tmp_path: Path):
    project(tmp_path, bad=["w3"], strategy="skip")

    result = cli("run", "in.txt", "--run-id", "r")

    assert result.exit_code == 0, result.output
    last = result.stdout.strip().splitlines()[-1]
    assert last.startswith('Run r completed; 1 of 10 items of step "Each word" failed.')
    assert "completed (1 of 10 items failed)" in result.stdout


def test_adding_max_failed_items_to_a_completed_step_re_runs_nothing(cli, tmp_path: Path):
    project(tmp_path, bad=[], strategy="skip")
    assert cli("run", "in.txt", "--run-id", "r").exit_code == 0
    ran(tmp_path)
    config = tmp_path / "pipeline-config.yaml"
    config.write_text(
        config.read_text().replace(
            "on_item_error: skip", "on_item_error: skip\n    max_failed_items: 3"
        )
    )

    resumed = cli("resume", "r")

    assert resumed.exit_code == 0, resumed.output
    assert ran(tmp_path) == []
    assert [s["status"] for s in state(tmp_path)["steps"]] == ["completed", "completed"]


@pytest.mark.parametrize(
    ("step_keys", "message"),
    [
        (
            "for_each: input.lines\n    max_failed_items: 2",
            "max_failed_items applies to on_item_error: skip or collect",
        ),
        ("max_failed_items: 2", "max_failed_items needs for_each"),
        (
            "for_each: input.lines\n    on_item_error: skip\n    max_failed_items: ten",
            'give a count of items (0 or more) or a percentage of them, e.g. "10%"',
        ),
        (
            'for_each: input.lines\n    on_item_error: skip\n    max_failed_items: "120%"',
            'give a count of items (0 or more) or a percentage of them, e.g. "10%"',
        ),
    ],
)
def test_max_failed_items_mistakes_are_config_errors(
    cli, tmp_path: Path, step_keys: str, message: str
):
    write(tmp_path / "helpers.py", HELPERS)
    write(
        tmp_path / "pipeline-config.yaml",
        f"name: x\nsteps:\n  - id: each\n    kind: python\n    function: helpers:each\n"
        f"    {step_keys}\n",
    )

    result = cli("validate", "-c", "pipeline-config.yaml")

    assert result.exit_code == 2, result.output
    assert message in result.output
