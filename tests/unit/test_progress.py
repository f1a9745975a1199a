"""The terminal progress line shows how far a streamed reply has come."""

from __future__ import annotations

import io
import time

from rich.console import Console

from stepline.cli.render import ProgressPrinter, fan_out_progress_text
from stepline.engine.events import Event, EventType


def event(kind: EventType, **fields: object) -> Event:
    return Event(type=kind, run_id="r", step="ask", number=1, total=2, title="Ask", **fields)


def of(number: int, title: str, kind: EventType, **fields: object) -> Event:
    """An event of step ``number`` of three, titled ``title``."""
    return Event(type=kind, run_id="r", step=title.lower(), number=number, total=3,
                 title=title, **fields)  # fmt: skip


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


def test_fan_out_progress_reads_like_a_sentence():
    progress = {
        "total": 120,
        "done": 37,
        "failed": 2,
        "rate_per_s": 12.34,
        "eta_s": 6.6,
        "input_tokens": 4000,
        "output_tokens": 210,
        "cost_usd": 0.0123,
    }

    text = fan_out_progress_text(progress)

    assert text == "37/120 items, 2 failed · 12.3/s · ETA 6.6s · 4,210 tokens · $0.0123"


def test_fan_out_progress_shows_a_bar_in_a_terminal():
    screen = io.StringIO()
    printer = ProgressPrinter(Console(file=screen, force_terminal=True, width=120))
    progress = {"total": 10, "done": 5, "failed": 0, "reused": 0, "rate_per_s": 2.0, "eta_s": 2.5}

    printer(event(EventType.STEP_STARTED))
    printer(event(EventType.ITEM_PROGRESS, data=progress))
    time.sleep(0.4)
    printer(event(EventType.STEP_COMPLETED, data={"duration_s": 1.0}))

    shown = screen.getvalue()
    assert "5/10 items · 2.0/s · ETA 2.5s" in shown
    assert "━" in shown  # the bar


def test_fan_out_progress_in_batch_mode_counts_the_batches_requests():
    batch = {"batches": 2, "open": 1, "processing": 120, "succeeded": 30, "expired": 1}
    progress = {"total": 151, "done": 30, "failed": 1, "reused": 0, "batch": batch}

    text = fan_out_progress_text(progress)

    assert text == (
        "30/151 items, 1 failed · 2 batches (1 open): 120 processing, 30 succeeded, 1 expired"
    )


def test_every_running_step_has_its_own_live_line_in_step_order():
    screen = io.StringIO()
    terminal = Console(file=screen, force_terminal=True, width=120, color_system=None)
    printer = ProgressPrinter(terminal)

    printer(of(3, "Check", EventType.STEP_STARTED))
    printer(of(2, "Ask", EventType.STEP_STARTED))
    printer(of(3, "Check", EventType.LOG, message="hello", data={"level": "info"}))
    both = screen.getvalue()
    printer(of(2, "Ask", EventType.STEP_COMPLETED, data={"duration_s": 1.0}))
    after = screen.getvalue()[len(both) :]
    printer(of(3, "Check", EventType.STEP_COMPLETED, data={"duration_s": 2.0}))

    # a print while steps run redraws the live lines under it: both, the earlier step first
    shown = both[both.index("check: hello") :]
    assert shown.index("[2/3] Ask...") < shown.index("[3/3] Check...")
    # when one ends its line goes and the other's stays
    assert "✓ [2/3] Ask" in after
    assert "[3/3] Check..." in after[after.index("✓ [2/3] Ask") :]
    assert "[2/3] Ask..." not in after[after.index("✓ [2/3] Ask") :]
    assert "✓ [3/3] Check" in screen.getvalue()


def test_the_live_lines_step_aside_while_a_pause_prompt_asks():
    screen = io.StringIO()
    terminal = Console(file=screen, force_terminal=True, width=120, color_system=None)
    printer = ProgressPrinter(terminal)

    printer(of(1, "Slow", EventType.STEP_STARTED))
    before = len(screen.getvalue())
    with printer.aside():
        printer(of(2, "Next", EventType.STEP_STARTED))  # a step starting meanwhile
        printer(of(1, "Slow", EventType.LOG, message="still going", data={"level": "info"}))
        terminal.print("Press Enter to continue")
    asked = screen.getvalue()[before:]
    printer(of(1, "Slow", EventType.LOG, message="after", data={"level": "info"}))
    after = screen.getvalue()[before + len(asked) :]
    printer(of(1, "Slow", EventType.STEP_COMPLETED, data={"duration_s": 1.0}))
    printer(of(2, "Next", EventType.STEP_COMPLETED, data={"duration_s": 1.0}))

    # while asking: the question and the log line, no spinner lines drawn under them
    assert "Press Enter to continue" in asked and "slow: still going" in asked
    assert "[1/3] Slow..." not in asked[asked.index("Press Enter") :]
    assert "[2/3] Next..." not in asked
    # answered: both running steps are back on their live lines
    assert "[1/3] Slow..." in after and "[2/3] Next..." in after
