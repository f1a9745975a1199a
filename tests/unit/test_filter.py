"""``filter:`` on fan-out steps, driven in-process: the items it leaves out never run (no
request, no checkpoint) and are counted; each kept item keeps its place in the list
(``item_index``); widening the filter on resume runs only the newly kept items; items that
stream in are filtered too; a filter that fails names the item."""

from __future__ import annotations

from pathlib import Path

import pytest

from stepline.errors import SpecError
from stepline.spec import parse_spec
from stepline.store.items import ItemStore
from stepline.store.state import RunStatus, StepStatus
from tests.inprocess import InProcess

CONFIG = """
name: filtered
llm: {model: claude-haiku-4-5, max_tokens: 100, cache: {enabled: false}}
vars: {least: 3}
steps:
  - id: label
    kind: llm
    for_each: input.records
    item_key: "{{ item.id }}"
    filter: "{{ item.rank >= vars.least | int }}"  # --set gives text
    prompt: "Label {{ item.id }} at {{ item_index }}"
"""
RECORDS = "\n".join(
    f'{{"id": "t{number}", "rank": {rank}}}' for number, rank in enumerate([5, 1, 3, 2, 4])
)


def filtered(folder: Path, config: str = CONFIG) -> InProcess:
    harness = InProcess(folder, config, RECORDS + "\n")
    harness.input_path.rename(folder / "tickets.jsonl")
    harness.input_path = folder / "tickets.jsonl"
    return harness


def test_items_the_filter_leaves_out_never_run_and_are_counted(tmp_path: Path) -> None:
    harness = filtered(tmp_path)

    result = harness.run(run_id="r")

    assert result.status == RunStatus.COMPLETED
    # each kept item keeps its place in the list: t2 is item_index 2
    assert harness.provider.prompts == ["Label t0 at 0", "Label t2 at 2", "Label t4 at 4"]
    assert harness.output_file("r", "steps/01-label.json") == [
        "echo: Label t0 at 0",
        "echo: Label t2 at 2",
        "echo: Label t4 at 4",
    ]
    metrics = harness.state("r").steps[0].metrics
    assert (metrics["items"], metrics["items_filtered"], metrics["items_done"]) == (3, 2, 3)
    store = ItemStore(harness.run_dir("r") / "items.sqlite")
    try:  # no checkpoint for the items left out
        assert [key for key in ("t0", "t1", "t2", "t3", "t4") if store.lookup("label", key)] == [
            "t0",
            "t2",
            "t4",
        ]
    finally:
        store.close()
    last = [e for e in harness.events if e.type.value == "item_progress"][-1]
    assert (last.data["total"], last.data["filtered"]) == (3, 2)


def test_show_and_the_report_count_the_items_left_out(cli, tmp_path: Path) -> None:
    harness = filtered(tmp_path)
    harness.run(run_id="r")
    workdir = str(harness.settings.workdir)

    shown = cli("show", "r", "--workdir", workdir)
    report = cli("report", "r", "--workdir", workdir, "-o", str(tmp_path / "r.html"))

    row = next(line for line in shown.stdout.splitlines() if " label " in line)
    assert "completed (2 filtered out)" in row
    assert "attempts" not in row  # three items' one call each is not "3 attempts"
    assert report.exit_code == 0, report.stderr
    assert "completed (2 filtered out)" in (tmp_path / "r.html").read_text()


def test_widening_the_filter_on_resume_runs_only_the_newly_kept_items(tmp_path: Path) -> None:
    harness = filtered(tmp_path)
    harness.run(run_id="r")

    again = harness.resume("r", variables={"least": "2"})

    assert again.status == RunStatus.COMPLETED
    assert again.decisions[0].reason == "its config changed: the variable least (vars: or --set)"
    assert harness.provider.prompts[3:] == ["Label t3 at 3"]
    assert len(harness.output_file("r", "steps/01-label.json")) == 4
    assert harness.state("r").steps[0].metrics["items_reused"] == 3


def test_streamed_items_are_filtered_as_they_arrive(tmp_path: Path) -> None:
    harness = filtered(
        tmp_path,
        CONFIG.replace(
            '    filter: "{{ item.rank >= vars.least | int }}"  # --set gives text\n', ""
        )
        + """
  - id: again
    kind: llm
    for_each: "{{ steps.label }}"
    stream_items: true
    filter: "{{ 't0' not in item }}"
    prompt: "Again {{ item }}"
""",
    )

    result = harness.run(run_id="r")

    assert result.status == RunStatus.COMPLETED
    again = [p for p in harness.provider.prompts if p.startswith("Again")]
    assert len(again) == 4 and not any("t0" in prompt for prompt in again)
    assert harness.state("r").steps[1].metrics["items_filtered"] == 1


def test_a_filter_that_fails_fails_the_step_naming_the_item(tmp_path: Path) -> None:
    harness = filtered(tmp_path, CONFIG.replace("item.rank >= vars.least | int", "item.size > 1"))

    result = harness.run(run_id="r")

    assert result.status == RunStatus.FAILED
    label = harness.state("r").steps[0]
    assert label.status == StepStatus.FAILED
    assert (label.error or "").startswith('step "label" filter (item 1): ')
    assert harness.provider.prompts == []


@pytest.mark.parametrize(
    ("step", "words"),
    [
        ('{id: s, kind: shell, command: [echo], filter: "{{ item }}"}', "filter needs for_each"),
        (
            "{id: s, kind: shell, command: [echo], for_each: input.lines, filter: item.ok}",
            "filter must be a single {{ expression }}",
        ),
    ],
)
def test_a_bad_filter_is_a_config_error_with_its_line(step: str, words: str) -> None:
    with pytest.raises(SpecError) as raised:
        parse_spec(f"name: bad\nsteps:\n  - {step}\n")

    assert raised.value.message.startswith("<config>:3: ")
    assert words in raised.value.message
