"""Every table reads at 80 columns (every pipe and CI log) and shows everything at 200.

The run is the flagship demo, replayed from its cassette; each command's stdout is checked
for lines that fit, identifiers and paths that are whole, and the columns that matter.
"""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from tests.e2e.test_examples import copy_example, run_example
from tests.helpers import run_pipeline_process

RUN_ID = "run-20261207-014340-16a3f2"  # as long as a generated id
STEP_IDS = ("context", "extract", "score", "enrich", "risks", "questions", "readiness", "write")


@pytest.fixture
def demo(cli, tmp_path: Path) -> Path:
    example = copy_example("notes-to-backlog", tmp_path)
    for run_id in (RUN_ID, RUN_ID[:-1] + "3"):
        result = run_example(
            cli, example, run_id, "--replay", str(example / "demo-cassette.jsonl"), "--no-pause"
        )
        assert result.exit_code == 0, result.output
    return example


def table_lines(text: str) -> list[str]:
    return [line for line in text.splitlines() if line[:1] in "┏┃┡│├└"]


def fits(text: str, width: int) -> bool:
    lines = table_lines(text)
    return bool(lines) and all(len(line) <= width for line in lines)


def cell_rows(text: str) -> list[list[str]]:
    """The body rows of the tables in ``text``, as lists of stripped cells."""
    return [
        [cell.strip() for cell in line.split("│")[1:-1]]
        for line in text.splitlines()
        if line.startswith("│")
    ]


def test_show_at_80_columns_keeps_step_ids_status_and_output_paths_whole(
    cli, demo: Path, monkeypatch
) -> None:
    monkeypatch.setenv("COLUMNS", "80")

    shown = cli("show", RUN_ID).stdout

    assert fits(shown, 80)
    rows = {row[1]: row for row in cell_rows(shown) if len(row) > 2 and row[1] in STEP_IDS}
    assert set(rows) == set(STEP_IDS)
    assert rows["extract"][-1] == "steps/02-extract.json"
    assert "completed" in rows["extract"]
    assert "$0.0000" in rows["extract"]  # cost outlasts the tokens and the kind


def test_show_at_200_columns_has_the_titles_kinds_and_tokens_too(cli, demo: Path) -> None:
    shown = cli("show", RUN_ID).stdout

    header = next(line for line in shown.splitlines() if "tokens in/out" in line)
    assert all(name in header for name in ("title", "kind", "duration", "cost", "output"))
    assert "Detect meeting context and participants" in shown


def test_list_at_80_columns_keeps_the_run_id_whole(cli, demo: Path, monkeypatch) -> None:
    monkeypatch.setenv("COLUMNS", "80")

    listed = cli("list").stdout

    assert fits(listed, 80)
    rows = cell_rows(listed)
    assert {row[0] for row in rows} == {RUN_ID, RUN_ID[:-1] + "3"}
    assert all(row[1] == "notes-to-backlog" and row[2] == "completed" for row in rows)


def test_dry_run_at_80_columns_keeps_the_step_and_model_columns(
    cli, demo: Path, monkeypatch
) -> None:
    monkeypatch.setenv("COLUMNS", "80")

    planned = run_example(cli, demo, "dry", "--dry-run").stdout

    assert fits(planned, 80)
    llm_rows = [row for row in cell_rows(planned) if row and row[0] == "score"]
    assert any("claude-haiku-5-5" in row for row in llm_rows)
    assert {row[1] for row in cell_rows(planned) if row[0].isdigit()} == set(STEP_IDS)


def test_calls_and_diff_at_80_columns(cli, demo: Path, monkeypatch) -> None:
    monkeypatch.setenv("COLUMNS", "80")

    calls = cli("show", RUN_ID, "--calls").stdout
    diff = cli("diff", RUN_ID, RUN_ID[:-1] + "3").stdout

    assert fits(calls, 80) and fits(diff, 80)
    assert any(row[1] == "score" and row[2] == "B1" for row in cell_rows(calls))  # item keys
    assert diff.startswith(f"A {RUN_ID} → B {RUN_ID[:-1]}3")  # whole ids, in the title
    assert ["extract", "same", "steps/02-extract.json"] in cell_rows(diff)


def test_in_a_real_pipe_without_columns_the_summary_fits_80_and_log_paths_are_whole(
    demo: Path, tmp_path: Path, monkeypatch
) -> None:
    monkeypatch.delenv("COLUMNS")  # rich then uses 80, as in every pipe and CI log
    env = {"PIPELINE_WORKDIR": str(tmp_path / "piped")}
    result = run_pipeline_process(
        "run",
        str(demo / "meeting-notes.txt"),
        "-c",
        str(demo / "pipeline.yaml"),
        "--replay",
        str(demo / "demo-cassette.jsonl"),
        "--no-pause",
        cwd=tmp_path,
        env=env,
    )

    assert result.returncode == 0, result.stderr
    assert fits(result.stdout, 80)
    run_id = json.loads(run_pipeline_process("list", "--json", cwd=tmp_path, env=env).stdout)[0][
        "run_id"
    ]
    wrote = next(line for line in result.stderr.splitlines() if "wrote" in line)
    assert wrote.endswith(f"{tmp_path / 'piped' / run_id / 'outputs'}")
