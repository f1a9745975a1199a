"""``with_retries``: what is retried, how often, and how long it waits, on virtual time."""

from __future__ import annotations

import random
from collections.abc import Awaitable, Callable, Iterator
from dataclasses import dataclass, field

import pytest

from stepline import clock
from stepline.errors import (
    ProviderAuthError,
    ProviderError,
    ProviderRequestError,
    RetryableProviderError,
)
from stepline.providers.retry import Attempt, with_retries
from stepline.spec import RetrySpec
from tests.fakes.clock import MockClock
from tests.fakes.scripted import overloaded, rate_limited


@dataclass
class Flaky:
    """A call that raises the queued errors in turn, then returns ``"ok"``; keeps its times."""

    errors: list[BaseException] = field(default_factory=list)
    calls: list[float] = field(default_factory=list)

    async def __call__(self) -> str:
        self.calls.append(clock.monotonic())
        if len(self.calls) <= len(self.errors):
            raise self.errors[len(self.calls) - 1]
        return "ok"


@dataclass
class Retried:
    """The ``on_retry`` listener: every attempt it was told about."""

    attempts: list[Attempt] = field(default_factory=list)

    def __call__(self, attempt: Attempt) -> None:
        self.attempts.append(attempt)

    @property
    def numbers(self) -> list[int]:
        return [attempt.number for attempt in self.attempts]

    @property
    def waits(self) -> list[float]:
        return [attempt.wait_s for attempt in self.attempts]


def run(
    call: Callable[[], Awaitable[str]],
    policy: RetrySpec,
    on_retry: Callable[[Attempt], None] | None = None,
) -> str:
    return MockClock().run(with_retries(call, policy, on_retry=on_retry))


def gaps(times: list[float]) -> list[float]:
    return [later - earlier for earlier, later in zip(times, times[1:], strict=False)]


@pytest.fixture
def seeded_random() -> Iterator[None]:
    """tenacity's jitter draws from the module-level ``random``: fix it, then put it back."""
    state = random.getstate()
    random.seed(20260101)
    yield
    random.setstate(state)


def test_a_call_that_succeeds_is_made_once_and_nothing_is_reported() -> None:
    call, retried = Flaky(), Retried()

    assert run(call, RetrySpec(), retried) == "ok"

    assert call.calls == [0.0]
    assert retried.attempts == []


def test_retryable_errors_are_retried_until_the_call_succeeds() -> None:
    call, retried = Flaky([overloaded(), rate_limited(2.0)]), Retried()

    assert run(call, RetrySpec(attempts=5, initial_delay=1, max_delay=10), retried) == "ok"

    assert len(call.calls) == 3
    assert retried.numbers == [1, 2]


def test_after_the_last_attempt_the_last_error_is_raised_as_is() -> None:
    errors: list[BaseException] = [rate_limited(1.0), rate_limited(1.0), rate_limited(1.0)]
    call, retried = Flaky(list(errors)), Retried()

    with pytest.raises(RetryableProviderError) as raised:
        run(call, RetrySpec(attempts=3, max_delay=10), retried)

    assert raised.value is errors[2]
    assert len(call.calls) == 3
    assert retried.numbers == [1, 2]  # no report after the last attempt: nothing follows it


def test_one_attempt_means_no_retry() -> None:
    error = overloaded()
    call = Flaky([error])

    with pytest.raises(RetryableProviderError) as raised:
        run(call, RetrySpec(attempts=1))

    assert raised.value is error
    assert call.calls == [0.0]


@pytest.mark.parametrize(
    "error",
    [
        ProviderRequestError("400 invalid_request_error", status_code=400),
        ProviderAuthError("401 authentication_error", status_code=401),
        ProviderError("the reply is too large"),
        ValueError("not a provider error at all"),
    ],
    ids=["request-400", "auth-401", "plain-provider-error", "other-exception"],
)
def test_errors_that_are_not_retryable_fail_after_one_call(error: BaseException) -> None:
    call, retried = Flaky([error]), Retried()

    with pytest.raises(type(error)) as raised:
        run(call, RetrySpec(attempts=5), retried)

    assert raised.value is error
    assert call.calls == [0.0]
    assert retried.attempts == []


def test_a_non_retryable_error_after_retries_stops_them_at_once() -> None:
    refusal = ProviderRequestError("400 invalid_request_error", status_code=400)
    call = Flaky([overloaded(), refusal])

    with pytest.raises(ProviderRequestError) as raised:
        run(call, RetrySpec(attempts=5, initial_delay=1, max_delay=10))

    assert raised.value is refusal
    assert len(call.calls) == 2


def test_retry_after_is_waited_exactly_before_the_next_attempt() -> None:
    call, retried = Flaky([rate_limited(7.5), rate_limited(2.25)]), Retried()

    run(call, RetrySpec(attempts=5, initial_delay=1, max_delay=60), retried)

    assert call.calls == [0.0, 7.5, 9.75]
    assert retried.waits == [7.5, 2.25]


def test_a_retry_after_of_exactly_max_delay_is_still_waited() -> None:
    call = Flaky([rate_limited(60.0)])

    assert run(call, RetrySpec(attempts=2, max_delay=60)) == "ok"

    assert call.calls == [0.0, 60.0]


def test_a_retry_after_of_zero_retries_at_once() -> None:
    call = Flaky([rate_limited(0.0)])

    assert run(call, RetrySpec(attempts=2, initial_delay=30, max_delay=60)) == "ok"

    assert call.calls == [0.0, 0.0]  # the provider's 0 wins over our own 30 s backoff


def test_a_retry_after_longer_than_max_delay_fails_at_once_without_waiting() -> None:
    asked = rate_limited(90.0)
    call, retried = Flaky([asked]), Retried()

    async def main() -> float:
        with pytest.raises(ProviderError) as raised:
            await with_retries(call, RetrySpec(attempts=5, max_delay=60), on_retry=retried)
        error = raised.value
        assert not isinstance(error, RetryableProviderError)
        assert error.status_code == 429
        assert error.__cause__ is asked
        assert "90" in error.message  # names the wait asked for...
        assert "60" in error.message  # ...and the limit it passes
        assert error.hint is not None and "max_delay" in error.hint
        return clock.monotonic()

    assert MockClock().run(main()) == 0.0
    assert call.calls == [0.0]
    assert retried.attempts == []


def test_a_long_retry_after_on_a_later_attempt_also_stops_the_retries() -> None:
    call = Flaky([overloaded(), rate_limited(600.0)])

    with pytest.raises(ProviderError) as raised:
        run(call, RetrySpec(attempts=5, initial_delay=1, max_delay=60))

    assert not isinstance(raised.value, RetryableProviderError)
    assert "600" in raised.value.message
    assert len(call.calls) == 2


def test_on_retry_is_told_each_failed_attempt_in_order_with_its_error() -> None:
    errors: list[BaseException] = [rate_limited(1.0), overloaded(), rate_limited(3.0)]
    call, retried = Flaky(list(errors)), Retried()

    run(call, RetrySpec(attempts=4, initial_delay=1, max_delay=10), retried)

    assert retried.numbers == [1, 2, 3]
    assert [attempt.error for attempt in retried.attempts] == errors


@pytest.mark.usefixtures("seeded_random")
def test_backoff_waits_stay_within_the_exponential_window_and_max_delay() -> None:
    policy = RetrySpec(attempts=8, initial_delay=0.5, max_delay=5)
    waits_by_attempt: dict[int, list[float]] = {number: [] for number in range(1, 8)}
    for _ in range(25):
        call, retried = Flaky([overloaded() for _ in range(7)]), Retried()
        run(call, policy, retried)
        assert retried.numbers == [1, 2, 3, 4, 5, 6, 7]
        for attempt in retried.attempts:
            waits_by_attempt[attempt.number].append(attempt.wait_s)

    for number, waits in waits_by_attempt.items():
        window = min(0.5 * 2 ** (number - 1), 5.0)  # 0.5, 1, 2, 4, 5, 5, 5
        assert all(0.0 <= wait <= window for wait in waits), (number, waits)
    # Jitter spreads the waits over the window, and the window grows: the later attempts
    # wait longer than the first could.
    assert max(waits_by_attempt[5]) > 0.5
    assert max(waits_by_attempt[7]) > 4.0
    assert len(set(waits_by_attempt[7])) > 1


@pytest.mark.usefixtures("seeded_random")
def test_the_waits_slept_are_the_waits_reported() -> None:
    call, retried = Flaky([overloaded() for _ in range(5)]), Retried()

    run(call, RetrySpec(attempts=6, initial_delay=1, max_delay=8), retried)

    assert len(call.calls) == 6
    assert gaps(call.calls) == pytest.approx(retried.waits, abs=1e-9)
    assert all(wait > 0 for wait in retried.waits)


def test_the_provider_wait_and_our_backoff_mix_per_attempt() -> None:
    """A retry-after decides its own attempt's wait; the next attempt without one backs off."""
    call, retried = Flaky([rate_limited(4.0), overloaded()]), Retried()

    run(call, RetrySpec(attempts=3, initial_delay=1, max_delay=60), retried)

    assert retried.waits[0] == 4.0
    assert 0.0 <= retried.waits[1] <= 2.0  # attempt 2's window: initial_delay * 2
    assert call.calls[1] == 4.0
    assert call.calls[2] - call.calls[1] == pytest.approx(retried.waits[1], abs=1e-9)
