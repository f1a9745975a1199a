"""A provider at the seam (``stepline.providers.base.Provider``) that answers from a script.

The engine's own tests (the runner, fan-out, batch mode, the call path, retries, rate limits,
budgets) need exact control over what each request gets back and when, not the wire: that
is what the HTTP fakes in ``llm_server.py`` are for. ``ScriptedProvider`` is handed to a run
through ``Hooks(provider_factory=...)``, answers in-process, takes its time on the loop's clock
(so under ``MockClock`` a latency of 30 s costs nothing) and keeps what it was asked, when.

Like a real adapter it speaks only stepline's types: replies are ``Completion``s and failures
are stepline's provider errors (a 429 is a ``RetryableProviderError``), as the seam requires.
"""

from __future__ import annotations

import asyncio
import itertools
from collections import deque
from collections.abc import AsyncIterator, Callable, Mapping, Sequence
from dataclasses import dataclass, field

from stepline import clock
from stepline.errors import ProviderError, RetryableProviderError
from stepline.providers.base import Completion, Delivery, LLMRequest, Usage
from stepline.providers.batches import BatchRequest, BatchResult, BatchStatus

Answer = Completion | ProviderError
Script = Callable[[LLMRequest], Answer]


def reply(
    text: str, *, input_tokens: int = 100, output_tokens: int = 20, model: str | None = None
) -> Callable[[LLMRequest], Completion]:
    """An answer of ``text`` with the given usage, from the model that was asked."""

    def answer(request: LLMRequest) -> Completion:
        usage = Usage(input_tokens=input_tokens, output_tokens=output_tokens)
        return Completion(text, model or request.model, "end_turn", usage)

    return answer


def echo(request: LLMRequest) -> Completion:
    """The default answer: the prompt back, with a plausible usage."""
    usage = Usage(input_tokens=max(1, len(request.prompt) // 4), output_tokens=5)
    return Completion(f"echo: {request.prompt}", request.model, "end_turn", usage)


def by_prompt(answers: Mapping[str, Answer | Script], default: Script = echo) -> Script:
    """A script that answers a request by the first key its prompt contains, else ``default``.

    A value is an answer (the same ``Completion`` or error every time) or a script of its own.
    """

    def script(request: LLMRequest) -> Answer:
        for needle, answer in answers.items():
            if needle in request.prompt:
                return answer(request) if callable(answer) else answer
        return default(request)

    return script


def rate_limited(retry_after: float | None = None) -> RetryableProviderError:
    """What an adapter raises for a 429."""
    return RetryableProviderError(
        "anthropic: 429 rate_limit_error", status_code=429, retry_after=retry_after
    )


def overloaded() -> RetryableProviderError:
    """What an adapter raises for a 529."""
    return RetryableProviderError("anthropic: 529 overloaded_error", status_code=529)


@dataclass(frozen=True)
class Received:
    """One request as the provider got it, and when (on the loop's clock)."""

    request: LLMRequest
    delivery: Delivery
    at: float


@dataclass
class _Batch:
    requests: list[BatchRequest]
    created_at: float
    canceled: bool = False


@dataclass
class ScriptedProvider:
    """Answers ``complete`` with the next queued answer, else ``script(request)``.

    ``latency`` is how long each live request takes (on the loop's clock, bounded by the
    delivery's timeout like a real client's); ``batch_latency`` how long a batch takes to end.
    """

    script: Script = echo
    latency: float = 0.0
    batch_latency: float = 0.0
    name: str = "anthropic"
    received: list[Received] = field(default_factory=list)
    in_flight: int = 0
    most_in_flight: int = 0
    polls: list[float] = field(default_factory=list)  # when each batch_status was asked
    batches: dict[str, _Batch] = field(default_factory=dict)
    closed: bool = False
    on_request: Callable[[LLMRequest], None] | None = None  # told each request on arrival
    on_poll: Callable[[str], None] | None = None  # told each batch_status call's batch id
    _queued: deque[Answer | Script] = field(default_factory=deque)
    _ids: itertools.count[int] = field(default_factory=lambda: itertools.count(1))

    def then(self, *answers: Answer | Script) -> ScriptedProvider:
        """Queue answers for the next requests, in order, before the script takes over (an
        answer may be a script of its own, such as ``reply(...)``, called with the request)."""
        self._queued.extend(answers)
        return self

    def factory(self, provider: str, base_url: str | None) -> ScriptedProvider:
        """For ``Hooks(provider_factory=...)``: this provider, whatever is asked for."""
        return self

    @property
    def prompts(self) -> list[str]:
        return [received.request.prompt for received in self.received]

    @property
    def times(self) -> list[float]:
        return [received.at for received in self.received]

    async def complete(self, request: LLMRequest, delivery: Delivery) -> Completion:
        self.received.append(Received(request, delivery, clock.monotonic()))
        if self.on_request is not None:
            self.on_request(request)
        self.in_flight += 1
        self.most_in_flight = max(self.most_in_flight, self.in_flight)
        try:
            if self.latency:
                try:
                    async with asyncio.timeout(delivery.timeout):
                        await asyncio.sleep(self.latency)
                except TimeoutError:
                    raise RetryableProviderError(
                        f"anthropic: the request timed out after {delivery.timeout:g}s"
                    ) from None
            queued = self._queued.popleft() if self._queued else self.script
            answer = queued(request) if callable(queued) else queued
        finally:
            self.in_flight -= 1
        if isinstance(answer, ProviderError):
            raise answer
        return answer

    async def count_tokens(self, request: LLMRequest) -> int | None:
        return None

    async def aclose(self) -> None:
        self.closed = True

    # The batch API (``stepline.providers.batches.BatchProvider``).

    async def submit_batch(self, requests: Sequence[BatchRequest]) -> BatchStatus:
        batch_id = f"msgbatch_{next(self._ids):04d}"
        self.batches[batch_id] = _Batch(list(requests), clock.monotonic())
        return self._status(batch_id)

    async def batch_status(self, batch_id: str) -> BatchStatus:
        self.polls.append(clock.monotonic())
        if self.on_poll is not None:
            self.on_poll(batch_id)
        return self._status(batch_id)

    async def batch_results(self, batch_id: str) -> AsyncIterator[BatchResult]:
        batch = self.batches[batch_id]
        for sent in batch.requests:
            if batch.canceled:
                yield BatchResult(sent.custom_id, "canceled")
                continue
            answer = self.script(sent.request)
            if isinstance(answer, ProviderError):
                yield BatchResult(sent.custom_id, "errored", error=answer.message)
            else:
                yield BatchResult(sent.custom_id, "succeeded", completion=answer)

    async def cancel_batch(self, batch_id: str) -> BatchStatus:
        self.batches[batch_id].canceled = True
        return self._status(batch_id)

    def _status(self, batch_id: str) -> BatchStatus:
        batch = self.batches[batch_id]
        ended = batch.canceled or clock.monotonic() >= batch.created_at + self.batch_latency
        count = len(batch.requests)
        if not ended:
            return BatchStatus(batch_id, "in_progress", {"processing": count})
        outcome = "canceled" if batch.canceled else "succeeded"
        return BatchStatus(batch_id, "ended", {outcome: count})
