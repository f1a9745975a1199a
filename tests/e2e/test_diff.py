"""``pipeline diff A B``: which step outputs differ, by the hash of the files on disk, and a
readable unified diff of one step's output; ``--json`` for scripts. Real runs of Python steps.
"""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from tests.e2e.test_errors import assert_clean_error
from tests.helpers import write

CONFIG = """
name: compare
steps:
  - id: parse
    kind: python
    function: helpers:parse
  - id: constant
    kind: python
    function: helpers:constant
  - id: words
    kind: python
    for_each: "{{ steps.parse.words }}"
    output_format: FORMAT
    function: helpers:upper
  - id: EXTRA
    kind: python
    function: helpers:constant
"""

HELPERS = """
def parse(ctx):
    words = ctx.input.text.split()
    return {"count": len(words), "words": words, "first": words[0]}


def constant(ctx):
    return {"b": 2, "a": 1}


def upper(ctx):
    return ctx.item.upper()
"""


def run(cli, tmp_path: Path, run_id: str, text: str, *, fmt: str = "json", extra: str) -> None:
    config = CONFIG.replace("FORMAT", fmt).replace("EXTRA", extra)
    write(tmp_path / "pipeline-config.yaml", config)
    write(tmp_path / "helpers.py", HELPERS)
    write(tmp_path / f"{run_id}.txt", text)
    result = cli("run", f"{run_id}.txt", "--run-id", run_id)
    assert result.exit_code == 0, result.output


@pytest.fixture
def two_runs(cli, tmp_path: Path) -> Path:
    run(cli, tmp_path, "a", "alpha beta gamma", extra="only_in_a")
    run(cli, tmp_path, "b", "alpha delta gamma", fmt="jsonl", extra="only_in_b")
    return tmp_path


def test_diff_says_which_outputs_differ(cli, two_runs: Path):
    result = cli("diff", "a", "b", "--json")

    assert result.exit_code == 0, result.output
    report = json.loads(result.stdout)
    changes = {step["step"]: step["change"] for step in report["steps"]}
    assert changes == {
        "parse": "changed",
        "constant": "same",
        "words": "changed",
        "only_in_a": "only_a",
        "only_in_b": "only_b",
    }
    assert report["counts"] == {
        "same": 1, "changed": 2, "only_a": 1, "only_b": 1, "no_output": 0
    }  # fmt: skip
    words = next(step for step in report["steps"] if step["step"] == "words")
    assert (words["output_a"], words["output_b"]) == ("steps/03-words.json", "steps/03-words.jsonl")
    table = cli("diff", "a", "b").stdout
    assert table.startswith("A a → B b")
    assert "only in A" in table and "only in B" in table and "changed" in table
    assert "steps/03-words.json " in table and "steps/03-words.jsonl " in table


def test_a_list_is_the_same_as_json_or_as_json_lines(cli, tmp_path: Path):
    run(cli, tmp_path, "a", "alpha beta", extra="tail")
    run(cli, tmp_path, "b", "alpha beta", fmt="jsonl", extra="tail")

    report = json.loads(cli("diff", "a", "b", "--json").stdout)

    assert {step["change"] for step in report["steps"]} == {"same"}
    assert cli("diff", "a", "b", "--step", "words").stdout.strip() == (
        'Step "words": the output is the same.'
    )


def test_step_diff_is_a_unified_diff_of_pretty_json(cli, two_runs: Path):
    result = cli("diff", "a", "b", "--step", "parse")

    assert result.exit_code == 0, result.output
    lines = result.stdout.splitlines()
    assert lines[0] == "--- a/steps/01-parse.json" and lines[1] == "+++ b/steps/01-parse.json"
    assert '-    "beta",' in lines and '+    "delta",' in lines
    assert not any(line.startswith(("-", "+")) and "alpha" in line for line in lines[2:])
    by_number = cli("diff", "a", "b", "--step", "1", "--json")
    assert json.loads(by_number.stdout)["diff"] == result.stdout
    rows = cli("diff", "a", "b", "--step", "words").stdout.splitlines()
    assert '-"BETA"' in rows and '+"DELTA"' in rows  # a JSON Lines output: a row a line


def test_a_hand_edited_output_counts_as_changed(cli, tmp_path: Path):
    run(cli, tmp_path, "a", "alpha beta", extra="tail")
    run(cli, tmp_path, "b", "alpha beta", extra="tail")
    constant = tmp_path / ".pipeline/b/steps/02-constant.json"
    constant.write_text('{"a": 1, "b": 3}\n')

    report = json.loads(cli("diff", "a", "b", "--json").stdout)
    shown = json.loads(cli("diff", "a", "b", "--step", "constant", "--json").stdout)

    assert [step["change"] for step in report["steps"]] == ["same", "changed", "same", "same"]
    assert '-  "b": 2\n+  "b": 3\n' in shown["diff"]


def test_only_in_one_run_diffs_against_nothing(cli, two_runs: Path):
    shown = json.loads(cli("diff", "a", "b", "--step", "only_in_b", "--json").stdout)

    assert shown["change"] == "only_b"
    assert shown["diff"].splitlines()[:2] == ["--- a/(no output)", "+++ b/steps/04-only_in_b.json"]
    assert '+  "a": 1,' in shown["diff"].splitlines()


def test_unknown_runs_and_steps_are_clear_errors(cli, two_runs: Path):
    assert_clean_error(cli("diff", "a", "bb"), 2, 'no run "bb"', "did you mean: b")
    assert_clean_error(cli("diff", "zz", "b"), 2, 'no run "zz"')
    assert_clean_error(cli("diff", "a", "b", "--step", "pars"), 2, 'unknown step "pars"', "parse")
    assert_clean_error(cli("diff", "a", "b", "--step", "9"), 2, "there is no step 9")


def test_exit_code_says_whether_any_output_differs(cli, tmp_path: Path):
    run(cli, tmp_path, "a", "alpha beta", extra="tail")
    run(cli, tmp_path, "b", "alpha beta", fmt="jsonl", extra="tail")
    run(cli, tmp_path, "c", "alpha gamma", extra="tail")

    same = cli("diff", "a", "b", "--exit-code")
    changed = cli("diff", "a", "c", "--exit-code", "--json")

    assert same.exit_code == 0, same.output
    assert "same" in same.stdout
    assert changed.exit_code == 1, changed.output
    assert json.loads(changed.stdout)["counts"]["changed"] == 2  # the report is printed too
    assert cli("diff", "a", "c").exit_code == 0, "without --exit-code a difference is no error"


def test_exit_code_with_one_step_and_with_a_step_in_one_run_only(cli, two_runs: Path):
    assert cli("diff", "a", "b", "--step", "constant", "--exit-code").exit_code == 0
    assert cli("diff", "a", "b", "--step", "parse", "--exit-code").exit_code == 1
    only_b = cli("diff", "a", "b", "--step", "only_in_b", "--exit-code", "--json")
    assert only_b.exit_code == 1, only_b.output
    assert json.loads(only_b.stdout)["change"] == "only_b"
    assert cli("diff", "a", "b", "--exit-code").exit_code == 1
