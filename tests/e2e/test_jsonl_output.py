"""Fan-out outputs as JSON Lines: written row by row, read lazily, same identity as JSON."""

from __future__ import annotations

import json
from pathlib import Path

from tests.e2e.test_errors import assert_clean_error
from tests.helpers import write

CONFIG = """
name: lines
steps:
  - id: double
    kind: python
    for_each: input.lines
    FORMAT
    function: helpers:double
  - id: label
    kind: python
    for_each: "{{ steps.double }}"
    function: helpers:label
  - id: total
    kind: python
    function: helpers:total
"""

HELPERS = """
def double(ctx):
    return int(ctx.item) * 2

def label(ctx):
    return f"#{ctx.item_index}: {ctx.item}"

def total(ctx):
    return sum(value for value in ctx.steps["double"])
"""


def write_pipeline(tmp_path: Path, output_format: str | None, lines: int = 5) -> None:
    key = f"output_format: {output_format}" if output_format else ""
    write(tmp_path / "pipeline-config.yaml", CONFIG.replace("FORMAT", key))
    write(tmp_path / "helpers.py", HELPERS)
    write(tmp_path / "in.txt", "".join(f"{number}\n" for number in range(lines)))


def state_of(tmp_path: Path, run_id: str) -> dict:
    return json.loads((tmp_path / ".pipeline" / run_id / "state.json").read_text())


def test_jsonl_output_is_one_value_per_line_and_feeds_later_steps(cli, tmp_path: Path):
    write_pipeline(tmp_path, "jsonl")

    result = cli("run", "in.txt", "--run-id", "r")

    assert result.exit_code == 0, result.output
    path = tmp_path / ".pipeline" / "r" / "steps" / "01-double.jsonl"
    assert path.read_text() == "0\n2\n4\n6\n8\n"
    steps = state_of(tmp_path, "r")["steps"]
    assert steps[0]["output"] == "steps/01-double.jsonl"
    label = json.loads((tmp_path / ".pipeline/r/steps/02-label.json").read_text())
    assert label == ["#0: 0", "#1: 2", "#2: 4", "#3: 6", "#4: 8"]
    assert json.loads((tmp_path / ".pipeline/r/steps/03-total.json").read_text()) == 20


def test_the_format_does_not_change_an_outputs_identity(cli, tmp_path: Path):
    write_pipeline(tmp_path, "jsonl")
    assert cli("run", "in.txt", "--run-id", "lines").exit_code == 0
    write_pipeline(tmp_path, "json")
    assert cli("run", "in.txt", "--run-id", "list").exit_code == 0

    hashes = [state_of(tmp_path, run)["steps"][0]["output_hash"] for run in ("lines", "list")]
    assert hashes[0] == hashes[1]


def test_large_fan_outs_switch_to_jsonl_by_themselves(cli, tmp_path: Path):
    write_pipeline(tmp_path, None, lines=10_001)

    result = cli("run", "in.txt", "--run-id", "big")

    assert result.exit_code == 0, result.output
    steps = state_of(tmp_path, "big")["steps"]
    assert steps[0]["output"].endswith(".jsonl") and steps[1]["output"].endswith(".jsonl")


def test_small_fan_outs_stay_json_without_output_format(cli, tmp_path: Path):
    write_pipeline(tmp_path, None)

    assert cli("run", "in.txt", "--run-id", "small").exit_code == 0
    assert state_of(tmp_path, "small")["steps"][0]["output"] == "steps/01-double.json"


def test_an_edited_line_reruns_what_reads_it_and_a_broken_line_is_named(cli, tmp_path: Path):
    write_pipeline(tmp_path, "jsonl")
    assert cli("run", "in.txt", "--run-id", "r").exit_code == 0
    path = tmp_path / ".pipeline" / "r" / "steps" / "01-double.jsonl"

    path.write_text("0\n2\n400\n6\n8\n")
    assert cli("resume", "r").exit_code == 0
    assert json.loads((tmp_path / ".pipeline/r/steps/03-total.json").read_text()) == 416

    path.write_text("0\n2\n{oops\n6\n8\n")
    assert_clean_error(cli("resume", "r"), 2, "01-double.jsonl:3 is not valid JSON")


def test_show_prints_a_jsonl_output_line_by_line(cli, tmp_path: Path):
    write_pipeline(tmp_path, "jsonl")
    assert cli("run", "in.txt", "--run-id", "r").exit_code == 0

    shown = cli("show", "r", "--step", "double")
    as_json = cli("show", "r", "--step", "double", "--json")

    assert shown.stdout.splitlines() == ["0", "2", "4", "6", "8"]
    assert json.loads(as_json.stdout) == [0, 2, 4, 6, 8]


def test_output_format_needs_for_each(cli, tmp_path: Path):
    write_pipeline(tmp_path, "jsonl")
    config = tmp_path / "pipeline-config.yaml"
    config.write_text(
        config.read_text().replace(
            "function: helpers:total", "function: helpers:total\n    output_format: jsonl"
        )
    )

    assert_clean_error(cli("validate"), 2, "output_format needs for_each")
