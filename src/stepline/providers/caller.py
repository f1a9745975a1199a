"""The one path every LLM call takes: cache -> retry policy -> provider -> fallbacks, recorded.

Each attempt (successful or not) becomes a ``CallRecord`` handed to the run's recorder, so a
person can see every request a step made, which model answered, and what it cost in tokens
and time. Retries happen per model; once a model has used its attempts on retryable errors,
the next fallback model gets its own attempts. Errors that retrying cannot fix (400, 401,
404...) fail at once, without fallbacks.
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import Callable
from dataclasses import dataclass, replace
from typing import Any, Protocol, cast

from stepline import clock
from stepline.errors import (
    PromptTooLarge,
    ProviderError,
    ProviderRequestError,
    RetryableProviderError,
)
from stepline.faults import crash_point
from stepline.providers.base import Completion, Delivery, LLMRequest, StreamProgress, Usage
from stepline.providers.batches import BatchProvider, BatchResult
from stepline.providers.budget import CostBudget
from stepline.providers.pool import ProviderPool
from stepline.providers.pricing import Pricer
from stepline.providers.ratelimit import RateLimiter
from stepline.providers.records import CallRecord, CallSite, RecordCall
from stepline.providers.requests import (
    REPLAY,
    Recording,
    Target,
    cache_label,
    find_recorded,
    recorded_keys,
    request_fields,
    request_hash,
    targets,
)
from stepline.providers.retry import Attempt, with_retries
from stepline.providers.tokens import (
    estimate_tokens,
    fewest_tokens,
    request_characters,
)
from stepline.spec import LLMParams
from stepline.spec.model_rules import chars_per_token

ShowProgress = Callable[[str, StreamProgress], None]


@dataclass(frozen=True)
class BatchSent:
    """One item's request in a provider batch: what was sent, where, and its budget hold."""

    site: CallSite
    params: LLMParams
    request: LLMRequest
    batch_id: str | None
    submitted_at: float  # wall-clock time (the batch may have been sent by another process)
    held_usd: float = 0.0

    def latency_s(self) -> float:
        return max(0.0, time.time() - self.submitted_at)


class ResponseStore(Protocol):
    """Where completions are cached by request hash (``store.cache.ResponseCache``)."""

    def get(self, key: str, *, ttl_s: float) -> dict[str, Any] | None: ...

    def put(
        self, key: str, model: str, completion: dict[str, Any], *, label: str | None = None
    ) -> None: ...

    def delete(self, key: str) -> None: ...


class LLMCaller:
    """Makes LLM calls for the steps of one run."""

    def __init__(
        self,
        pool: ProviderPool,
        record: RecordCall | None = None,
        pricer: Pricer | None = None,
        *,
        cache: ResponseStore | None = None,
        refresh_cache: bool = False,
        replay: Recording | None = None,
        recorder: Recording | None = None,
        cassettes: Callable[[str], Recording] | None = None,
        show_progress: ShowProgress | None = None,
        pipeline: str = "",
        rate_limit: RateLimiter | None = None,
        budget: CostBudget | None = None,
    ) -> None:
        self._pool = pool
        self._rate_limit = rate_limit
        self._budget = budget
        self._pipeline = pipeline
        self._record = record
        self._pricer = pricer or Pricer()
        self._cache = cache
        self._refresh_cache = refresh_cache
        self._replay = replay
        self._recorder = recorder
        self._cassettes = cassettes
        self._show_progress = show_progress
        self._unpriced: set[str] = set()
        self._unbudgeted: set[str] = set()
        self._noticed: set[str] = set()
        self._cache_checked: set[tuple[str, str]] = set()

    async def complete(
        self,
        *,
        step_id: str,
        request: LLMRequest,
        params: LLMParams,
        log: logging.Logger,
        item_key: str | None = None,
    ) -> Completion:
        """Answer from a replayed cassette, else the cache, else the models in order."""
        site = CallSite(step_id, item_key)
        candidates = targets(params)
        primary = candidates[0]
        request = replace(request, model=primary.model)
        if self._replay is not None:
            return self._replayed(site, primary, request, self._replay)
        if primary.provider == REPLAY:
            return self._replayed(site, primary, request, self._cassette(params))
        if request.cached_chars is not None:
            self._check_cacheable(site.step, primary.model, request, log)
        key = request_hash(primary, request)
        use_cache = self._cache is not None and params.cache.enabled
        if use_cache and self._cache is not None and not self._refresh_cache:
            data = self._cache.get(key, ttl_s=params.cache.ttl)
            if data is not None:
                return self._answered_from_store(site, primary, request, key, data, "cache")
        completion = await self._ask_models(site, request, params, log, candidates, key)
        self._keep(site, params, primary, request, key, completion)
        return replace(completion, request_hash=key)

    def _keep(
        self,
        site: CallSite,
        params: LLMParams,
        target: Target,
        request: LLMRequest,
        key: str,
        completion: Completion,
    ) -> None:
        """Put a new reply in the response cache and the cassette being recorded."""
        if self._cache is not None and params.cache.enabled:
            label = cache_label(self._pipeline, site.step)
            self._cache.put(key, completion.model, completion.to_cache(), label=label)
        if self._recorder is not None:
            self._recorder.append(key, request_fields(target, request), completion.to_cache())

    def batch_provider(self, params: LLMParams) -> BatchProvider | None:
        """The primary model's provider when it has a batch API (and no cassette answers)."""
        target = targets(params)[0]
        if self._replay is not None or target.provider == REPLAY:
            return None
        provider = self._pool.get(target.provider, target.base_url)
        return cast(BatchProvider, provider) if hasattr(provider, "submit_batch") else None

    def has_answer(self, request: LLMRequest, params: LLMParams) -> bool:
        """Whether the response cache already answers ``request`` (so no batch needs it)."""
        if self._cache is None or not params.cache.enabled or self._refresh_cache:
            return False
        target = targets(params)[0]
        key = request_hash(target, replace(request, model=target.model))
        return self._cache.get(key, ttl_s=params.cache.ttl) is not None

    def hold_for_batch(self, request: LLMRequest, params: LLMParams, log: logging.Logger) -> float:
        """Reserve the most a batch request could cost (batch prices) against the budget."""
        return self._hold_budget(targets(params)[0], request, log, batch=True)

    def release_hold(self, held_usd: float) -> None:
        """Give back a budget hold for a request that was never sent."""
        if self._budget is not None:
            self._budget.settle(held_usd, None)

    def batch_answered(
        self, sent: BatchSent, result: BatchResult, log: logging.Logger
    ) -> Completion:
        """A batch request's reply, priced at batch rates, recorded and cached like a live
        call's; the request's budget hold is settled."""
        assert result.completion is not None
        target, request, key, record = self._batch_call(sent)
        cost: float | None = None
        try:
            usage = result.completion.usage
            cost = self._cost(result.completion.model or target.model, usage, log, batch=True)
        finally:
            if self._budget is not None:
                self._budget.settle(sent.held_usd, cost)
        completion = replace(
            result.completion, model_requested=target.model, cost_usd=cost, request_hash=key
        )
        self._emit(replace(record.answered(completion, sent.latency_s()), batch_id=sent.batch_id))
        self._keep(sent.site, sent.params, target, request, key, completion)
        return completion

    def batch_failed(self, sent: BatchSent, message: str, status_code: int | None) -> None:
        """Record a batch request that came back without a reply (errored, expired...)."""
        if self._budget is not None:
            self._budget.settle(sent.held_usd, None)
        record = self._batch_call(sent)[3]
        failed = record.failed(message, status_code, sent.latency_s())
        self._emit(replace(failed, batch_id=sent.batch_id))

    def _batch_call(self, sent: BatchSent) -> tuple[Target, LLMRequest, str, CallRecord]:
        """Where a batch request went, as sent, its hash, and its record so far."""
        target = targets(sent.params)[0]
        request = replace(sent.request, model=target.model)
        key = request_hash(target, request)
        return (
            target,
            request,
            key,
            CallRecord.pending(
                site=sent.site,
                attempt=1,
                provider=target.provider,
                model=target.model,
                key=key,
                request=request,
            ),
        )

    def discard(self, completion: Completion) -> None:
        """Drop a reply the step rejected (not JSON, refused) so a retry asks the model again."""
        if self._cache is not None and completion.request_hash is not None:
            self._cache.delete(completion.request_hash)

    def _cassette(self, params: LLMParams) -> Recording:
        if self._cassettes is None or params.cassette is None:
            raise ProviderRequestError("provider replay needs a cassette: file")
        return self._cassettes(params.cassette)

    def _replayed(
        self, site: CallSite, target: Target, request: LLMRequest, cassette: Recording
    ) -> Completion:
        found = find_recorded(cassette, target, request)
        if found is None:
            raise ProviderRequestError(
                "no recorded reply for this request in the cassette "
                f"(request {recorded_keys(cassette, target, request)[0][1]})",
                hint="record it with --record FILE against a real provider, "
                "or check that the prompt, model and input match the recording",
            )
        answered_by, key, data = found
        return self._answered_from_store(site, answered_by, request, key, data, "replay")

    def _answered_from_store(
        self,
        site: CallSite,
        target: Target,
        request: LLMRequest,
        key: str,
        data: dict[str, Any],
        source: str,
    ) -> Completion:
        """A completion from the response cache or a cassette: no request, no cost."""
        completion = replace(Completion.from_cache(data), cache_hit=source == "cache")
        record = CallRecord.pending(
            site=site,
            attempt=0,
            provider=target.provider,
            model=target.model,
            key=key,
            request=request,
        )
        self._emit(replace(record.answered(completion, 0.0), replayed=source == "replay"))
        return replace(completion, model_requested=target.model, request_hash=key)

    async def _ask_models(
        self,
        site: CallSite,
        request: LLMRequest,
        params: LLMParams,
        log: logging.Logger,
        candidates: list[Target],
        primary_key: str,
    ) -> Completion:
        """Ask the primary model, then the fallbacks in order, each with its retry budget."""
        for index, target in enumerate(candidates):
            key = primary_key if index == 0 else None  # hashed once already for the cache
            try:
                return await self._with_retries(site, target, request, params, log, key)
            except (RetryableProviderError, PromptTooLarge) as exc:
                if index == len(candidates) - 1:
                    if index:
                        exc.message += f" (after falling back through {index} model(s))"
                    raise
                log.warning(
                    "%s: %s; falling back to %s",
                    target.model,
                    exc.message
                    if isinstance(exc, PromptTooLarge)
                    else f"failed after {params.retry.attempts} attempt(s) ({exc.message})",
                    candidates[index + 1].model,
                )
        raise AssertionError("unreachable: the last candidate returns or raises")

    async def _with_retries(
        self,
        site: CallSite,
        target: Target,
        request: LLMRequest,
        params: LLMParams,
        log: logging.Logger,
        key: str | None = None,
    ) -> Completion:
        request = replace(request, model=target.model)
        self._check_fits(target, request)
        key = key or request_hash(target, request)  # one hash for all of this model's attempts
        attempts = 0

        async def attempt() -> Completion:
            nonlocal attempts
            attempts += 1
            return await self._attempt(site, target, request, params, attempts, log, key)

        def on_retry(failed: Attempt) -> None:
            log.warning(
                "%s attempt %d failed (%s); retrying in %.2fs",
                target.model,
                failed.number,
                failed.error.status_code or "no response",
                failed.wait_s,
            )

        return await with_retries(attempt, params.retry, on_retry=on_retry)

    async def _attempt(
        self,
        site: CallSite,
        target: Target,
        request: LLMRequest,
        params: LLMParams,
        number: int,
        log: logging.Logger,
        key: str,
    ) -> Completion:
        """One HTTP request to one model, recorded whatever its outcome."""
        provider = self._pool.get(target.provider, target.base_url)
        record = CallRecord.pending(
            site=site,
            attempt=number,
            provider=target.provider,
            model=target.model,
            key=key,
            request=request,
        )
        held = self._hold_budget(target, request, log)
        cost: float | None = None
        try:
            if self._rate_limit is not None:
                await self._rate_limit.wait()
            started = clock.monotonic()
            try:
                completion = await provider.complete(request, self._delivery(site, params))
            except ProviderError as exc:
                elapsed = clock.monotonic() - started
                self._emit(record.failed(exc.message, exc.status_code, elapsed))
                raise
            except asyncio.CancelledError:  # the request may have reached the provider: say so
                self._emit(record.failed("interrupted", None, clock.monotonic() - started))
                raise
            crash_point("reply-received")
            self._tell_notices(completion, log)
            cost = self._cost(completion.model or target.model, completion.usage, log)
        finally:
            if self._budget is not None:
                self._budget.settle(held, cost)
        completion = replace(
            completion, attempts=number, model_requested=target.model, cost_usd=cost
        )
        self._emit(record.answered(completion, clock.monotonic() - started))
        return completion

    def _hold_budget(
        self, target: Target, request: LLMRequest, log: logging.Logger, *, batch: bool = False
    ) -> float:
        """Reserve the most this call could cost against the run's budget (0 when unpriced:
        a call whose price is unknown cannot be bounded, and the log says so once)."""
        if self._budget is None:
            return 0.0
        tokens = estimate_tokens(request)
        most = self._pricer.cost_usd(  # a cache write is the dearest way to read the input
            target.model,
            Usage(output_tokens=request.max_tokens, input_tokens=tokens)
            if request.cached_chars is None
            else Usage(
                output_tokens=request.max_tokens,
                cache_write_tokens=tokens,
                cache_write_1h_tokens=tokens if request.cache_ttl == "1h" else 0,
            ),
            batch=batch,
        )
        if most is None:
            if target.model not in self._unbudgeted:
                self._unbudgeted.add(target.model)
                log.warning(
                    "no price known for %s, so the budget cannot bound its calls "
                    "(add the model under pricing: in the config)",
                    target.model,
                )
            return 0.0
        self._budget.reserve(most, model=target.model)
        return most

    def _check_cacheable(
        self, step_id: str, model: str, request: LLMRequest, log: logging.Logger
    ) -> None:
        """Warn, once per step and model, when the cached prefix is too short to be cached:
        the provider would take the marker without a word and bill every item in full."""
        if (step_id, model) in self._cache_checked:
            return
        self._cache_checked.add((step_id, model))
        characters = len(request.system or "") + (request.cached_chars or 0)
        tokens = int(characters / chars_per_token(model))
        minimum = self._pricer.cache_min_tokens(model)
        if tokens < minimum:
            log.warning(
                "cache_prompt: the cached prefix (the system prompt and the start of the prompt "
                "every item shares) is about %d tokens, below the %d that %s caches, so nothing "
                "will be cached; lengthen the shared part or turn cache_prompt off",
                tokens,
                minimum,
                model,
            )

    def _check_fits(self, target: Target, request: LLMRequest) -> None:
        """Refuse, before paying for it, a prompt that cannot fit the model's context window."""
        window = self._pricer.context_window(target.model)
        if window is None:
            return
        at_least = fewest_tokens(request)
        if at_least > window:
            raise PromptTooLarge(
                f"the prompt is too large for {target.model}: at least {at_least:,} tokens "
                f"(from {request_characters(request):,} characters), and its context window "
                f"is {window:,} tokens",
                hint="shorten the input or the prompt, split the work (fan-out), "
                "or use a model with a larger context window",
            )

    def _delivery(self, site: CallSite, params: LLMParams) -> Delivery:
        show = self._show_progress
        return Delivery(
            stream=bool(params.stream),
            timeout=params.timeout,
            on_progress=(lambda progress: show(site.step, progress)) if show else None,
        )

    def _tell_notices(self, completion: Completion, log: logging.Logger) -> None:
        """Log each provider notice (a deprecated model...) once per run."""
        for notice in completion.notices:
            if notice not in self._noticed:
                self._noticed.add(notice)
                log.warning("%s", notice)

    def _cost(
        self, model: str, usage: Usage, log: logging.Logger, *, batch: bool = False
    ) -> float | None:
        cost = self._pricer.cost_usd(model, usage, batch=batch)
        if cost is None and model not in self._unpriced:
            self._unpriced.add(model)
            log.warning(
                "no price known for %s; its calls' cost is recorded as unknown "
                "(add the model under pricing: in the config)",
                model,
            )
        return cost

    def _emit(self, record: CallRecord) -> None:
        if self._record is not None:
            self._record(record)
