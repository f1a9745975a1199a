"""``retry:`` on Python and shell steps and their fan-out items: the exact number of attempts,
what is retried and what is not, and where the attempts show (on the mock clock, so backoff
costs no real time)."""

from __future__ import annotations

import random
from pathlib import Path

import pytest

from stepline.engine.events import EventType
from stepline.store.state import RunStatus
from tests.inprocess import InProcess

FLAKY = """
from pathlib import Path

from stepline.errors import DoNotRetry

TRIES = Path(__file__).with_name("tries.log")


def _tried(name):
    with TRIES.open("a") as log:
        log.write(name + "\\n")
    return TRIES.read_text().split().count(name)


def flaky(ctx):
    if _tried("flaky") < 3:
        raise RuntimeError("not yet")
    return "third time"


def broken(ctx):
    _tried("broken")
    raise DoNotRetry("this record is malformed")


async def slow_once(ctx):
    import asyncio
    if _tried("slow") == 1:
        await asyncio.sleep(3600)
    return "quick the second time"


def by_item(ctx):
    if ctx.item == "b" and _tried("b") < 2:
        raise RuntimeError("b fails once")
    return ctx.item
"""


def harness(tmp_path: Path, steps: str) -> InProcess:
    run = InProcess(tmp_path, "name: retries\nsteps:\n" + steps, "a\nb\nc\n")
    run.write("flaky.py", FLAKY)
    return run


def tries(run: InProcess) -> list[str]:
    log = run.folder / "tries.log"
    return log.read_text().split() if log.exists() else []


def warnings(run: InProcess) -> list[str]:
    return [event.message or "" for event in run.of_type(EventType.LOG)]


@pytest.fixture(autouse=True)
def seeded() -> None:
    random.seed(7)  # the jitter of the backoff


def test_a_python_step_is_tried_until_it_succeeds_within_its_attempts(tmp_path: Path) -> None:
    run = harness(
        tmp_path,
        '  - {id: f, kind: python, function: "flaky:flaky", '
        "retry: {attempts: 3, initial_delay: 1s, max_delay: 30s}}\n",
    )

    result = run.run(run_id="r")

    assert result.exit_code == 0, result.message
    assert result.outputs["f"] == "third time"
    assert tries(run) == ["flaky"] * 3
    assert run.state("r").steps[0].metrics["attempts"] == 3
    retried = [w for w in warnings(run) if "retrying in" in w]
    assert [w.split(" failed")[0] for w in retried] == ["attempt 1 of 3", "attempt 2 of 3"]
    assert 0 < run.clock.now <= 1 + 2  # two waits, each within its backoff window


def test_attempts_used_up_fail_the_step_saying_how_many(tmp_path: Path) -> None:
    run = harness(
        tmp_path, '  - {id: f, kind: python, function: "flaky:flaky", retry: {attempts: 2}}\n'
    )

    result = run.run(run_id="r")

    assert result.status is RunStatus.FAILED
    message = result.message or ""
    assert message.startswith('step "f": RuntimeError: not yet (flaky.py:')
    assert message.endswith(" (after 2 attempts)")
    assert tries(run) == ["flaky"] * 2


def test_do_not_retry_fails_at_once(tmp_path: Path) -> None:
    run = harness(
        tmp_path, '  - {id: b, kind: python, function: "flaky:broken", retry: {attempts: 5}}\n'
    )

    result = run.run(run_id="r")

    assert result.status is RunStatus.FAILED
    assert "DoNotRetry: this record is malformed" in (result.message or "")
    assert tries(run) == ["broken"]
    assert run.clock.now == 0.0


def test_a_timeout_is_a_failed_attempt(tmp_path: Path) -> None:
    run = harness(
        tmp_path,
        '  - {id: s, kind: python, function: "flaky:slow_once", timeout: 10s, '
        "retry: {attempts: 2, initial_delay: 1s, max_delay: 1s}}\n",
    )

    result = run.run(run_id="r")

    assert result.exit_code == 0, result.message
    assert result.outputs["s"] == "quick the second time"
    assert any("timed out after 10.0s" in w for w in warnings(run)), warnings(run)
    assert 10.0 < run.clock.now <= 11.0  # the timeout, then at most the 1 s backoff


@pytest.mark.parametrize(("code", "attempts"), [(3, 3), (4, 1)])
def test_a_shell_step_retries_only_the_exit_codes_it_lists(
    tmp_path: Path, code: int, attempts: int
) -> None:
    command = f'["sh", "-c", "echo x >> tries.log; exit {code}"]'
    run = harness(
        tmp_path,
        f"  - {{id: s, kind: shell, command: {command}, retry_on_exit: [3], "
        "retry: {attempts: 3, initial_delay: 1s}}\n",
    )

    result = run.run(run_id="r")

    assert result.status is RunStatus.FAILED
    assert tries(run) == ["x"] * attempts
    assert f"exited with code {code}" in (result.message or "")


def test_a_fan_out_retries_each_item_on_its_own(tmp_path: Path) -> None:
    run = harness(
        tmp_path,
        '  - {id: each, kind: python, function: "flaky:by_item", for_each: input.lines, '
        "retry: {attempts: 2}}\n",
    )

    result = run.run(run_id="r")

    assert result.exit_code == 0, result.message
    assert result.outputs["each"] == ["a", "b", "c"]
    assert tries(run) == ["b", "b"]
    assert run.state("r").steps[0].metrics["item_retries"] == 1
    assert any(w.startswith('item "') and "attempt 1 of 2" in w for w in warnings(run))


def test_without_retry_a_step_is_tried_once(tmp_path: Path) -> None:
    run = harness(tmp_path, '  - {id: f, kind: python, function: "flaky:flaky"}\n')

    assert run.run(run_id="r").status is RunStatus.FAILED
    assert tries(run) == ["flaky"]
    assert "attempts" not in run.state("r").steps[0].metrics
