"""``group_size`` and ``flatten`` on fan-out steps, driven in-process: groups of N items in
one call (item is the list, item_key the group's key), checkpoints per group (a failed group
runs again alone), results spliced into the output, as JSON Lines, and through streams."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from stepline.engine.references import analyse_spec
from stepline.errors import SpecError
from stepline.spec import parse_spec
from stepline.store.state import RunStatus
from tests.inprocess import InProcess

LLM = "llm: {model: claude-haiku-4-5, max_tokens: 100, cache: {enabled: false}}"
WORDS = "apple\nbanana\ncherry\ndate\nelder\n"
HELPERS = """
import os


def lengths(ctx):
    if "bad" in ctx.item and not os.environ.get("FIXED"):
        raise ValueError("a bad word in group " + str(ctx.item_index))
    return [f"{word}:{len(word)}" for word in ctx.item]


def split(ctx):
    return ctx.item.split()
"""


def harness_for(folder: Path, steps: str, text: str = WORDS) -> InProcess:
    harness = InProcess(folder, f"name: groups\n{LLM}\nsteps:\n{steps}", text)
    harness.write("groups.py", HELPERS)
    return harness


def test_a_group_is_one_call_with_the_list_its_number_and_its_key(tmp_path: Path) -> None:
    harness = harness_for(
        tmp_path,
        """
  - id: classify
    kind: llm
    for_each: input.lines
    item_key: "{{ item }}"
    group_size: 2
    prompt: "Group {{ item_index }} ({{ item_key }}): {{ item | join(', ') }}"
""",
    )

    result = harness.run(run_id="r")

    assert result.status == RunStatus.COMPLETED
    assert harness.provider.prompts == [
        "Group 0 (apple..banana): apple, banana",
        "Group 1 (cherry..date): cherry, date",
        "Group 2 (elder): elder",
    ]
    assert len(harness.output_file("r", "steps/01-classify.json")) == 3
    assert harness.state("r").steps[0].metrics["items"] == 3


def test_flatten_splices_each_groups_list_into_the_output(tmp_path: Path) -> None:
    harness = harness_for(
        tmp_path,
        """
  - {id: lengths, kind: python, for_each: input.lines, group_size: 2, flatten: true,
     function: "groups:lengths"}
""",
    )

    harness.run(run_id="r")

    assert harness.output_file("r", "steps/01-lengths.json") == [
        "apple:5",
        "banana:6",
        "cherry:6",
        "date:4",
        "elder:5",
    ]


def test_a_failed_group_runs_again_alone_on_resume(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    harness = harness_for(
        tmp_path,
        """
  - id: lengths
    kind: python
    for_each: input.lines
    group_size: 2
    flatten: true
    on_item_error: skip
    max_failed_items: 1
    function: "groups:lengths"
""",
        "apple\nbad\ncherry\ndate\n",
    )

    first = harness.run(run_id="r")

    assert first.status == RunStatus.COMPLETED
    assert harness.output_file("r", "steps/01-lengths.json") == ["cherry:6", "date:4"]
    assert harness.state("r").steps[0].metrics["items_failed"] == 1

    monkeypatch.setenv("FIXED", "1")
    again = harness.resume("r")

    assert again.decisions[0].reason == "1 failed item(s) to try again"
    metrics = harness.state("r").steps[0].metrics
    assert (metrics["items_reused"], metrics["items_done"], metrics["items_failed"]) == (1, 1, 0)
    assert harness.output_file("r", "steps/01-lengths.json") == [
        "apple:5",
        "bad:3",
        "cherry:6",
        "date:4",
    ]


def test_flatten_writes_json_lines_one_element_per_line(tmp_path: Path) -> None:
    harness = harness_for(
        tmp_path,
        """
  - {id: words, kind: python, for_each: input.lines, flatten: true, output_format: jsonl,
     function: "groups:split"}
""",
        "one two\nthree\nfour five six\n",
    )

    harness.run(run_id="r")

    lines = (harness.run_dir("r") / "steps" / "01-words.jsonl").read_text().splitlines()
    assert [json.loads(line) for line in lines] == ["one", "two", "three", "four", "five", "six"]


def test_a_flattened_step_streams_each_element_on_in_order(tmp_path: Path) -> None:
    harness = harness_for(
        tmp_path,
        """
  - {id: words, kind: python, for_each: input.lines, flatten: true, function: "groups:split"}
  - id: shout
    kind: llm
    for_each: "{{ steps.words }}"
    stream_items: true
    item_key: "{{ item }}"
    prompt: "Shout {{ item }}"
""",
        "one two\nthree\nfour five\n",
    )

    result = harness.run(run_id="r")

    assert result.status == RunStatus.COMPLETED
    assert sorted(harness.provider.prompts) == sorted(
        f"Shout {word}" for word in ("one", "two", "three", "four", "five")
    )
    assert harness.output_file("r", "steps/02-shout.json") == [
        f"echo: Shout {word}" for word in ("one", "two", "three", "four", "five")
    ]


def test_a_step_that_streams_its_items_in_can_flatten_its_own(tmp_path: Path) -> None:
    harness = harness_for(
        tmp_path,
        """
  - {id: lines, kind: python, for_each: input.lines, function: "groups:split"}
  - {id: words, kind: python, for_each: "{{ steps.lines }}", stream_items: true,
     flatten: true, function: "groups:lengths"}
""",
        "one two\nthree\n",
    )

    harness.run(run_id="r")

    assert harness.output_file("r", "steps/02-words.json") == ["one:3", "two:3", "three:5"]


@pytest.mark.parametrize(
    ("steps", "words"),
    [
        ("  - {id: s, kind: shell, command: [echo], for_each: input.lines, group_size: 0}\n",
         "group_size"),
        ("  - {id: s, kind: shell, command: [echo], flatten: true}\n", "flatten needs for_each"),
        ("  - {id: a, kind: shell, command: [echo], for_each: input.lines}\n"
         '  - {id: b, kind: shell, command: [echo], for_each: "{{ steps.a }}", '
         "stream_items: true, group_size: 2}\n", "group_size cannot be used with stream_items"),
        ("  - {id: a, kind: shell, command: [echo], for_each: input.lines, flatten: true}\n"
         '  - {id: b, kind: shell, command: [echo, "{{ item_index }}"], '
         'for_each: "{{ steps.a }}", stream_items: true}\n', "item_index is unknown"),
    ],
)  # fmt: skip
def test_bad_group_and_flatten_keys_are_config_errors(steps: str, words: str) -> None:
    with pytest.raises(SpecError) as raised:
        spec = parse_spec(f"name: bad\nsteps:\n{steps}")
        analyse_spec(spec, {})

    assert words in raised.value.message


def test_a_flattened_output_passes_its_pause_point_though_its_elements_are_not_replies(
    tmp_path: Path,
) -> None:
    from stepline.engine.pauses import PauseMode, PausePoint
    from tests.fakes.scripted import ScriptedProvider, reply

    harness = InProcess(
        tmp_path,
        f"""
        name: paused
        {LLM}
        steps:
          - id: tag
            kind: llm
            for_each: input.lines
            group_size: 2
            flatten: true
            pause: true
            schema: {{type: array, items: {{type: string}}}}
            prompt: "Tag {{{{ item | join(', ') }}}}"
        """,
        "a\nb\nc\n",
        provider=ScriptedProvider(script=reply('["x", "y"]')),
    )
    asked: list[str | None] = []

    def keep_going(point: PausePoint) -> bool:
        asked.append(point.problem)
        return point.problem is None  # asked again only if the output was refused

    harness.pause_mode, harness.pauser = PauseMode.ASK, keep_going

    result = harness.run(run_id="r")

    assert result.status == RunStatus.COMPLETED
    assert asked == [None]
    assert harness.output_file("r", "steps/01-tag.json") == ["x", "y", "x", "y"]
