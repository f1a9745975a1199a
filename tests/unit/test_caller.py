"""``LLMCaller``, the path every LLM call takes: cache, retries, fallbacks, budget, rate limit,
timeouts and call records, driven in-process against a scripted provider on virtual time."""

from __future__ import annotations

import asyncio
import logging
import random
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pytest
import yaml

from stepline import clock
from stepline.errors import (
    BudgetReached,
    PromptTooLarge,
    ProviderRequestError,
    RetryableProviderError,
)
from stepline.providers.base import Completion, LLMRequest
from stepline.providers.budget import CostBudget
from stepline.providers.caller import LLMCaller
from stepline.providers.pool import ProviderPool
from stepline.providers.ratelimit import RateLimiter
from stepline.providers.records import CallRecord
from stepline.settings import Settings
from stepline.spec import LLMParams, LLMStep, parse_spec
from stepline.store.cache import ResponseCache
from stepline.store.runs import RunStore
from tests.fakes.clock import MockClock
from tests.fakes.scripted import ScriptedProvider, overloaded, rate_limited, reply

HAIKU = "claude-haiku-5-5"  # $0.10 input, $0.50 output per million tokens; 3 chars a token
SONNET = "claude-sonnet-5-5"  # $2 input, $10 output
WINDOW_200K = "claude-haiku-4-5"  # a 200,000-token context window
UNPRICED = "claude-unlisted-9"

HAIKU_COST = (100 * 0.1 + 20 * 0.5) / 1e6  # the scripted reply's usage: 100 in, 20 out
SONNET_COST = (100 * 2.0 + 20 * 10.0) / 1e6

LOG = logging.getLogger("tests.unit.test_caller")


def llm_params(**llm: Any) -> LLMParams:
    """The ``ask`` step's merged LLM settings, from a config with these ``llm:`` defaults."""
    config = {
        "name": "calls",
        "llm": {
            "model": HAIKU,
            "max_tokens": 1000,
            "retry": {"attempts": 3, "initial_delay": "1s", "max_delay": "30s"},
            **llm,
        },
        "steps": [{"id": "ask", "kind": "llm", "prompt": "{{ input.text }}"}],
    }
    spec = parse_spec(yaml.safe_dump(config))
    step = spec.steps[0]
    assert isinstance(step, LLMStep)
    return spec.llm_params(step)


def request_for(params: LLMParams, prompt: str = "Summarise: notes") -> LLMRequest:
    return LLMRequest(model=params.model, prompt=prompt, max_tokens=params.max_tokens)


@dataclass
class Calls:
    """One caller over a scripted provider, its records, and the clock its calls run on."""

    provider: ScriptedProvider
    caller: LLMCaller
    records: list[CallRecord] = field(default_factory=list)
    clock: MockClock = field(default_factory=MockClock)

    async def ask(self, params: LLMParams, prompt: str = "Summarise: notes") -> Completion:
        return await self.caller.complete(
            step_id="ask", request=request_for(params, prompt), params=params, log=LOG
        )

    def complete(self, params: LLMParams, prompt: str = "Summarise: notes") -> Completion:
        return self.clock.run(self.ask(params, prompt))


@pytest.fixture
def provider() -> ScriptedProvider:
    return ScriptedProvider(script=reply("done", input_tokens=100, output_tokens=20))


@pytest.fixture
def cache(tmp_path: Path) -> Iterator[ResponseCache]:
    """The real response cache, where a run keeps it (``<workdir>/cache.sqlite``)."""
    store = RunStore(tmp_path / ".pipeline").cache()
    yield store
    store.close()


def make_calls(
    provider: ScriptedProvider,
    *,
    cache: ResponseCache | None = None,
    budget: CostBudget | None = None,
    rate_limit: RateLimiter | None = None,
    refresh_cache: bool = False,
) -> Calls:
    records: list[CallRecord] = []
    pool = ProviderPool(Settings(workdir=Path(".pipeline")), factory=provider.factory)
    caller = LLMCaller(
        pool,
        records.append,
        cache=cache,
        refresh_cache=refresh_cache,
        pipeline="calls",
        rate_limit=rate_limit,
        budget=budget,
    )
    return Calls(provider, caller, records)


@pytest.fixture
def seeded_random() -> Iterator[None]:
    """Backoff jitter draws from the module-level ``random``: fix it, then put it back."""
    state = random.getstate()
    random.seed(7)
    yield
    random.setstate(state)


# The first call: it reaches the provider and is recorded.


def test_a_first_call_reaches_the_provider_and_is_recorded(provider: ScriptedProvider) -> None:
    calls = make_calls(provider)
    params = llm_params(timeout="45s")

    completion = calls.complete(params)

    assert provider.prompts == ["Summarise: notes"]
    sent = provider.received[0]
    assert (sent.request.model, sent.request.max_tokens) == (HAIKU, 1000)
    assert sent.delivery.timeout == 45.0
    assert (completion.text, completion.model, completion.model_requested) == ("done", HAIKU, HAIKU)
    assert completion.attempts == 1
    assert completion.cost_usd == pytest.approx(HAIKU_COST)
    assert not completion.cache_hit
    [record] = calls.records
    assert (record.step, record.attempt, record.outcome) == ("ask", 1, "ok")
    assert (record.provider, record.model_requested, record.model) == ("anthropic", HAIKU, HAIKU)
    assert (record.input_tokens, record.output_tokens) == (100, 20)
    assert record.cost_usd == completion.cost_usd
    assert record.status_code is None and record.error is None
    assert record.request_hash == completion.request_hash
    assert record.prompt == "Summarise: notes" and record.response == "done"


def test_the_primary_model_is_sent_whatever_the_request_said(provider: ScriptedProvider) -> None:
    calls, params = make_calls(provider), llm_params()

    calls.clock.run(
        calls.caller.complete(
            step_id="ask",
            request=LLMRequest(model="something-else", prompt="p", max_tokens=1000),
            params=params,
            log=LOG,
        )
    )

    assert provider.received[0].request.model == HAIKU


def test_the_latency_recorded_is_the_time_on_the_clock() -> None:
    calls = make_calls(ScriptedProvider(latency=12.5))

    calls.complete(llm_params())

    assert calls.records[0].latency_s == 12.5


def test_a_reply_from_a_dated_model_is_priced_by_its_family() -> None:
    dated = ScriptedProvider(script=reply("done", model=f"{HAIKU}-20261001"))
    calls = make_calls(dated)

    completion = calls.complete(llm_params())

    assert (completion.model, completion.model_requested) == (f"{HAIKU}-20261001", HAIKU)
    assert completion.cost_usd == pytest.approx(HAIKU_COST)
    assert calls.records[0].model == f"{HAIKU}-20261001"


# The response cache.


def test_a_second_identical_call_is_answered_by_the_cache_for_nothing(
    provider: ScriptedProvider, cache: ResponseCache
) -> None:
    calls, params = make_calls(provider, cache=cache), llm_params()
    first = calls.complete(params)

    again = calls.complete(params)

    assert len(provider.received) == 1
    assert again.cache_hit and again.text == "done"
    assert again.cost_usd == 0.0
    assert again.attempts == 0
    assert again.request_hash == first.request_hash
    assert [record.attempt for record in calls.records] == [1, 0]
    cached = calls.records[1]
    assert cached.cache_hit and cached.outcome == "ok"
    assert cached.cost_usd == 0.0 and cached.latency_s == 0.0


def test_the_cache_survives_a_new_caller_on_the_same_file(
    provider: ScriptedProvider, cache: ResponseCache, tmp_path: Path
) -> None:
    params = llm_params()
    make_calls(provider, cache=cache).complete(params)
    reopened = RunStore(tmp_path / ".pipeline").cache()
    try:
        again = make_calls(provider, cache=reopened).complete(params)
    finally:
        reopened.close()

    assert again.cache_hit
    assert len(provider.received) == 1


def test_a_different_prompt_is_not_answered_by_the_cache(
    provider: ScriptedProvider, cache: ResponseCache
) -> None:
    calls, params = make_calls(provider, cache=cache), llm_params()
    calls.complete(params, "one")

    other = calls.complete(params, "two")

    assert not other.cache_hit
    assert provider.prompts == ["one", "two"]


def test_a_step_with_the_cache_off_asks_every_time(
    provider: ScriptedProvider, cache: ResponseCache
) -> None:
    calls, params = make_calls(provider, cache=cache), llm_params(cache={"enabled": False})
    calls.complete(params)

    again = calls.complete(params)

    assert not again.cache_hit
    assert len(provider.received) == 2


def test_refresh_cache_asks_again_and_the_new_reply_replaces_the_old(
    cache: ResponseCache,
) -> None:
    params = llm_params()
    make_calls(ScriptedProvider(script=reply("old")), cache=cache).complete(params)
    fresh = ScriptedProvider(script=reply("new"))

    refreshed = make_calls(fresh, cache=cache, refresh_cache=True).complete(params)
    later = make_calls(fresh, cache=cache).complete(params)

    assert refreshed.text == "new" and not refreshed.cache_hit
    assert later.text == "new" and later.cache_hit
    assert len(fresh.received) == 1


def test_a_failed_call_leaves_nothing_in_the_cache(
    provider: ScriptedProvider, cache: ResponseCache
) -> None:
    calls, params = make_calls(provider, cache=cache), llm_params()
    provider.then(ProviderRequestError("400 invalid_request_error", status_code=400))
    with pytest.raises(ProviderRequestError):
        calls.complete(params)

    again = calls.complete(params)

    assert not again.cache_hit
    assert len(provider.received) == 2


def test_a_discarded_reply_is_asked_for_again(
    provider: ScriptedProvider, cache: ResponseCache
) -> None:
    calls, params = make_calls(provider, cache=cache), llm_params()
    calls.caller.discard(calls.complete(params))

    again = calls.complete(params)

    assert not again.cache_hit
    assert len(provider.received) == 2


# Retries.


def test_a_429_then_a_reply_makes_two_records(provider: ScriptedProvider) -> None:
    calls = make_calls(provider.then(rate_limited(2.0)))

    completion = calls.complete(llm_params())

    assert completion.attempts == 2 and completion.text == "done"
    assert provider.times == [0.0, 2.0]
    failed, answered = calls.records
    assert (failed.attempt, failed.outcome, failed.status_code) == (1, "error", 429)
    assert failed.cost_usd is None and failed.model is None
    assert (answered.attempt, answered.outcome, answered.status_code) == (2, "ok", None)
    assert answered.cost_usd == pytest.approx(HAIKU_COST)
    assert failed.request_hash == answered.request_hash


def test_each_retry_is_logged_as_a_warning(
    provider: ScriptedProvider, caplog: pytest.LogCaptureFixture
) -> None:
    calls = make_calls(provider.then(rate_limited(2.0), overloaded()))

    with caplog.at_level(logging.WARNING, logger=LOG.name):
        calls.complete(llm_params(retry={"attempts": 3, "initial_delay": 1, "max_delay": 5}))

    retries = [entry for entry in caplog.records if entry.name == LOG.name]
    assert len(retries) == 2
    assert all(HAIKU in entry.getMessage() for entry in retries)


def test_a_model_that_always_fails_uses_exactly_its_attempts(
    provider: ScriptedProvider,
) -> None:
    calls = make_calls(provider.then(*(rate_limited(1.0) for _ in range(4))))

    with pytest.raises(RetryableProviderError):
        calls.complete(llm_params(retry={"attempts": 4, "max_delay": 5}))

    assert provider.times == [0.0, 1.0, 2.0, 3.0]
    assert [(record.attempt, record.status_code) for record in calls.records] == [
        (1, 429),
        (2, 429),
        (3, 429),
        (4, 429),
    ]


def test_a_400_fails_at_once_without_retrying(provider: ScriptedProvider) -> None:
    refusal = ProviderRequestError("400 invalid_request_error", status_code=400)
    calls = make_calls(provider.then(refusal))

    with pytest.raises(ProviderRequestError) as raised:
        calls.complete(llm_params())

    assert raised.value is refusal
    assert len(provider.received) == 1
    [record] = calls.records
    assert (record.outcome, record.status_code) == ("error", 400)


# Fallback models.


def test_the_fallback_model_is_asked_once_the_primary_used_its_attempts(
    provider: ScriptedProvider, caplog: pytest.LogCaptureFixture
) -> None:
    calls = make_calls(provider.then(overloaded(), overloaded()))
    params = llm_params(retry={"attempts": 2, "max_delay": 5}, fallback_models=[SONNET])

    with caplog.at_level(logging.WARNING, logger=LOG.name):
        completion = calls.complete(params)

    assert [sent.request.model for sent in provider.received] == [HAIKU, HAIKU, SONNET]
    assert (completion.model_requested, completion.model) == (SONNET, SONNET)
    assert completion.attempts == 1  # the fallback's own attempts
    assert completion.cost_usd == pytest.approx(SONNET_COST)
    assert [(r.model_requested, r.attempt, r.outcome) for r in calls.records] == [
        (HAIKU, 1, "error"),
        (HAIKU, 2, "error"),
        (SONNET, 1, "ok"),
    ]
    assert any(SONNET in entry.getMessage() for entry in caplog.records)


def test_the_fallback_gets_its_own_full_set_of_attempts(provider: ScriptedProvider) -> None:
    calls = make_calls(provider.then(*(rate_limited(1.0) for _ in range(4))))
    params = llm_params(retry={"attempts": 2, "max_delay": 5}, fallback_models=[SONNET])

    with pytest.raises(RetryableProviderError):
        calls.complete(params)

    assert [(r.model_requested, r.attempt) for r in calls.records] == [
        (HAIKU, 1),
        (HAIKU, 2),
        (SONNET, 1),
        (SONNET, 2),
    ]
    assert provider.times == [0.0, 1.0, 1.0, 2.0]  # no wait between the models


def test_fallbacks_are_tried_in_order(provider: ScriptedProvider) -> None:
    calls = make_calls(provider.then(overloaded(), overloaded()))
    params = llm_params(retry={"attempts": 1}, fallback_models=[SONNET, WINDOW_200K])

    completion = calls.complete(params)

    assert [sent.request.model for sent in provider.received] == [HAIKU, SONNET, WINDOW_200K]
    assert completion.model_requested == WINDOW_200K


def test_a_400_from_the_primary_does_not_fall_back(provider: ScriptedProvider) -> None:
    calls = make_calls(provider.then(ProviderRequestError("400 bad", status_code=400)))

    with pytest.raises(ProviderRequestError):
        calls.complete(llm_params(fallback_models=[SONNET]))

    assert [sent.request.model for sent in provider.received] == [HAIKU]


def test_a_fallback_reply_is_cached_for_the_primary_request(
    provider: ScriptedProvider, cache: ResponseCache
) -> None:
    calls = make_calls(provider.then(overloaded()), cache=cache)
    params = llm_params(retry={"attempts": 1}, fallback_models=[SONNET])
    calls.complete(params)

    again = calls.complete(params)

    assert again.cache_hit and again.model == SONNET
    assert len(provider.received) == 2


# The context window, before anything is sent.


def test_a_prompt_too_large_for_the_window_fails_before_any_request(
    provider: ScriptedProvider,
) -> None:
    calls = make_calls(provider)
    # At most 5 characters a token: 1,000,005 characters are surely over 200,000 tokens.
    prompt = "x" * 1_000_005

    with pytest.raises(PromptTooLarge) as raised:
        calls.complete(llm_params(model=WINDOW_200K), prompt)

    assert "200,000" in raised.value.message
    assert provider.received == []
    assert calls.records == []


def test_a_prompt_that_may_just_fit_the_window_is_sent(provider: ScriptedProvider) -> None:
    calls = make_calls(provider)

    calls.complete(llm_params(model=WINDOW_200K), "x" * 1_000_004)  # at least 200,000 tokens

    assert len(provider.received) == 1


def test_a_prompt_too_large_for_the_primary_goes_to_a_fallback_with_room(
    provider: ScriptedProvider,
) -> None:
    calls = make_calls(provider)
    params = llm_params(model=WINDOW_200K, fallback_models=[HAIKU])  # a 1,000,000-token window

    completion = calls.complete(params, "x" * 1_500_000)

    assert [sent.request.model for sent in provider.received] == [HAIKU]
    assert completion.model_requested == HAIKU


def test_a_model_without_a_known_window_is_never_refused(provider: ScriptedProvider) -> None:
    calls = make_calls(provider)

    calls.complete(llm_params(model=UNPRICED), "x" * 6_000_000)

    assert len(provider.received) == 1


# The budget.

# 300 characters at 3 a token are 100 input tokens; with a full 1,000-token reply Haiku 5.5
# can cost at most 100 * $0.10 + 1,000 * $0.50 per million.
BOUND_PROMPT = "x" * 300
HAIKU_BOUND = (100 * 0.1 + 1000 * 0.5) / 1e6  # $0.00051


def test_a_budget_that_cannot_afford_the_max_tokens_bound_sends_nothing(
    provider: ScriptedProvider,
) -> None:
    budget = CostBudget(HAIKU_BOUND - 1e-6)
    calls = make_calls(provider, budget=budget)

    with pytest.raises(BudgetReached) as raised:
        calls.complete(llm_params(), BOUND_PROMPT)

    assert HAIKU in raised.value.message
    assert provider.received == []
    assert calls.records == []
    assert budget.spent_usd == 0.0


def test_a_budget_that_affords_exactly_the_bound_sends_the_call_and_counts_its_cost(
    provider: ScriptedProvider,
) -> None:
    budget = CostBudget(round(HAIKU_BOUND, 8))
    calls = make_calls(provider, budget=budget)

    completion = calls.complete(llm_params(), BOUND_PROMPT)

    assert len(provider.received) == 1
    assert budget.spent_usd == completion.cost_usd == pytest.approx(HAIKU_COST)


def test_the_hold_of_a_call_is_given_back_so_the_next_fits(provider: ScriptedProvider) -> None:
    """Each call holds the full bound but costs far less: two calls fit a budget of one bound
    plus one reply (and a margin for float sums), which would refuse the second if the first
    call's hold were kept."""
    budget = CostBudget(HAIKU_BOUND + HAIKU_COST + 1e-9)
    calls = make_calls(provider, budget=budget)
    params = llm_params()

    calls.complete(params, BOUND_PROMPT)
    calls.complete(params, "y" * 300)

    assert len(provider.received) == 2
    assert budget.spent_usd == pytest.approx(2 * HAIKU_COST)


def test_a_failed_attempt_gives_back_its_hold_before_the_retry(
    provider: ScriptedProvider,
) -> None:
    budget = CostBudget(round(HAIKU_BOUND, 8))
    calls = make_calls(provider.then(rate_limited(1.0)), budget=budget)

    completion = calls.complete(llm_params(), BOUND_PROMPT)

    assert completion.attempts == 2
    assert budget.spent_usd == pytest.approx(HAIKU_COST)


def test_cached_replies_are_free_and_never_checked_against_the_budget(
    provider: ScriptedProvider, cache: ResponseCache
) -> None:
    params = llm_params()
    make_calls(provider, cache=cache).complete(params, BOUND_PROMPT)
    spent = CostBudget(1.0, spent_usd=1.0)  # nothing left

    again = make_calls(provider, cache=cache, budget=spent).complete(params, BOUND_PROMPT)

    assert again.cache_hit
    assert spent.spent_usd == 1.0


def test_an_interrupted_call_is_recorded_and_gives_back_its_hold() -> None:
    slow = ScriptedProvider(latency=30.0)
    budget = CostBudget(round(HAIKU_BOUND, 8))
    calls = make_calls(slow, budget=budget)
    params = llm_params()

    async def main() -> None:
        call = asyncio.create_task(calls.ask(params, BOUND_PROMPT))
        await asyncio.sleep(10)
        call.cancel()
        with pytest.raises(asyncio.CancelledError):
            await call

    calls.clock.run(main())

    [record] = calls.records
    assert (record.outcome, record.error, record.latency_s) == ("error", "interrupted", 10.0)
    assert budget.spent_usd == 0.0
    budget.reserve(round(HAIKU_BOUND, 8), model=HAIKU)  # the whole budget is free again


def test_a_large_prompt_is_held_at_the_dearer_tier() -> None:
    """Above 100,000 prompt tokens Haiku 5.5 charges $0.50/$2.50 for the whole request."""
    prompt = "x" * 300_003  # 100,001 tokens
    bound = round((100_001 * 0.5 + 1000 * 2.5) / 1e6, 8)
    below = make_calls(ScriptedProvider(), budget=CostBudget(bound - 1e-6))
    at = make_calls(ScriptedProvider(), budget=CostBudget(bound))

    with pytest.raises(BudgetReached):
        below.complete(llm_params(), prompt)
    at.complete(llm_params(), prompt)

    assert below.provider.received == []
    assert len(at.provider.received) == 1


# Unknown prices: unknown, never $0.


def test_an_unpriced_model_costs_unknown_and_is_warned_about_once(
    provider: ScriptedProvider, caplog: pytest.LogCaptureFixture
) -> None:
    calls, params = make_calls(provider), llm_params(model=UNPRICED)

    with caplog.at_level(logging.WARNING, logger=LOG.name):
        first = calls.complete(params, "one")
        second = calls.complete(params, "two")

    assert first.cost_usd is None and second.cost_usd is None
    assert [record.cost_usd for record in calls.records] == [None, None]
    assert [record.outcome for record in calls.records] == ["ok", "ok"]
    warnings = [entry for entry in caplog.records if UNPRICED in entry.getMessage()]
    assert len(warnings) == 1
    assert warnings[0].levelno == logging.WARNING


def test_a_budget_lets_unpriced_calls_through_and_warns_once(
    provider: ScriptedProvider, caplog: pytest.LogCaptureFixture
) -> None:
    budget = CostBudget(0.0)  # nothing priced would fit
    calls, params = make_calls(provider, budget=budget), llm_params(model=UNPRICED)

    with caplog.at_level(logging.WARNING, logger=LOG.name):
        calls.complete(params, "one")
        calls.complete(params, "two")

    assert len(provider.received) == 2
    assert budget.spent_usd == 0.0
    budget_warnings = [entry for entry in caplog.records if "budget" in entry.getMessage()]
    assert len(budget_warnings) == 1


# The rate limit.


def test_the_rate_limit_spaces_every_attempt_retries_included(
    provider: ScriptedProvider,
) -> None:
    calls = make_calls(provider.then(rate_limited(0.0)), rate_limit=RateLimiter(0.5))
    params = llm_params()

    async def main() -> None:
        await calls.ask(params, "one")  # a 429 asking for no wait, then a reply
        await calls.ask(params, "two")

    calls.clock.run(main())

    assert provider.times == [0.0, 2.0, 4.0]
    assert provider.prompts == ["one", "one", "two"]


def test_the_rate_limit_spaces_concurrent_calls(provider: ScriptedProvider) -> None:
    calls = make_calls(provider, rate_limit=RateLimiter(50 / 60))
    params = llm_params()

    async def main() -> None:
        await asyncio.gather(*(calls.ask(params, f"item {n}") for n in range(4)))

    calls.clock.run(main())

    assert provider.times == pytest.approx([0.0, 1.2, 2.4, 3.6])
    assert provider.most_in_flight == 1  # each reply comes back before the next start


def test_the_rate_limit_wait_is_not_counted_as_latency() -> None:
    slow = ScriptedProvider(latency=0.25)
    calls = make_calls(slow, rate_limit=RateLimiter(1.0))
    params = llm_params()

    async def main() -> None:
        await asyncio.gather(calls.ask(params, "one"), calls.ask(params, "two"))

    calls.clock.run(main())

    assert slow.times == [0.0, 1.0]
    assert [record.latency_s for record in calls.records] == [0.25, 0.25]


# The per-request timeout.


def test_a_timeout_shorter_than_the_reply_fails_the_attempt_at_exactly_that_time() -> None:
    slow = ScriptedProvider(latency=30.0)
    calls = make_calls(slow)
    params = llm_params(timeout="5s", retry={"attempts": 1})

    async def main() -> float:
        with pytest.raises(RetryableProviderError):
            await calls.ask(params)
        return clock.monotonic()

    assert calls.clock.run(main()) == 5.0
    [record] = calls.records
    assert (record.outcome, record.latency_s, record.status_code) == ("error", 5.0, None)


@pytest.mark.usefixtures("seeded_random")
def test_a_timed_out_attempt_is_retried_and_each_attempt_gets_the_full_timeout() -> None:
    slow = ScriptedProvider(latency=30.0)
    calls = make_calls(slow)
    params = llm_params(timeout="5s", retry={"attempts": 3, "initial_delay": 1, "max_delay": 5})

    async def main() -> float:
        with pytest.raises(RetryableProviderError):
            await calls.ask(params)
        return clock.monotonic()

    ended = calls.clock.run(main())

    assert [record.latency_s for record in calls.records] == [5.0, 5.0, 5.0]
    assert [sent.delivery.timeout for sent in slow.received] == [5.0, 5.0, 5.0]
    assert ended == pytest.approx(slow.times[2] + 5.0)
    assert slow.times[1] >= 5.0 and slow.times[2] >= slow.times[1] + 5.0


def test_a_timeout_longer_than_the_reply_lets_it_arrive() -> None:
    calls = make_calls(ScriptedProvider(latency=30.0))

    completion = calls.complete(llm_params(timeout="31s"))

    assert completion.attempts == 1
    assert calls.records[0].latency_s == 30.0
