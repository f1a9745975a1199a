"""Issue 15, part 3: a completed step whose output was made from an upstream output that has
since gone (the upstream step re-ran and failed) is shown as out of date, in the run's
summary, ``pipeline show`` and ``show --json``, as the resume's plan would re-run it."""

from __future__ import annotations

import json
from pathlib import Path

from tests.helpers import write

CONFIG = """
name: chain
steps:
  - id: a
    kind: python
    function: helpers:a
  - id: b
    kind: python
    function: helpers:b
  - id: c
    kind: python
    function: helpers:c
  - id: alone
    kind: python
    function: helpers:alone
"""

HELPERS = """
def a(ctx):
    return ctx.input.text.upper()

def b(ctx):
    return ctx.steps["a"] + "!"

def c(ctx):
    return ctx.steps["b"] + "?"

def alone(ctx):
    return 1
"""


def status_cell(table: str, step: str) -> str:
    """The status words of ``step``'s row in a steps table (a wide terminal: one line)."""
    row = next(line for line in table.splitlines() if f" {step} " in line)
    return row.split("│")[4].strip()


def project(folder: Path) -> None:
    write(folder / "pipeline-config.yaml", CONFIG)
    write(folder / "helpers.py", HELPERS)
    write(folder / "in.txt", "notes")


def break_a(folder: Path) -> None:
    """The user edits a: it re-runs on resume, and fails."""
    helpers = folder / "helpers.py"
    helpers.write_text(
        helpers.read_text().replace("return ctx.input.text.upper()", 'raise ValueError("no")')
    )


def test_steps_downstream_of_a_step_that_re_ran_and_failed_are_shown_out_of_date(
    cli, tmp_path: Path
):
    project(tmp_path)
    assert cli("run", "in.txt", "--run-id", "r").exit_code == 0
    break_a(tmp_path)

    resumed = cli("resume", "r")
    shown = cli("show", "r")

    assert resumed.exit_code == 1, resumed.output
    for table in (resumed.stdout, shown.stdout):
        assert status_cell(table, "a") == "failed"
        assert status_cell(table, "b") == "completed (out of date: a changed)"
        assert status_cell(table, "c") == "completed (out of date: a changed, via b)"
        assert status_cell(table, "alone") == "completed"
    as_json = json.loads(cli("show", "r", "--json").stdout)
    assert as_json["out_of_date"] == {
        "b": {"upstream": "a", "changed": "a"},
        "c": {"upstream": "b", "changed": "a"},
    }
    assert [step["status"] for step in as_json["steps"]] == ["failed", *["completed"] * 3]
    assert cli("report", "r").exit_code == 0
    page = (tmp_path / ".pipeline/r/report.html").read_text()
    assert "<td>completed (out of date: a changed, via b)</td>" in page

    project(tmp_path)  # the edit is undone: a runs again, and so do b and c
    fixed = cli("resume", "r")

    assert fixed.exit_code == 0, fixed.output
    assert all(status_cell(fixed.stdout, s) == "completed" for s in ("a", "b", "c", "alone"))


def test_an_upstream_step_that_re_ran_to_the_same_output_leaves_nothing_out_of_date(
    cli, tmp_path: Path
):
    project(tmp_path)
    assert cli("run", "in.txt", "--run-id", "r").exit_code == 0
    helpers = tmp_path / "helpers.py"  # a's source changes, its output does not
    helpers.write_text(
        helpers.read_text().replace(
            "return ctx.input.text.upper()", "return ctx.input.text.upper()  # same"
        )
    )

    resumed = cli("resume", "r", "--to-step", "a")  # a re-runs; b and c are not reached
    shown = cli("show", "r")

    assert resumed.exit_code == 0, resumed.output
    assert status_cell(shown.stdout, "b") == "completed"
    assert json.loads(cli("show", "r", "--json").stdout)["out_of_date"] == {}


def test_a_step_whose_upstream_changed_and_was_not_re_run_downstream_is_out_of_date(
    cli, tmp_path: Path
):
    project(tmp_path)
    assert cli("run", "in.txt", "--run-id", "r").exit_code == 0
    helpers = tmp_path / "helpers.py"
    helpers.write_text(helpers.read_text().replace(".upper()", ".lower()"))

    resumed = cli("resume", "r", "--to-step", "a")  # a's new output; b still has the old one

    assert resumed.exit_code == 0, resumed.output
    assert status_cell(cli("show", "r").stdout, "b") == "completed (out of date: a changed)"
