"""The terminal progress line shows how far a streamed reply has come."""

from __future__ import annotations

import io
import time

from rich.console import Console

from stepline.cli.render import ProgressPrinter
from stepline.engine.events import Event, EventType


def event(kind: EventType, **fields: object) -> Event:
    return Event(type=kind, run_id="r", step="ask", number=1, total=2, title="Ask", **fields)


def test_streamed_tokens_appear_on_the_live_line_in_a_terminal():
    screen = io.StringIO()
    printer = ProgressPrinter(Console(file=screen, force_terminal=True, width=120))

    printer(event(EventType.STEP_STARTED))
    printer(event(EventType.LLM_PROGRESS, message="claude-x", data={"output_tokens": 1234}))
    time.sleep(0.4)  # the live line redraws 8 times a second
    printer(event(EventType.STEP_COMPLETED, data={"duration_s": 1.0}))

    assert "claude-x streaming, ~1,234 tokens" in screen.getvalue()


def test_plain_output_prints_no_progress_lines():
    screen = io.StringIO()
    printer = ProgressPrinter(Console(file=screen, force_terminal=False, width=120))

    printer(event(EventType.STEP_STARTED))
    for tokens in range(50):
        printer(event(EventType.LLM_PROGRESS, message="m", data={"output_tokens": tokens}))
    printer(event(EventType.STEP_COMPLETED, data={"duration_s": 1.0}))

    assert screen.getvalue().splitlines() == ["[1/2] Ask...", "✓ [1/2] Ask 1.0s"]
