"""The retry policy around one provider call: exponential backoff with jitter (tenacity).

Only ``RetryableProviderError`` is retried (429, 408, 409, 5xx, 529, timeouts, connection
errors); anything else fails at once with the provider's own message. A wait the provider asks
for (``retry-after``) is honoured, and one longer than ``max_delay`` fails the call with a
message that says so instead of sleeping past what the user allowed.
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable, Mapping
from dataclasses import dataclass
from typing import TypeVar

from tenacity import (
    AsyncRetrying,
    RetryCallState,
    retry_if_exception_type,
    stop_after_attempt,
    wait_random_exponential,
)

from stepline.errors import (
    ProviderAuthError,
    ProviderError,
    ProviderRequestError,
    RetryableProviderError,
)
from stepline.spec import RetrySpec

T = TypeVar("T")

MAX_MESSAGE_CHARS = 500
"""Where an error message is cut: a proxy's or gateway's HTML error page can be long."""

RETRYABLE_STATUSES = frozenset({408, 409, 429, 529})
"""Statuses worth retrying besides every 5xx: timeout, conflict, rate limit, overloaded."""


@dataclass(frozen=True)
class Attempt:
    """One failed attempt, as reported to the ``on_retry`` listener before the wait."""

    number: int
    error: RetryableProviderError
    wait_s: float


async def with_retries(
    call: Callable[[], Awaitable[T]],
    policy: RetrySpec,
    *,
    on_retry: Callable[[Attempt], None] | None = None,
) -> T:
    """Await ``call()`` up to ``policy.attempts`` times; the last error is raised as is.

    The first attempt runs outside tenacity, which costs a tenth of a millisecond per call
    that a wide fan-out pays thousands of times; tenacity takes over at the first failure
    (it is handed that failure as its own first attempt, so waits and counts are unchanged).
    """
    try:
        return await call()
    except RetryableProviderError as exc:
        _refuse_long_waits(exc, policy)
        first_failure: RetryableProviderError | None = exc
    backoff = wait_random_exponential(multiplier=policy.initial_delay, max=policy.max_delay)

    def wait(state: RetryCallState) -> float:
        error = _error_of(state)
        if error.retry_after is not None:
            return error.retry_after
        return float(backoff(state))

    def before_sleep(state: RetryCallState) -> None:
        if on_retry is not None and state.next_action is not None:
            on_retry(Attempt(state.attempt_number, _error_of(state), state.next_action.sleep))

    retrying = AsyncRetrying(
        stop=stop_after_attempt(policy.attempts),
        wait=wait,
        retry=retry_if_exception_type(RetryableProviderError),
        before_sleep=before_sleep,
        reraise=True,
    )
    async for attempt in retrying:
        with attempt:
            if first_failure is not None:
                failure, first_failure = first_failure, None
                raise failure
            try:
                return await call()
            except RetryableProviderError as exc:
                _refuse_long_waits(exc, policy)
                raise
    raise AssertionError("unreachable: tenacity either returns or re-raises")


def _error_of(state: RetryCallState) -> RetryableProviderError:
    assert state.outcome is not None
    error = state.outcome.exception()
    assert isinstance(error, RetryableProviderError)
    return error


def _refuse_long_waits(exc: RetryableProviderError, policy: RetrySpec) -> None:
    if exc.retry_after is not None and exc.retry_after > policy.max_delay:
        raise ProviderError(  # not retryable: waiting less than asked would only fail again
            f"{exc.message}; the provider asks to wait {exc.retry_after:g}s, "
            f"longer than retry.max_delay ({policy.max_delay:g}s)",
            hint="raise retry.max_delay to wait that long, or try again later",
            status_code=exc.status_code,
        ) from exc


def retry_after_seconds(headers: Mapping[str, str]) -> float | None:
    """The wait a response asks for: ``retry-after-ms``, else ``retry-after`` in seconds."""
    for name, scale in (("retry-after-ms", 0.001), ("retry-after", 1.0)):
        value = headers.get(name)
        if value is None:
            continue
        try:
            seconds = float(value) * scale
        except ValueError:
            continue  # an HTTP date: rare from LLM APIs; fall back to our own backoff
        if seconds >= 0:
            return seconds
    return None


def error_for_status(
    status: int, message: str, headers: Mapping[str, str], *, key_variable: str
) -> ProviderError:
    """The provider error an HTTP status means: retryable, an auth problem, or a refusal."""
    if len(message) > MAX_MESSAGE_CHARS:
        message = message[:MAX_MESSAGE_CHARS] + " [...]"
    if status == 401:
        return ProviderAuthError(message, hint=f"check {key_variable}", status_code=status)
    if status in RETRYABLE_STATUSES or status >= 500:
        retry_after = retry_after_seconds(headers)
        return RetryableProviderError(message, status_code=status, retry_after=retry_after)
    return ProviderRequestError(message, status_code=status)
