"""One set of numbers: a step's tokens and cost read the same in the step table, the usage
tables, the run's totals and the report, replays, cache hits and failed items included."""

from __future__ import annotations

from pathlib import Path

from tests.e2e.test_examples import copy_example, run_example
from tests.e2e.test_narrow_terminals import cell_rows
from tests.fakes import ErrorReply, FakeLLMServer
from tests.helpers import write


def rows_by_first_cell(text: str, width: int) -> dict[str, list[str]]:
    return {row[0]: row for row in cell_rows(text) if len(row) == width}


def test_a_replayed_step_reads_the_same_in_every_table(cli, tmp_path: Path) -> None:
    example = copy_example("notes-to-backlog", tmp_path)
    replayed = run_example(
        cli, example, "r", "--replay", str(example / "demo-cassette.jsonl"), "--no-pause"
    )
    assert replayed.exit_code == 0, replayed.output

    shown = cli("show", "r").stdout

    header = next(line for line in shown.splitlines() if "┃ replayed" in line)
    assert "cached" in header  # replays and cache hits apart, as in the report
    steps = {row[1]: row for row in cell_rows(shown) if len(row) == 9}  # the step table
    usage = rows_by_first_cell(shown, 7)  # name, requests, cached, replayed, in, out, cost
    assert usage["context"][1:4] == ["0", "0", "1"]
    assert steps["context"][6] == f"{usage['context'][4]}/{usage['context'][5]}" == "0/0"
    assert steps["context"][7] == usage["context"][6] == "$0.0000"
    assert steps["enrich"][6] == steps["enrich"][7] == ""  # a Python step makes no calls


def test_a_fan_out_whose_items_all_failed_shows_the_requests_it_made(
    cli, fake_llm: FakeLLMServer, tmp_path: Path
) -> None:
    fake_llm.responder = lambda request: ErrorReply(400, "invalid_request_error", "no")
    write(tmp_path / "in.txt", "a\nb\nc\n")
    write(
        tmp_path / "pipeline-config.yaml",
        """
        name: all-fail
        llm: {model: claude-haiku-4-5, max_tokens: 64}
        steps:
          - id: ask
            kind: llm
            for_each: input.lines
            on_item_error: collect
            max_failed_items: "100%"
            prompt: "About {{ item }}"
        """,
    )
    assert cli("run", "in.txt", "--run-id", "f").exit_code == 0

    shown = cli("show", "f").stdout

    steps = {row[1]: row for row in cell_rows(shown) if len(row) == 8}
    usage = rows_by_first_cell(shown, 7)
    assert usage["ask"][1] == "3"  # three requests, all refused
    assert steps["ask"][5] == "0/0" and steps["ask"][6] == usage["ask"][6]
