"""What stepline's LLM call path adds to each call, against calling the provider directly.

A provider that answers instantly (no network) isolates stepline's own work per call: the
retry wrapper, fallback bookkeeping, request hashing, pricing, and appending the call record
to a real run folder's ``llm-calls.jsonl``. Both variants run in the same process, in turn.

    .venv/bin/python bench/call_overhead.py [--calls 500] [--rounds 5]
"""

from __future__ import annotations

import argparse
import asyncio
import logging
import statistics
import tempfile
import time
from collections.abc import Awaitable, Callable
from pathlib import Path

from stepline.providers.base import Completion, Delivery, LLMRequest, Usage
from stepline.providers.caller import LLMCaller
from stepline.providers.pool import ProviderPool
from stepline.settings import Settings
from stepline.spec import CacheSpec, LLMParams, RetrySpec
from stepline.store.cache import ResponseCache
from stepline.store.rundir import RunDir

PROMPT = "Classify this ticket: " + "lorem ipsum " * 200  # about 2.4 kB, a typical prompt
PARAMS = LLMParams(
    provider="anthropic",
    model="claude-haiku-4-5",
    max_tokens=50,
    temperature=None,
    base_url=None,
    retry=RetrySpec(),
    fallback_models=[],
    cache=CacheSpec(),
)


class InstantProvider:
    name = "instant"

    async def count_tokens(self, request: LLMRequest) -> int | None:
        return None

    async def complete(self, request: LLMRequest, delivery: Delivery) -> Completion:
        return Completion(text="category: billing", model=request.model, usage=Usage(600, 5))

    async def aclose(self) -> None:
        return None


def make_caller(folder: Path, provider: InstantProvider, *, cached: bool) -> LLMCaller:
    pool = ProviderPool(Settings(), factory=lambda name, base_url: provider)
    run_dir = RunDir(folder)
    cache = ResponseCache(folder / "cache.sqlite") if cached else None
    return LLMCaller(pool, record=lambda call: run_dir.append_call(call.to_json()), cache=cache)


async def timed(calls: int, work: Callable[[int], Awaitable[object]]) -> float:
    started = time.perf_counter()
    for number in range(calls):
        await work(number)
    return (time.perf_counter() - started) / calls


async def per_call_seconds(calls: int, folder: Path) -> dict[str, float]:
    provider = InstantProvider()
    log = logging.getLogger("bench")
    plain = make_caller(folder, provider, cached=False)
    cached = make_caller(folder, provider, cached=True)
    no_cache = PARAMS.model_copy(update={"cache": CacheSpec(enabled=False)})

    def request(number: int) -> LLMRequest:
        return LLMRequest(model=PARAMS.model, prompt=f"{number} {PROMPT}", max_tokens=50)

    async def call(caller: LLMCaller, number: int, params: LLMParams) -> object:
        return await caller.complete(step_id="s", request=request(number), params=params, log=log)

    return {
        "provider called directly (baseline)": await timed(
            calls, lambda n: provider.complete(request(n), Delivery())
        ),
        "call path, cache off (records only)": await timed(
            calls, lambda n: call(plain, n, no_cache)
        ),
        "call path, cache miss (lookup + store)": await timed(
            calls, lambda n: call(cached, n, PARAMS)
        ),
        "call path, cache hit (no request)": await timed(calls, lambda n: call(cached, n, PARAMS)),
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--calls", type=int, default=500)
    parser.add_argument("--rounds", type=int, default=5)
    args = parser.parse_args()
    rounds: dict[str, list[float]] = {}
    for _ in range(args.rounds):
        with tempfile.TemporaryDirectory() as folder:
            for name, seconds in asyncio.run(per_call_seconds(args.calls, Path(folder))).items():
                rounds.setdefault(name, []).append(seconds)
    baseline = statistics.median(rounds["provider called directly (baseline)"])
    print(f"{args.calls} calls x {args.rounds} rounds; median per call, and overhead over baseline")
    for name, values in rounds.items():
        median = statistics.median(values)
        print(f"{name:42s} {median * 1e3:8.3f} ms   +{(median - baseline) * 1e3:.3f} ms")


if __name__ == "__main__":
    main()
