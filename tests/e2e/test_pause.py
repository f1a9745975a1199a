"""Pause points: pass them in CI, stop at them with --pause, and let a person edit an output."""

from __future__ import annotations

import json
import os
import pty
import select
import subprocess
import sys
from pathlib import Path

import pytest

import stepline
from stepline.engine.contract import Hooks
from stepline.engine.pauses import PauseMode, PausePoint
from tests.e2e.pipelines import REPLY, calls, clear_calls, write_backlog_pipeline
from tests.fakes import FakeLLMServer, Reply
from tests.helpers import eventually, write

EDITED = [{"title": "Only this one", "detail": "edited by a person"}]


def test_pause_flag_stops_and_resume_uses_the_edited_output(
    cli, fake_llm: FakeLLMServer, tmp_path: Path
):
    write_backlog_pipeline(tmp_path)
    fake_llm.script(Reply(text=REPLY))

    paused = cli("run", "notes.txt", "--run-id", "p", "--pause")

    assert paused.exit_code == 3, paused.output
    assert "pipeline resume p" in paused.output
    run_dir = tmp_path / ".pipeline" / "p"
    state = json.loads((run_dir / "state.json").read_text())
    assert state["status"] == "paused"
    assert state["paused_after"] == "extract" and state["pause_reason"] == "review"
    assert calls(tmp_path) == []

    (run_dir / "steps" / "01-extract.json").write_text(json.dumps(EDITED))
    resumed = cli("resume", "p", "--no-pause")

    assert resumed.exit_code == 0, resumed.output
    assert fake_llm.count() == 1
    assert calls(tmp_path) == ["count", "flaky", "report"]
    count = json.loads((run_dir / "steps" / "02-count.json").read_text())
    assert count == {"count": 1, "titles": ["Only this one"]}
    events = (run_dir / "events.jsonl").read_text()
    assert '"type":"output_edited"' in events


def test_no_terminal_passes_pause_points(cli, fake_llm: FakeLLMServer, tmp_path: Path):
    write_backlog_pipeline(tmp_path)
    fake_llm.script(Reply(text=REPLY))

    result = cli("run", "notes.txt")

    assert result.exit_code == 0
    assert "pause point passed" in result.stderr


def test_environment_turns_pauses_off_even_with_a_person_to_ask(
    fake_llm: FakeLLMServer, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
):
    config = write_backlog_pipeline(tmp_path)
    fake_llm.script(Reply(text=REPLY))
    asked: list[PausePoint] = []

    def pauser(point: PausePoint) -> bool:
        asked.append(point)
        return True

    result = stepline.run(
        config, tmp_path / "notes.txt", hooks=Hooks(pauser=pauser, pause_mode=PauseMode.NEVER)
    )

    assert result.exit_code == 0
    assert asked == []


def test_person_edits_at_the_prompt_and_continues(fake_llm: FakeLLMServer, tmp_path: Path):
    config = write_backlog_pipeline(tmp_path)
    fake_llm.script(Reply(text=REPLY))
    problems: list[str | None] = []

    def edit_then_continue(point: PausePoint) -> bool:
        problems.append(point.problem)
        if len(problems) == 1:
            point.output_path.write_text("[{not json")
        else:
            point.output_path.write_text(json.dumps(EDITED))
        return True

    result = stepline.run(config, tmp_path / "notes.txt", hooks=Hooks(pauser=edit_then_continue))

    assert result.exit_code == 0
    assert problems[0] is None
    assert problems[1] is not None and "not valid JSON" in problems[1]
    assert result.outputs["count"]["count"] == 1


def test_person_stops_at_the_prompt(fake_llm: FakeLLMServer, tmp_path: Path):
    config = write_backlog_pipeline(tmp_path)
    fake_llm.script(Reply(text=REPLY))

    result = stepline.run(config, tmp_path / "notes.txt", hooks=Hooks(pauser=lambda point: False))

    assert result.exit_code == 3
    assert result.status == "paused"
    assert calls(tmp_path) == []


def test_terminal_prompt_enter_continues(fake_llm: FakeLLMServer, tmp_path: Path):
    """The real command on a pseudo-terminal: it asks, Enter continues the run."""
    write_backlog_pipeline(tmp_path)
    fake_llm.script(Reply(text=REPLY))
    clear_calls(tmp_path)
    main_fd, child_fd = pty.openpty()
    process = subprocess.Popen(
        [sys.executable, "-m", "stepline", "run", "notes.txt"],
        cwd=tmp_path,
        stdin=child_fd,
        stdout=child_fd,
        stderr=child_fd,
        env={**os.environ, "TERM": "xterm"},
    )
    os.close(child_fd)
    try:
        seen = _read_until(main_fd, b"Press Enter")
        assert b"01-extract.json" in seen
        os.write(main_fd, b"\n")
        assert process.wait(timeout=30) == 0
    finally:
        process.kill()
        os.close(main_fd)
    assert calls(tmp_path) == ["count", "flaky", "report"]


def _read_until(fd: int, marker: bytes) -> bytes:
    """What the terminal showed up to ``marker``, or up to its closing."""
    seen = bytearray()

    def shown() -> bytes:
        if select.select([fd], [], [], 0)[0]:
            try:
                seen.extend(os.read(fd, 4096))
            except OSError:  # the terminal closed: what it showed is all there is
                return bytes(seen)
        assert marker in seen, f"output so far: {bytes(seen[-2000:])!r}"
        return bytes(seen)

    return eventually(shown, what=f"{marker!r} on the terminal", ignoring=(AssertionError,))


SCHEMA_CONFIG = """
name: reviewed
llm: {model: claude-test-model, max_tokens: 512}
steps:
  - id: extract
    kind: llm
    prompt: "Items in {{ input.text }}"
    schema:
      type: array
      items: {type: object, required: [title], properties: {title: {type: string}}}
    pause: true
  - id: titles
    kind: shell
    command: ["echo", "{{ steps.extract | map(attribute='title') | join(', ') }}"]
"""


def test_an_edit_that_breaks_the_schema_is_refused_and_asked_again(
    fake_llm: FakeLLMServer, tmp_path: Path
):
    config = write(tmp_path / "pipeline-config.yaml", SCHEMA_CONFIG)
    write(tmp_path / "notes.txt", "notes")
    fake_llm.script(Reply(text='[{"title": "Fix login"}]'))
    problems: list[str | None] = []

    def edit(point: PausePoint) -> bool:
        problems.append(point.problem)
        fixed = [{"title": "Fixed by hand"}]
        broken = [{"name": "no title"}]
        point.output_path.write_text(json.dumps(broken if len(problems) == 1 else fixed))
        return True

    result = stepline.run(config, tmp_path / "notes.txt", hooks=Hooks(pauser=edit))

    assert result.exit_code == 0, result.message
    assert problems[0] is None
    assert problems[1] is not None
    assert "does not match the schema at /0: 'title' is a required property" in problems[1]
    assert result.outputs["titles"].strip() == "Fixed by hand"


def test_a_pause_in_a_replayed_run_says_an_edit_will_miss_the_cassette(
    fake_llm: FakeLLMServer, tmp_path: Path
):
    config = write_backlog_pipeline(tmp_path)
    fake_llm.script(Reply(text=REPLY))
    recorded = stepline.run(config, tmp_path / "notes.txt", record=tmp_path / "cassette.jsonl")
    assert recorded.exit_code == 0
    notes: list[str | None] = []

    def look(point: PausePoint) -> bool:
        notes.append(point.note)
        return True

    replayed = stepline.run(
        config, tmp_path / "notes.txt", replay="cassette.jsonl", hooks=Hooks(pauser=look)
    )

    assert replayed.exit_code == 0, replayed.message
    assert notes[0] is not None and "cassette.jsonl" in notes[0] and "--no-replay" in notes[0]
