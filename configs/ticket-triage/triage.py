"""Python steps of the ticket-triage example: the SQLite table and the summary.

``store_results`` upserts one row per ticket (stdlib sqlite3, keyed by ticket id), so running
the pipeline again on new or changed tickets updates the table instead of duplicating rows.
``summarize`` counts the results and adds the run's LLM cost, which a Python step cannot read
from ``ctx``: it sums ``cost_usd`` over the run's call records, ``llm-calls.jsonl``.
"""

from __future__ import annotations

import json
import sqlite3
from collections import Counter
from collections.abc import Iterator
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import jsonschema

HERE = Path(__file__).parent
TABLE = """
CREATE TABLE IF NOT EXISTS tickets (
    id TEXT PRIMARY KEY,
    customer TEXT NOT NULL,
    subject TEXT NOT NULL,
    urgency TEXT NOT NULL CHECK (urgency IN ('critical', 'high', 'medium', 'low')),
    category TEXT NOT NULL,
    suggested_response TEXT NOT NULL,
    confidence REAL NOT NULL CHECK (confidence BETWEEN 0 AND 1),
    run_id TEXT NOT NULL,
    updated_at TEXT NOT NULL
)
"""
UPSERT = """
INSERT INTO tickets VALUES (
    :id, :customer, :subject, :urgency, :category, :suggested_response, :confidence,
    :run_id, :updated_at)
ON CONFLICT (id) DO UPDATE SET
    customer = excluded.customer, subject = excluded.subject, urgency = excluded.urgency,
    category = excluded.category, suggested_response = excluded.suggested_response,
    confidence = excluded.confidence, run_id = excluded.run_id, updated_at = excluded.updated_at
"""


def tickets_with_triage(ctx: Any) -> Iterator[tuple[dict[str, Any], dict[str, Any]]]:
    """Each input ticket with its triage, in input order (a fan-out keeps that order).

    Ids come from the input, not from the reply, so a model cannot misfile a ticket. The
    fan-out output is read lazily, so 10,000 tickets never sit in memory at once.
    """
    with ctx.input.path.open(encoding="utf-8") as lines:
        records = (json.loads(line) for line in lines if line.strip())
        yield from zip(records, ctx.steps["classify"], strict=True)


def store_results(ctx: Any) -> dict[str, Any]:
    """Upsert every classified ticket into ``vars.database``; failed ones are left out."""
    database = Path(str(ctx.vars["database"])).resolve()
    now = datetime.now(UTC).isoformat(timespec="seconds")
    stored, failed = 0, []
    with sqlite3.connect(database) as connection:
        connection.execute(TABLE)
        for ticket, triage in tickets_with_triage(ctx):
            if "error" in triage:
                failed.append(ticket["id"])
                continue
            row = {**ticket, **triage, "run_id": ctx.run_id, "updated_at": now}
            connection.execute(UPSERT, {key: row[key] for key in _COLUMNS})
            stored += 1
        total = connection.execute("SELECT count(*) FROM tickets").fetchone()[0]
    connection.close()
    ctx.log.info("upserted %d tickets into %s (%d rows in all)", stored, database, total)
    return {"database": str(database), "stored": stored, "failed": failed, "rows": total}


_COLUMNS = [
    "id",
    "customer",
    "subject",
    "urgency",
    "category",
    "suggested_response",
    "confidence",
    "run_id",
    "updated_at",
]


def summarize(ctx: Any) -> dict[str, Any]:
    """Counts by urgency and category, the tickets that failed, and what the run cost."""
    urgency: Counter[str] = Counter()
    category: Counter[str] = Counter()
    tickets = 0
    for _, triage in tickets_with_triage(ctx):
        tickets += 1
        if "error" not in triage:
            urgency[triage["urgency"]] += 1
            category[triage["category"]] += 1
    summary = {
        "tickets": tickets,
        "classified": sum(urgency.values()),
        "failed": ctx.steps["store"]["failed"],
        "by_urgency": {name: urgency[name] for name in ("critical", "high", "medium", "low")},
        "by_category": dict(category.most_common()),
        "cost": run_cost(ctx.run_dir / "llm-calls.jsonl"),
    }
    schema = json.loads((HERE / "schemas" / "summary.json").read_text(encoding="utf-8"))
    jsonschema.validate(summary, schema)
    return summary


def run_cost(calls_file: Path) -> dict[str, Any]:
    """The run's LLM cost from its call records (all attempts, across resumes).

    Replayed and cached replies cost nothing; a call whose model has no known price is
    counted in ``unpriced_calls`` rather than as $0.
    """
    cost, counts = 0.0, Counter[str]()
    if not calls_file.exists():  # no LLM step has run in this run yet
        return {"usd": 0.0}
    with calls_file.open(encoding="utf-8") as lines:
        for line in lines:
            call = json.loads(line)
            counts["calls"] += 1
            if call.get("outcome") != "ok":
                counts["failed_attempts"] += 1
            elif call.get("replayed"):
                counts["replayed"] += 1
            elif call.get("cache_hit"):
                counts["cache_hits"] += 1
            elif call.get("cost_usd") is None:
                counts["unpriced_calls"] += 1
            else:
                cost += call["cost_usd"]
    return {"usd": round(cost, 6), **counts}
