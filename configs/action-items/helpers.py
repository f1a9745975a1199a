"""Python steps of the action-items example: each takes the step context, returns JSON data."""

from __future__ import annotations

import re
from typing import Any

_SPEAKER = re.compile(r"^\s*([A-Z][\w .-]{0,40}):\s*(.+)$")
_ACTION = re.compile(r"\b(will|to do|todo|action|needs? to|follow up)\b", re.IGNORECASE)


def parse_notes(ctx: Any) -> list[dict[str, str]]:
    """One record per 'Speaker: text' line; other lines are kept with speaker 'unknown'."""
    statements = []
    for line in ctx.input.text.splitlines():
        if not line.strip():
            continue
        match = _SPEAKER.match(line)
        speaker, text = (match.group(1), match.group(2)) if match else ("unknown", line.strip())
        statements.append({"speaker": speaker.strip(), "text": text.strip()})
    ctx.log.info("parsed %d statements", len(statements))
    return statements


def find_action_items(ctx: Any) -> list[dict[str, str]]:
    """Statements that commit someone to doing something become action items."""
    items = []
    for statement in ctx.steps["parse"]:
        if _ACTION.search(statement["text"]):
            items.append({"owner": statement["speaker"], "task": statement["text"]})
    return items


def render_report(ctx: Any) -> str:
    """A Markdown report: the items per owner, with the counts from the shell step."""
    counts = ctx.steps["stats"]["by_owner"]
    lines = [f"# {ctx.vars['title']}", ""]
    for owner in sorted(counts):
        lines.append(f"## {owner} ({counts[owner]})")
        lines += [f"- {item['task']}" for item in ctx.steps["items"] if item["owner"] == owner]
        lines.append("")
    return "\n".join(lines)
