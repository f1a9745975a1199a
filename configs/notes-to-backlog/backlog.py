"""Python step of the notes-to-backlog example: a readiness score for each extracted item."""

from __future__ import annotations

from typing import Any


def score_items(ctx: Any) -> list[dict[str, Any]]:
    """Score each item 0..1 by how much of what a ticket needs it already has."""
    scored = []
    for item in ctx.steps["extract"]:
        score = 0.4
        score += 0.3 if item.get("owner") else 0.0
        score += 0.3 if len(item.get("detail") or "") > 40 else 0.0
        scored.append({**item, "readiness": round(score, 2)})
    ctx.log.info("scored %d items", len(scored))
    return scored
