"""Cost per 1,000 items of the ticket-triage example: live, with prompt caching, in batch mode.

The example (``configs/ticket-triage``, model claude-haiku-4-5) runs on N generated tickets
(``make_tickets.py``) in a temporary folder, once per mode, each in a fresh work folder with
the response cache off so no run reuses another's replies:

- **live**: the example as shipped, one Messages call per ticket (the baseline);
- **cache_prompt**: ``cache_prompt: true`` on the classify step;
- **batch**: ``--batch`` (``stepline.run(batch=True)``), through the Message Batches API;
- **batch+cache_prompt**: both.

The LLM is the tests' fake Anthropic server (``tests/fakes/llm_server.py``), in this process.
It answers each ticket with a valid triage (the one ``make_tickets.py`` gives the sample) and
reports usage as the API would: input tokens are the request's uncached words, output tokens
the reply's words, and its prompt-cache simulation reports cache writes and reads, with the
model's minimum cacheable prefix from the shipped price table (4,096 tokens for Haiku 4.5).
**Token counts are the fake's, one per word (plus 3 per message), not Anthropic's tokenizer**;
real counts run higher (roughly 1.3 tokens per English word, more for JSON), so read the
ratios between modes, not the dollars, as the finding.

Two scenarios:

1. **shipped example**: its shared prefix (system prompt and the prompt up to the ticket) is a
   few dozen words, far below Haiku 4.5's minimum, so prompt caching caches nothing: the API
   would ignore the marker, and the fake does the same (stepline warns about it).
2. **long guide**: the same pipeline with a triage guide of about ``--guide-words`` words in
   the system prompt (urgency and category definitions, worked examples), as production
   triage prompts tend to be. Above the minimum, the first ticket writes the cache and the
   others read it.

The cost is the sum of ``cost_usd`` over the run's ``llm-calls.jsonl`` (what stepline
recorded, priced with ``src/stepline/providers/prices.json``), checked against
``Pricer.cost_usd`` applied to the recorded tokens; an unpriced or failed call stops the
benchmark. Figures are scaled to 1,000 items and compared with the live run of the same
scenario.

    .venv/bin/python bench/cost.py [--items 1000] [--guide-words 5000] [--concurrency 16]
"""

from __future__ import annotations

import argparse
import importlib.util
import json
import os
import re
import shutil
import sys
import tempfile
import time
from dataclasses import dataclass, field
from pathlib import Path
from types import ModuleType
from typing import Any

import yaml

import stepline
from stepline.providers.base import Usage
from stepline.providers.pricing import Pricer, shipped_prices

ROOT = Path(__file__).resolve().parents[1]
EXAMPLE = ROOT / "configs" / "ticket-triage"
MODEL = "claude-haiku-4-5"
MODES = ("live", "cache_prompt", "batch", "batch+cache_prompt")
SUBJECT = re.compile(r"^Subject: (.*)$", re.MULTILINE)


def load_tickets_module() -> ModuleType:
    """``configs/ticket-triage/make_tickets.py``: the tickets and the triage of each sample."""
    spec = importlib.util.spec_from_file_location("make_tickets", EXAMPLE / "make_tickets.py")
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


TICKETS = load_tickets_module()


# -- the long triage guide ---------------------------------------------------------------------

URGENCY = {
    "critical": "Customers cannot work at all, or data is lost or at risk. Whole teams are "
    "blocked, logins fail for everyone, the product or an integration is down, records are "
    "missing. Answer within minutes, name what you are doing and when the next update comes.",
    "high": "One person, one team or one important feature is blocked and there is no "
    "workaround, or money is charged wrongly. Answer within the hour; say what happens next.",
    "medium": "Something works worse than it should but the customer can get their work done: "
    "slowness, a limit, a wrong detail on an invoice, a cancellation to schedule. A workaround "
    "exists or the matter can wait a day.",
    "low": "Questions about how to do something, wishes for new features, small changes to "
    "settings the customer could make alone. Nothing is broken and nobody is waiting.",
}

CATEGORY = {
    "outage": "The service or a part of it is unavailable or far too slow for many users: "
    "errors on every page, failed logins across a company, webhooks or queues hours late, an "
    "empty workspace. Outages are about availability, not a wrong result.",
    "bug": "The product does something wrong for this customer: an error on one endpoint, "
    "missing or wrong data, a crash after an update, search not finding what exists. Bugs "
    "can be critical when data is lost; a slow page for one customer is a bug, not an outage.",
    "billing": "Invoices, charges, refunds, payment failures, VAT numbers, seats and plans, "
    "cancelling a subscription. Anything about money goes here even when it is urgent.",
    "account": "Access of one person: password resets, two-factor codes, locked accounts, "
    "deleting personal data. Company-wide login failures are outages, not account issues.",
    "how-to": "The customer asks how to use something that already exists: settings, "
    "documentation, integrations set up on their side, e-mail deliverability, time zones.",
    "feature-request": "The customer asks for something the product does not do yet: exports, "
    "dark mode, bulk editing, new integrations. Thank them and say where the request goes.",
}

RULES = """\
General rules. Read the whole ticket before deciding. Urgency describes the customer's
situation, not their tone: many exclamation marks do not make a question critical, and a calm
ticket about lost data is still critical. When a ticket fits two categories, choose the one
whose team must act first. Never promise dates for features. Suggested responses are at most
two sentences, in plain language, without blaming the customer, and they say what happens next.
Confidence is your honest estimate that both urgency and category are right: above 0.9 only
when the ticket is unambiguous, around 0.6 when you had to choose between two categories.
"""


def triage_guide(words: int) -> str:
    """A system prompt of about ``words`` words: definitions, rules, then worked examples."""
    parts = [
        "You triage support tickets for a B2B software company. You answer with JSON only.",
        "# Triage guide",
        "## Urgency",
        *(f"- {name}: {text}" for name, text in URGENCY.items()),
        "## Categories",
        *(f"- {name}: {text}" for name, text in CATEGORY.items()),
        RULES,
        "## Worked examples",
    ]
    number = 0
    while len("\n".join(parts).split()) < words:
        ticket = TICKETS.ticket(number + 1)
        triage = TICKETS.example_triage(ticket["subject"])
        number += 1
        parts.append(
            f"Example {number}. A ticket from {ticket['customer']} with the subject "
            f'"{ticket["subject"]}" says: "{ticket["body"]}" Triage: urgency {triage["urgency"]} '
            f"({URGENCY[triage['urgency']].split('.')[0].lower()}), category "
            f"{triage['category']}. Reply: {triage['suggested_response']}"
        )
    return "\n".join(parts) + "\n"


# -- the fake model ----------------------------------------------------------------------------


def cached_prefix_words(body: dict[str, Any]) -> int:
    """Words of the prefix the request marks with ``cache_control`` (0 if none), counted as
    the fake server's prompt-cache simulation counts them: system and message text blocks up
    to and including the last marked one."""
    blocks: list[dict[str, Any]] = []
    for content in [body.get("system"), *(m.get("content") for m in body.get("messages", []))]:
        if isinstance(content, str):
            blocks.append({"type": "text", "text": content})
        elif isinstance(content, list):
            blocks += [block for block in content if isinstance(block, dict)]
    marked = [index for index, block in enumerate(blocks) if block.get("cache_control")]
    if not marked:
        return 0
    return sum(len(str(block.get("text", "")).split()) for block in blocks[: marked[-1] + 1])


def triage_responder(cache_min_tokens: int) -> Any:
    """Answer a classify request with its sample's triage and realistic usage."""
    from tests.fakes import Reply
    from tests.fakes.llm_server import counted_tokens

    def answer(request: Any) -> Reply:
        subject = SUBJECT.search(request.prompt)
        assert subject is not None, request.prompt
        text = json.dumps(TICKETS.example_triage(subject.group(1)))
        prefix = cached_prefix_words(request.body)
        cached = prefix if prefix >= cache_min_tokens else 0  # what the fake will cache
        return Reply(
            text=text,
            input_tokens=counted_tokens(request.body) - cached,
            output_tokens=len(text.split()),
        )

    return answer


# -- running and reading a run -----------------------------------------------------------------


@dataclass
class Figures:
    """One run's recorded usage, summed over its ``llm-calls.jsonl``."""

    items: int
    calls: int = 0
    batches: int = 0
    live_calls: int = 0  # in a batch-mode run: requests sent live (the cache's warm-up)
    input: int = 0
    cache_write: int = 0
    cache_read: int = 0
    output: int = 0
    usd: float = 0.0
    seconds: float = 0.0
    warnings: list[str] = field(default_factory=list)  # what stepline warned about

    def per_thousand(self, value: float) -> float:
        return value * 1000 / self.items


def add_call(figures: Figures, record: dict[str, Any], pricer: Pricer) -> None:
    """Add one call record; refuse a failed or unpriced call, or a cost that does not add up."""
    assert record.get("outcome") == "ok", f"call failed: {record}"
    assert not record.get("cache_hit") and not record.get("replayed"), record
    cost = record.get("cost_usd")
    assert cost is not None, f"unpriced call to {record.get('model')}: {record}"
    usage = Usage(
        input_tokens=record["input_tokens"],
        output_tokens=record["output_tokens"],
        cache_write_tokens=record["cache_write_tokens"] or 0,
        cache_read_tokens=record["cache_read_tokens"] or 0,
        cache_write_1h_tokens=record.get("cache_write_1h_tokens") or 0,
    )
    expected = pricer.cost_usd(record["model"], usage, batch=bool(record.get("batch_id")))
    assert expected is not None and abs(expected - cost) < 1e-9, (expected, cost, usage)
    figures.calls += 1
    figures.input += usage.input_tokens
    figures.cache_write += usage.cache_write_tokens
    figures.cache_read += usage.cache_read_tokens
    figures.output += usage.output_tokens
    figures.usd += cost


def example_copy(folder: Path, *, mode: str, guide: str | None) -> Path:
    """A copy of the example whose config has the response cache off and ``mode`` set."""
    shutil.copytree(EXAMPLE, folder, ignore=shutil.ignore_patterns("__pycache__"))
    config = yaml.safe_load((EXAMPLE / "pipeline.yaml").read_text(encoding="utf-8"))
    config["llm"]["cache"] = {"enabled": False}
    config["llm"]["batch_poll"] = "100ms"
    classify = next(step for step in config["steps"] if step["id"] == "classify")
    if "cache_prompt" in mode:
        classify["cache_prompt"] = True
    if guide is not None:
        (folder / "prompts" / "triage-guide.md").write_text(guide, encoding="utf-8")
        classify["system_file"] = "prompts/triage-guide.md"
    (folder / "pipeline.yaml").write_text(yaml.safe_dump(config, sort_keys=False))
    return folder / "pipeline.yaml"


def run_mode(server: Any, mode: str, *, items: int, guide: str | None, concurrency: int) -> Figures:
    """Run the example on ``items`` tickets in ``mode``; return its recorded usage."""
    server.reset()  # a fresh prompt cache: no run reads what another wrote
    pricer = Pricer()
    with tempfile.TemporaryDirectory() as name:
        folder = Path(name)
        config = example_copy(folder / "example", mode=mode, guide=guide)
        tickets = folder / "tickets.jsonl"
        lines = (json.dumps(TICKETS.ticket(n)) + "\n" for n in range(1, items + 1))
        tickets.write_text("".join(lines), encoding="utf-8")
        started = time.perf_counter()
        result = stepline.run(
            config,
            tickets,
            workdir=folder / ".pipeline",
            variables={"database": str(folder / "triage.sqlite")},
            concurrency=concurrency,
            batch=mode.startswith("batch"),
        )
        figures = Figures(items=items, seconds=time.perf_counter() - started)
        assert result.status.value == "completed", result.message
        summary = result.outputs["summary"]
        assert summary["classified"] == items and not summary["failed"], summary
        batch_ids = set()
        with (result.run_dir / "llm-calls.jsonl").open(encoding="utf-8") as records:
            for line in records:
                record = json.loads(line)
                add_call(figures, record, pricer)
                batch_ids.add(record.get("batch_id"))
                figures.live_calls += record.get("batch_id") is None
        figures.batches = len(batch_ids - {None})
        figures.warnings = warnings(result.run_dir / "events.jsonl")
    assert not server.errors, server.errors
    sent = server.count("/v1/messages") + len(server.batch_requests)
    assert sent == figures.calls, (sent, figures.calls)  # every request recorded, none twice
    return figures


def warnings(events_file: Path) -> list[str]:
    """The warnings a run logged (``cache_prompt`` warns when its prefix is too short)."""
    with events_file.open(encoding="utf-8") as lines:
        events = [json.loads(line) for line in lines]
    return [
        event["message"]
        for event in events
        if event.get("type") == "log" and event.get("data", {}).get("level") == "warning"
    ]


# -- the table ---------------------------------------------------------------------------------


def table(rows: list[tuple[str, str, Figures, Figures]]) -> str:
    """Markdown: one row per run, figures per 1,000 items, ratio to the scenario's live run."""
    lines = [
        "| scenario | mode | requests | input | cache write | cache read | output "
        "| USD | vs. live |",
        "| --- | --- | --- | --- | --- | --- | --- | --- | --- |",
    ]
    for scenario, mode, figures, live in rows:
        per = figures.per_thousand
        requests = f"{per(figures.calls):,.0f}"
        if figures.batches:
            batched = figures.calls - figures.live_calls
            requests = f"{per(batched):,.0f} in {figures.batches} batch" + (
                "es" if figures.batches > 1 else ""
            )
            if figures.live_calls:
                requests = f"{per(figures.live_calls):,.0f} live + {requests}"
        lines.append(
            f"| {scenario} | {mode} | {requests} | {per(figures.input):,.0f} "
            f"| {per(figures.cache_write):,.0f} | {per(figures.cache_read):,.0f} "
            f"| {per(figures.output):,.0f} | ${per(figures.usd):.4f} "
            f"| {figures.usd / live.usd:.2f}x |"
        )
    return "\n".join(lines)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--items", type=int, default=1000)
    parser.add_argument("--guide-words", type=int, default=5000)
    parser.add_argument("--concurrency", type=int, default=16)
    args = parser.parse_args()
    sys.path.insert(0, str(ROOT))
    from tests.fakes import FakeLLMServer

    cache_min_tokens = Pricer().cache_min_tokens(MODEL)
    guide = triage_guide(args.guide_words)
    scenarios = {
        "shipped example": (None, ("live", "cache_prompt", "batch")),
        f"long guide (~{len(guide.split()):,} words)": (guide, MODES),
    }
    rows = []
    with FakeLLMServer() as server:
        server.cache_min_tokens = cache_min_tokens
        server.responder = triage_responder(cache_min_tokens)
        os.environ.update(ANTHROPIC_BASE_URL=server.base_url, ANTHROPIC_API_KEY="bench-key")
        for scenario, (system, modes) in scenarios.items():
            live = None
            for mode in modes:
                figures = run_mode(
                    server, mode, items=args.items, guide=system, concurrency=args.concurrency
                )
                live = live or figures
                rows.append((scenario, mode, figures, live))
                print(f"  {scenario}, {mode}: {figures.seconds:.1f} s", file=sys.stderr)
    print(
        f"{args.items:,} tickets, {MODEL}, prices.json of {shipped_prices().updated} "
        f"(cache minimum {cache_min_tokens:,} tokens); tokens are the fake's, one per word; "
        "figures per 1,000 tickets"
    )
    print(table(rows))
    for scenario, mode, figures, _ in rows:
        for message in dict.fromkeys(figures.warnings):
            print(f"stepline warned ({scenario}, {mode}): {message}")


if __name__ == "__main__":
    main()
