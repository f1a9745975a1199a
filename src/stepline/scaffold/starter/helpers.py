"""Python steps of the starter pipeline. A step function takes the step context (``ctx``)
and returns JSON data; stepline saves it as the step's output and later steps read it as
``steps.<id>`` in templates or ``ctx.steps["<id>"]`` here."""

from __future__ import annotations

from typing import Any


def clean_text(ctx: Any) -> dict[str, Any]:
    """Drop blank lines and stray spaces, so the prompt gets tidy text and a word count."""
    lines = [line.strip() for line in ctx.input.text.splitlines() if line.strip()]
    words = sum(len(line.split()) for line in lines)
    ctx.log.info("%d lines, %d words", len(lines), words)
    return {"text": "\n".join(lines), "lines": len(lines), "words": words}


def write_report(ctx: Any) -> str:
    """Turn the LLM's JSON summary into Markdown (the output is this text)."""
    summary = ctx.steps["summarise"]
    points = "\n".join(f"- {point}" for point in summary["key_points"])
    return f"# {summary['title']}\n\n{summary['summary']}\n\n{points}\n"
