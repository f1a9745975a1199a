"""What stepline's LLM call path adds to each call, against calling the provider directly.

A provider that answers instantly (no network) isolates stepline's own work per call: the
retry wrapper, fallback bookkeeping, request hashing, pricing, and appending the call record
to a real run folder's ``llm-calls.jsonl``. Both variants run in the same process, in turn.

    .venv/bin/python bench/call_overhead.py [--calls 2000]
"""

from __future__ import annotations

import argparse
import asyncio
import logging
import statistics
import tempfile
import time
from pathlib import Path

from stepline.providers.base import Completion, LLMRequest, Usage
from stepline.providers.caller import LLMCaller
from stepline.providers.pool import ProviderPool
from stepline.settings import Settings
from stepline.spec import LLMParams, RetrySpec
from stepline.store.rundir import RunDir

PROMPT = "Classify this ticket: " + "lorem ipsum " * 200  # about 2.4 kB, a typical prompt


class InstantProvider:
    name = "instant"

    async def complete(self, request: LLMRequest) -> Completion:
        return Completion(text="category: billing", model=request.model, usage=Usage(600, 5))

    async def aclose(self) -> None:
        return None


async def per_call_seconds(calls: int, folder: Path) -> tuple[float, float]:
    provider = InstantProvider()
    pool = ProviderPool(Settings(), factory=lambda name, base_url: provider)
    run_dir = RunDir(folder)
    caller = LLMCaller(pool, record=lambda call: run_dir.append_call(call.to_json()))
    params = LLMParams(
        provider="anthropic",
        model="claude-haiku-4-5",
        max_tokens=50,
        temperature=None,
        base_url=None,
        retry=RetrySpec(),
        fallback_models=[],
    )
    log = logging.getLogger("bench")
    request = LLMRequest(model="claude-haiku-4-5", prompt=PROMPT, max_tokens=50)

    started = time.perf_counter()
    for _ in range(calls):
        await provider.complete(request)
    direct = (time.perf_counter() - started) / calls

    started = time.perf_counter()
    for _ in range(calls):
        await caller.complete(step_id="classify", request=request, params=params, log=log)
    through_stepline = (time.perf_counter() - started) / calls
    return direct, through_stepline


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--calls", type=int, default=2000)
    parser.add_argument("--rounds", type=int, default=5)
    args = parser.parse_args()
    overheads = []
    for _ in range(args.rounds):
        with tempfile.TemporaryDirectory() as folder:
            direct, wrapped = asyncio.run(per_call_seconds(args.calls, Path(folder)))
        overheads.append(wrapped - direct)
        print(f"direct {direct * 1e6:8.1f} us/call   through stepline {wrapped * 1e6:8.1f} us/call")
    print(f"median overhead per call: {statistics.median(overheads) * 1e3:.3f} ms (budget: 1 ms)")


if __name__ == "__main__":
    main()
