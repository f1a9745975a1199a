"""Runs of the engine in this process, on a mock clock, answered by a scripted provider.

What the CLI tests do through a subprocess and the HTTP fakes, these do in a few milliseconds
and exactly: ``stepline.engine.api`` is called as the CLI calls it, with the provider seam
(``Hooks.provider_factory``) answered by ``ScriptedProvider`` and every wait on a mock clock.

The clock is ``settled_clock()``: a ``MockClock`` that does not jump while one of stepline's
own worker threads is busy. A run's item checkpoints and batch ledger are committed by a writer
thread, and its sync Python steps run in worker threads; a plain ``MockClock`` (threshold 0)
jumps to the next timer as soon as the loop finds nothing ready, so a commit that takes a
millisecond of real time could let virtual time run past a timer another task was about to
beat. Here the loop waits, in real time, until every ``stepline-*`` thread is back waiting for
work (or I/O arrives), and only then jumps: virtual times come out the same however slow the
machine is.
"""

from __future__ import annotations

import dis
import json
import signal
import sys
import textwrap
import threading
from collections.abc import Callable
from pathlib import Path
from types import CodeType, FrameType
from typing import Any, TypeVar

from stepline import threads
from stepline.engine import api
from stepline.engine.contract import Hooks, RunResult
from stepline.engine.events import Event, EventType
from stepline.engine.interrupts import Interrupts
from stepline.engine.pauses import PauseMode, Pauser
from stepline.engine.prepare import RunOptions
from stepline.settings import Settings
from stepline.store.items import ItemStore
from stepline.store.state import RunState, load_state
from tests.fakes.clock import MockClock
from tests.fakes.scripted import ScriptedProvider

T = TypeVar("T")


def _blocking_get_line(function: Callable[..., Any]) -> int:
    """The line of a worker loop's first ``.get()``: where it waits for its next job."""
    for instruction in dis.get_instructions(function):
        if instruction.argval == "get" and instruction.positions is not None:
            assert instruction.positions.lineno is not None
            return instruction.positions.lineno
    raise AssertionError(f"{function.__qualname__} has no .get(): update tests/inprocess.py")


def _items_queue(frame: FrameType) -> Any:
    return frame.f_locals["self"]._writes


# stepline's two kinds of worker thread: where each waits for work, and the queue it waits on
# (a SimpleQueue: its get() is a C call, so the loop's own frame is innermost while it waits)
_WORKER_LOOPS: dict[CodeType, tuple[int, Callable[[FrameType], Any]]] = {
    threads._work.__code__: (_blocking_get_line(threads._work), lambda frame: threads._jobs),
    ItemStore._write_batches.__code__: (
        _blocking_get_line(ItemStore._write_batches),
        _items_queue,
    ),
}


def _waiting_for_work(frame: FrameType) -> bool:
    """Whether a worker thread whose innermost Python frame is ``frame`` is idle: blocked
    where its loop takes the next job, with no job queued for it."""
    loop = _WORKER_LOOPS.get(frame.f_code)
    if loop is None:
        return False  # in a job: a commit, a step function
    line, queue_of = loop
    return frame.f_lineno == line and bool(queue_of(frame).empty())


def stepline_threads_busy() -> bool:
    """Whether any of stepline's worker threads is doing something (not waiting for work)."""
    frames = sys._current_frames()
    for thread in threading.enumerate():
        if not thread.name.startswith("stepline-") or thread.ident is None:
            continue
        frame = frames.get(thread.ident)
        if frame is not None and not _waiting_for_work(frame):
            return True
    return False


def settled_clock(*, start: float = 0.0) -> MockClock:
    """A ``MockClock`` that does not jump while one of stepline's worker threads is busy."""
    return MockClock(start=start, busy=stepline_threads_busy)


class InProcess:
    """One folder's runs: its config, its input, the provider and the clock they share."""

    def __init__(
        self,
        folder: Path,
        config: str,
        input_text: str = "notes\n",
        *,
        provider: ScriptedProvider | None = None,
        clock: MockClock | None = None,
    ) -> None:
        self.folder = folder
        self.config_path = folder / "pipeline-config.yaml"
        self.config_path.write_text(textwrap.dedent(config), encoding="utf-8")
        self.input_path = folder / "input.txt"
        self.input_path.write_text(input_text, encoding="utf-8")
        self.provider = provider or ScriptedProvider()
        self.clock = clock or settled_clock()
        self.settings = Settings(workdir=folder / ".pipeline")
        self.events: list[Event] = []
        self.interrupts = Interrupts()  # this run's; a test may ``interrupt()`` it
        self.pause_mode = PauseMode.NEVER  # a test that asks at pause points sets both
        self.pauser: Pauser | None = None
        self.on_event: Callable[[Event], None] | None = None  # told each event as it comes

    def write(self, name: str, text: str) -> Path:
        """A file next to the config (a Python step's module, a prompt file)."""
        path = self.folder / name
        path.write_text(textwrap.dedent(text), encoding="utf-8")
        return path

    def hooks(self) -> Hooks:
        self.interrupts = Interrupts()
        return Hooks(
            listener=self._listen,
            pause_mode=self.pause_mode,
            pauser=self.pauser,
            provider_factory=self.provider.factory,
            interrupts=self.interrupts,
        )

    def _listen(self, event: Event) -> None:
        self.events.append(event)
        if self.on_event is not None:
            self.on_event(event)

    def interrupt(self) -> None:
        """What Ctrl-C does to the run in progress (its signal handler's call)."""
        self.interrupts.request(signal.SIGINT)

    def run(self, **options: Any) -> RunResult:
        """``pipeline run`` (``options`` are ``RunOptions``'), to its end."""
        work = api.start_run(
            self.config_path,
            self.input_path,
            settings=self.settings,
            options=RunOptions(check_credentials=False, **options),
            hooks=self.hooks(),
        )
        return self.clock.run(work)

    def resume(self, run_id: str, **options: Any) -> RunResult:
        """``pipeline resume RUN_ID``, to its end."""
        work = api.resume_run(
            run_id,
            settings=self.settings,
            options=RunOptions(check_credentials=False, **options),
            hooks=self.hooks(),
        )
        return self.clock.run(work)

    # What a run left on disk.

    def run_dir(self, run_id: str) -> Path:
        return self.settings.workdir / run_id

    def state(self, run_id: str) -> RunState:
        return load_state(self.run_dir(run_id) / "state.json")

    def calls(self, run_id: str) -> list[dict[str, Any]]:
        """The run's ``llm-calls.jsonl`` records, in order."""
        path = self.run_dir(run_id) / "llm-calls.jsonl"
        if not path.exists():
            return []
        return [json.loads(line) for line in path.read_text(encoding="utf-8").splitlines()]

    def output_file(self, run_id: str, relative: str) -> Any:
        """A step's output file as JSON (``relative`` to the run folder, as in state.json)."""
        return json.loads((self.run_dir(run_id) / relative).read_text(encoding="utf-8"))

    def of_type(self, kind: EventType) -> list[Event]:
        """The events of one type this harness's runs emitted, in order."""
        return [event for event in self.events if event.type is kind]
