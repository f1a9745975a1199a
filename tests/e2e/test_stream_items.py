"""stream_items: a fan-out step takes the previous step's items as they finish."""

from __future__ import annotations

import json
import threading
from pathlib import Path

import pytest

from tests.e2e.test_errors import assert_clean_error
from tests.fakes import ErrorReply, FakeLLMServer, Reply
from tests.fakes.llm_server import RecordedRequest
from tests.helpers import run_pipeline_process, write

CONFIG = """
name: chain
vars: {break_stamp: ""}  # the item stamp fails on (--set break_stamp=n0)
llm:
  model: claude-haiku-4-5
  retry: {attempts: 1}
  cache: {enabled: false}
steps:
  - id: names
    kind: python
    function: helpers:names
  - id: score
    kind: llm
    for_each: "{{ steps.names }}"
    item_key: "{{ item }}"
    concurrency: 2
    prompt: "Score {{ item }}"
  - id: stamp
    kind: python
    for_each: "{{ steps.score }}"
    STREAM
    function: helpers:stamp
"""

HELPERS = """
import json, time

def names(ctx):
    return [f"n{number}" for number in range(6)]

def stamp(ctx):
    broken = ctx.vars.get("break_stamp")
    if broken and ctx.item == "score of " + broken:
        raise ValueError(f"cannot stamp {broken}")
    with open("stamps.jsonl", "a") as handle:
        handle.write(json.dumps({"item": ctx.item, "at": time.time()}) + "\\n")
    return ctx.item.upper()
"""


class Slow:
    """Answers 'score of <name>' after a delay; can fail one name."""

    def __init__(self, delay: float, fail: str | None = None) -> None:
        self.delay, self.fail = delay, fail
        self.asked: list[str] = []
        self.lock = threading.Lock()

    def __call__(self, request: RecordedRequest) -> Reply | ErrorReply:
        name = request.prompt.removeprefix("Score ")
        with self.lock:
            self.asked.append(name)
        if name == self.fail:
            return ErrorReply(400, "invalid_request_error", f"cannot score {name}")
        return Reply(text=f"score of {name}", delay=self.delay)


def write_chain(tmp_path: Path, *, stream: bool = True) -> None:
    write(tmp_path / "in.txt", "x")
    write(tmp_path / "helpers.py", HELPERS)
    key = "stream_items: true" if stream else "stream_items: false"
    write(tmp_path / "pipeline-config.yaml", CONFIG.replace("STREAM", key))


def output(tmp_path: Path, run_id: str, name: str) -> object:
    return json.loads((tmp_path / ".pipeline" / run_id / "steps" / name).read_text())


def stamps(tmp_path: Path) -> list[dict]:
    path = tmp_path / "stamps.jsonl"
    return [json.loads(line) for line in path.read_text().splitlines()] if path.exists() else []


def test_items_flow_on_before_the_first_step_finishes(cli, fake_llm: FakeLLMServer, tmp_path: Path):
    write_chain(tmp_path)
    fake_llm.responder = Slow(delay=0.3)

    result = cli("run", "in.txt", "--run-id", "r")

    assert result.exit_code == 0, result.output
    last_request = max(request.received_at for request in fake_llm.requests_for("/v1/messages"))
    first_stamp = min(entry["at"] for entry in stamps(tmp_path))
    assert first_stamp < last_request, "the second step started before the first had asked all"
    assert output(tmp_path, "r", "03-stamp.json") == [f"SCORE OF N{n}" for n in range(6)]
    state = json.loads((tmp_path / ".pipeline/r/state.json").read_text())
    assert [step["status"] for step in state["steps"]] == ["completed"] * 3


def test_streamed_output_equals_the_unstreamed_one(cli, fake_llm: FakeLLMServer, tmp_path: Path):
    fake_llm.responder = Slow(delay=0.0)
    write_chain(tmp_path, stream=False)
    assert cli("run", "in.txt", "--run-id", "plain").exit_code == 0
    write_chain(tmp_path, stream=True)
    assert cli("run", "in.txt", "--run-id", "streamed").exit_code == 0

    for name in ("02-score.json", "03-stamp.json"):
        assert output(tmp_path, "streamed", name) == output(tmp_path, "plain", name)


def test_a_failing_first_step_stops_the_chain_and_resume_finishes_it(
    cli, fake_llm: FakeLLMServer, tmp_path: Path
):
    write_chain(tmp_path)
    fake_llm.responder = Slow(delay=0.05, fail="n2")

    failed = cli("run", "in.txt", "--run-id", "r")

    assert_clean_error(failed, 1, 'step "score"', 'item "n2"', "cannot score n2")
    state = json.loads((tmp_path / ".pipeline/r/state.json").read_text())
    assert [step["status"] for step in state["steps"]] == ["completed", "failed", "failed"]
    assert 'step "score", whose items stream into this one, failed' in state["steps"][2]["error"]
    stamped_before = {entry["item"] for entry in stamps(tmp_path)}

    fixed = Slow(delay=0.0)
    fake_llm.responder = fixed
    resumed = cli("resume", "r")

    assert resumed.exit_code == 0, resumed.output
    assert "n2" in fixed.asked and "n0" not in fixed.asked, "finished items are not asked again"
    stamped_again = [entry["item"] for entry in stamps(tmp_path)][len(stamped_before) :]
    assert not set(stamped_again) & stamped_before, "finished stamps are reused too"
    assert output(tmp_path, "r", "03-stamp.json") == [f"SCORE OF N{n}" for n in range(6)]


def test_a_failing_second_step_stops_the_first_from_asking_more(
    cli, fake_llm: FakeLLMServer, tmp_path: Path
):
    write_chain(tmp_path)
    slow = Slow(delay=0.2)
    fake_llm.responder = slow

    failed = cli("run", "in.txt", "--run-id", "r", "--set", "break_stamp=n0")

    assert_clean_error(failed, 1, 'step "stamp"', "cannot stamp n0")
    # n0 and n1 start together; as each returns its slot, the next may start (n2, n3) before
    # stamp fails on n0 and stops the chain, but nothing after that: n4 and n5 never start
    assert {"n0", "n1"} <= set(slow.asked) <= {"n0", "n1", "n2", "n3"}, slow.asked
    state = json.loads((tmp_path / ".pipeline/r/state.json").read_text())
    assert state["steps"][1]["status"] == "failed"
    assert "stopped early" in state["steps"][1]["error"]

    resumed = cli("resume", "r", "--set", "break_stamp=")
    assert resumed.exit_code == 0, resumed.output
    assert output(tmp_path, "r", "03-stamp.json") == [f"SCORE OF N{n}" for n in range(6)]


@pytest.mark.parametrize(
    ("change", "fragment"),
    [
        ('for_each: "{{ steps.names }}"', "stream_items needs for_each to be the output of"),
        ("function: helpers:stamp", "stream_items needs for_each"),
    ],
)
def test_stream_items_needs_the_previous_steps_items(
    cli, tmp_path: Path, change: str, fragment: str
):
    write_chain(tmp_path)
    config = tmp_path / "pipeline-config.yaml"
    text = config.read_text()
    if change.startswith("for_each"):
        text = text.replace('for_each: "{{ steps.score }}"', change)
    else:
        text = text.replace('    for_each: "{{ steps.score }}"\n', "")
    config.write_text(text)

    assert_clean_error(cli("validate"), 2, fragment)


def test_stream_items_from_a_step_that_does_not_fan_out_is_refused(cli, tmp_path: Path):
    write_chain(tmp_path)
    config = tmp_path / "pipeline-config.yaml"
    text = config.read_text().replace('    for_each: "{{ steps.names }}"\n', "")
    text = text.replace('    item_key: "{{ item }}"\n    concurrency: 2\n', "")
    config.write_text(text.replace("Score {{ item }}", "Score all"))

    assert_clean_error(cli("validate"), 2, 'stream_items needs step "score" to fan out')


def test_a_streaming_step_that_cannot_start_releases_the_chain(
    fake_llm: FakeLLMServer, tmp_path: Path
):
    """The second step fails before its first item (its item_key needs the output of a failed,
    non-critical step): the first step must not wait for ever on a full stream, and the run
    fails rather than completes."""
    write_chain(tmp_path)
    config = tmp_path / "pipeline-config.yaml"
    text = config.read_text().replace(
        "steps:\n",
        "steps:\n  - id: broken\n    kind: python\n    critical: false\n"
        "    function: helpers:broken\n",
        1,
    )
    config.write_text(
        text.replace(
            "    function: helpers:stamp",
            '    item_key: "{{ steps.broken }}-{{ item }}"\n    concurrency: 1\n'
            "    function: helpers:stamp",
        )
    )
    write(tmp_path / "helpers.py", HELPERS + "\ndef broken(ctx):\n    raise RuntimeError('no')\n")
    fake_llm.responder = Slow(delay=0.0)

    result = run_pipeline_process("run", "in.txt", "--run-id", "r", cwd=tmp_path, timeout=60)

    assert result.returncode == 1, result.stderr
    state = json.loads((tmp_path / ".pipeline/r/state.json").read_text())
    assert state["status"] == "failed"
    assert [step["status"] for step in state["steps"]] == [
        "failed",
        "completed",
        "failed",
        "failed",
    ]


def test_duplicate_keys_in_a_streamed_chain_fail_the_step_naming_them(
    cli, fake_llm: FakeLLMServer, tmp_path: Path
):
    """Streamed items are keyed as they arrive, so duplicates are caught one at a time."""
    fake_llm.responder = Slow(0.0)
    write_chain(tmp_path)
    config = tmp_path / "pipeline-config.yaml"
    text = config.read_text().replace(
        "    function: helpers:stamp", '    item_key: "{{ item[:5] }}"\n    function: helpers:stamp'
    )
    config.write_text(text)

    result = cli("run", "in.txt", "--run-id", "r")

    assert_clean_error(result, 1, 'duplicate item keys: "score"', "(items 1 and 2)")
