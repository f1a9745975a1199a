"""``retry:`` on Python and shell steps: each attempt under the step's timeout, the failures
worth trying again retried with exponential backoff and jitter (tenacity), as LLM calls are.

What is tried again: a Python function that raised (unless it raised
``stepline.errors.DoNotRetry``), a command that exited with a code ``retry_on_exit`` lists
(by default any non-zero one), and an attempt that timed out. A program that cannot be
started at all (not found, not permitted) fails at once: waiting does not install it. A
fan-out step retries each item on its own, inside the item's concurrency slot.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Awaitable, Callable

from tenacity import (
    AsyncRetrying,
    RetryCallState,
    retry_if_exception,
    stop_after_attempt,
    wait_random_exponential,
)

from stepline.errors import StepFailed
from stepline.spec import PythonStep, ShellStep, StepBase, format_duration
from stepline.steps import StepOutcome


async def attempts_of(
    step: StepBase,
    attempt: Callable[[], Awaitable[StepOutcome]],
    log: logging.Logger,
    *,
    item_key: str | None = None,
) -> tuple[StepOutcome, int]:
    """Run ``attempt`` (under the step's timeout) as often as the step's ``retry:`` allows;
    the outcome and how many attempts it took. The last failure is raised as it is."""
    timed = _timed(step, attempt)
    policy = step.retry if isinstance(step, PythonStep | ShellStep) else None
    if policy is None or policy.attempts == 1:
        return await timed(), 1
    where = f'item "{item_key}" ' if item_key is not None else ""

    def log_retry(state: RetryCallState) -> None:
        assert state.outcome is not None and state.next_action is not None
        error = state.outcome.exception()
        reason = error.reason if isinstance(error, StepFailed) else str(error)
        log.warning(
            "%sattempt %d of %d failed (%s); retrying in %s",
            where,
            state.attempt_number,
            policy.attempts,
            reason,
            format_duration(state.next_action.sleep),
        )

    retrying = AsyncRetrying(
        stop=stop_after_attempt(policy.attempts),
        wait=wait_random_exponential(multiplier=policy.initial_delay, max=policy.max_delay),
        retry=retry_if_exception(lambda error: _worth_retrying(step, error)),
        before_sleep=log_retry,
        reraise=True,
    )
    made = 0
    try:
        async for trial in retrying:
            made = trial.retry_state.attempt_number
            with trial:
                outcome = await timed()
            if not trial.retry_state.outcome or not trial.retry_state.outcome.failed:
                return outcome, made
    except StepFailed as failure:
        if made <= 1:
            raise
        again = StepFailed(
            step.id,
            f"{failure.reason} (after {made} attempts)",
            hint=failure.hint,
            artifact=failure.artifact,
            retryable=failure.retryable,
            returncode=failure.returncode,
        )
        again.attempts = made
        raise again from failure
    raise AssertionError("unreachable: tenacity either returns or re-raises")


def _timed(
    step: StepBase, attempt: Callable[[], Awaitable[StepOutcome]]
) -> Callable[[], Awaitable[StepOutcome]]:
    """``attempt`` under the step's ``timeout:``; running out of time is a failed attempt."""

    async def timed() -> StepOutcome:
        try:
            async with asyncio.timeout(step.step_timeout):
                return await attempt()
        except TimeoutError:
            raise StepFailed(
                step.id,
                f"timed out after {format_duration(step.step_timeout or 0)}",
                hint="raise the step's timeout: or make it faster",
            ) from None

    return timed


def _worth_retrying(step: StepBase, error: BaseException) -> bool:
    if not isinstance(error, StepFailed) or not error.retryable:
        return False
    if isinstance(step, ShellStep) and step.retry_on_exit is not None:
        return error.returncode in step.retry_on_exit
    return True
