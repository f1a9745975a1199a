"""Python steps of the notes-to-backlog example: retrieval, readiness and the written outputs.

Retrieval uses bm25s (BM25 over sparse matrices, needing only numpy; the ``examples`` extra
installs it) over the paragraphs of the Markdown files in ``vars.docs_dir``, so the LLM steps
after it see the project's own rules without a vector database or a network.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

FORMATS = ("json", "markdown", "summary")


def enrich_items(ctx: Any) -> list[dict[str, Any]]:
    """Each candidate with its confidence and the doc passages that match it best.

    A passage counts when its BM25 score reaches ``vars.threshold``; at most ``vars.top_k``
    per item. Both come from ``vars`` so ``--set top_k=3`` tunes a run without editing code.
    """
    import bm25s  # imported here: validate and --dry-run need not load numpy

    top_k, threshold = int(ctx.vars["top_k"]), float(ctx.vars["threshold"])
    passages = load_passages(Path(__file__).parent / str(ctx.vars["docs_dir"]))
    retriever = bm25s.BM25()
    retriever.index(_tokens(bm25s, [p["text"] for p in passages]), show_progress=False)
    scores = {score["id"]: score for score in ctx.steps["score"]}
    enriched = []
    for item in ctx.steps["extract"]:
        query = _tokens(bm25s, [f"{item['title']} {item['detail']}"])
        found, found_scores = retriever.retrieve(
            query, k=min(top_k, len(passages)), show_progress=False
        )
        context = [
            {**passages[int(index)], "score": round(float(score), 2)}
            for index, score in zip(found[0], found_scores[0], strict=True)
            if float(score) >= threshold
        ]
        score = scores.get(item["id"], {})
        confidence, why = score.get("confidence"), score.get("reason")
        enriched.append({**item, "confidence": confidence, "why": why, "context": context})
    ctx.log.info("retrieved context for %d items from %d passages", len(enriched), len(passages))
    return enriched


def load_passages(folder: Path) -> list[dict[str, str]]:
    """Every paragraph of every Markdown file under ``folder``, with its file and heading."""
    passages = []
    for path in sorted(folder.rglob("*.md")):
        heading = path.stem
        for block in path.read_text(encoding="utf-8").split("\n\n"):
            text = " ".join(block.split())
            if text.startswith("#"):
                heading = text.lstrip("# ")
            elif text:
                passages.append({"doc": path.name, "heading": heading, "text": text})
    if not passages:
        raise ValueError(f"no Markdown paragraphs under {folder}; set vars.docs_dir")
    return passages


def _tokens(bm25s: Any, texts: list[str]) -> Any:
    return bm25s.tokenize(texts, stopwords="en", show_progress=False)


def assess_readiness(ctx: Any) -> list[dict[str, Any]]:
    """Each item with a readiness score and a verdict, from what the earlier steps found.

    A rule, not a model: confidence, less for a missing owner, each conflict, risk and open
    question. Deterministic, so a person can see why an item is not ready.
    """
    risks = {entry["id"]: entry for entry in ctx.steps["risks"]}
    asked = {entry["id"]: entry["questions"] for entry in ctx.steps.get("questions") or []}
    assessed = []
    for item in ctx.steps["enrich"]:
        found = risks.get(item["id"], {"risks": [], "conflicts": []})
        questions = asked.get(item["id"], [])
        confidence = item["confidence"] if item["confidence"] is not None else 0.5
        score = confidence - (0 if item["owner"] else 0.2)
        score -= 0.15 * len(found["conflicts"]) + 0.05 * len(found["risks"])
        score -= 0.1 * len(questions)
        score = round(min(1.0, max(0.0, score)), 2)
        if confidence < 0.5:
            verdict = "not ready"
        elif score >= 0.6 and not found["conflicts"]:
            verdict = "ready"
        else:
            verdict = "needs clarification"
        assessed.append(
            {**item, **found, "questions": questions, "readiness": score, "verdict": verdict}
        )
    return assessed


def write_outputs(ctx: Any) -> dict[str, Any]:
    """Write the formats named in ``vars.formats`` and return where they went, with counts."""
    formats = [name.strip() for name in str(ctx.vars["formats"]).split(",") if name.strip()]
    unknown = sorted(set(formats) - set(FORMATS))
    if unknown or not formats:
        raise ValueError(f"vars.formats: unknown {unknown}; use any of {', '.join(FORMATS)}")
    items = sorted(ctx.steps["readiness"], key=lambda item: -item["readiness"])
    meeting = ctx.steps["context"]
    out_dir = Path(str(ctx.vars["out_dir"]) or ctx.run_dir / "outputs")
    out_dir.mkdir(parents=True, exist_ok=True)
    texts = {
        "json": ("backlog.json", json.dumps({"meeting": meeting, "items": items}, indent=2)),
        "markdown": ("backlog.md", render_backlog(items)),
        "summary": ("summary.md", render_summary(meeting, items)),
    }
    files = {}
    for name in formats:
        file_name, text = texts[name]
        (out_dir / file_name).write_text(text + "\n", encoding="utf-8")
        files[name] = str(out_dir / file_name)
    counts = {verdict: sum(i["verdict"] == verdict for i in items) for verdict in VERDICTS}
    ctx.log.info("wrote %s to %s", ", ".join(formats), out_dir)
    return {"files": files, "items": len(items), "verdicts": counts}


VERDICTS = ("ready", "needs clarification", "not ready")


def render_backlog(items: list[dict[str, Any]]) -> str:
    """The backlog as Markdown: one section per item, most ready first."""
    lines = ["# Backlog", ""]
    for item in items:
        lines += [
            f"## {item['id']}. {item['title']} ({item['type']}, {item['verdict']}, "
            f"readiness {item['readiness']})",
            "",
            item["detail"],
            "",
            f"Owner: {item['owner'] or 'unassigned'} · confidence {item['confidence']}",
            "",
        ]
        lines += [f"- Risk: {risk}" for risk in item["risks"]]
        lines += [f"- Conflict: {conflict}" for conflict in item["conflicts"]]
        lines += [f"- Context ({c['doc']}): {c['text']}" for c in item["context"]]
        lines += [f"> Question: {question}" for question in item["questions"]]
        lines.append("")
    return "\n".join(lines).rstrip()


def render_summary(meeting: dict[str, Any], items: list[dict[str, Any]]) -> str:
    """A few lines for a chat message: the meeting, counts by verdict, what is ready."""
    people = ", ".join(person["name"] for person in meeting["participants"])
    lines = [
        f"# {meeting['title']} ({meeting['date'] or 'undated'})",
        "",
        f"Participants: {people}",
        f"Items: {len(items)}; "
        + "; ".join(f"{v}: {sum(i['verdict'] == v for i in items)}" for v in VERDICTS),
        "",
    ]
    lines += [f"- {i['id']} {i['title']}: {i['verdict']}" for i in items]
    return "\n".join(lines)
