"""The pieces of background runs that need no background process: the command line handed to
it, following ``events.jsonl``, and how item progress is sampled into it."""

from __future__ import annotations

import asyncio
import json
from pathlib import Path

import pytest
from typer.main import get_command

from stepline.cli.app import app
from stepline.cli.background import child_args
from stepline.engine import events
from stepline.engine.events import Event, EventLog, EventType, follow_events
from stepline.store.lock import RunLock
from stepline.store.rundir import RunDir
from tests.helpers import eventually


def parse(command_name: str, args: list[str]):  # -> the command's parsed context
    command = get_command(app).commands[command_name]
    return command.make_context(command_name, list(args))


@pytest.mark.parametrize(
    ("command_name", "args"),
    [
        (
            "run",
            ["-c", "p.yaml", "--set", "a=1", "--set", "b=x y", "--no-cache", "--concurrency"]
            + ["4", "--model", "m", "--to-step", "2", "--detach", "--json", "--", "-x.txt"],
        ),
        ("resume", ["r1", "--fresh-items", "--skip-failed", "--pause", "--detach", "--debug"]),
    ],
)
def test_the_background_process_gets_every_option_it_was_given(command_name, args):
    given = parse(command_name, args)

    handed = child_args(given, workdir=Path("w"))
    again = parse(command_name, handed)

    kept_here = {"detach": False, "as_json": False}  # they shape this command's own output
    assert again.params == {**given.params, "workdir": Path("w"), **kept_here}
    assert "--detach" not in handed and "--json" not in handed


def test_pause_overrides_become_flags():
    given = parse("run", ["in.txt"])

    assert "--no-pause" in child_args(given, pause=False, run_id="x")
    assert parse("run", child_args(given, pause=False, run_id="x")).params["run_id"] == "x"


def test_follow_reads_whole_lines_and_stops_when_the_lock_is_free(tmp_path: Path):
    run_dir = RunDir(tmp_path / "r")
    run_dir.path.mkdir()
    lock = RunLock(run_dir.lock_path, "r")
    lock.acquire()
    run_dir.events_path.write_text('{"type":"a"}\n{"type":')  # the second line half-written
    followed = follow_events(run_dir, follow=True, poll_s=0.01)

    assert next(followed) == ('{"type":"a"}', {"type": "a"})
    with run_dir.events_path.open("a") as handle:
        handle.write('"b"}\nnot json\n')
    assert next(followed)[1] == {"type": "b"}
    lock.release()
    assert list(followed) == []  # "not json" skipped, then the free lock ends it


def test_item_progress_is_sampled_and_a_held_sample_is_written_later(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
):
    monkeypatch.setattr(events, "ITEM_PROGRESS_EVERY_S", 0.1)
    run_dir = RunDir(tmp_path)
    seen: list[Event] = []
    log = EventLog(run_dir, seen.append)

    def progress(step: str, done: int) -> Event:
        data = {"total": 10, "done": done, "failed": 0}
        return Event(EventType.ITEM_PROGRESS, "r", step=step, data=data)

    async def scenario() -> None:
        for done in (0, 1, 2):
            log.emit(progress("s", done))  # 0 is written, 1 and 2 held
        await asyncio.to_thread(  # the timer writes the newest held one, 2 (the loop runs on)
            eventually,
            lambda: done_counts() == [0, 2],
            what="the held sample to be written",
            ignoring=(json.JSONDecodeError,),  # a line being written
        )
        log.emit(progress("s", 10))  # all through: written at once
        log.emit(progress("t", 0))
        log.emit(progress("t", 5))  # held ...
        log.emit(Event(EventType.STEP_COMPLETED, "r", step="t"))  # ... and dropped
        # A held sample that a timer wrote late could only hide a bug, never fail the test.
        await asyncio.sleep(0.3)

    def done_counts() -> list[int | None]:
        lines = run_dir.events_path.read_text().splitlines()
        return [json.loads(line).get("data", {}).get("done") for line in lines]

    asyncio.run(scenario())

    written = [json.loads(line) for line in run_dir.events_path.read_text().splitlines()]
    assert [(e.get("step"), e.get("data", {}).get("done")) for e in written] == [
        ("s", 0),
        ("s", 2),
        ("s", 10),
        ("t", 0),
        ("t", None),
    ]
    assert len(seen) == 7  # the listener still sees every event
