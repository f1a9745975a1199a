"""Hand-written example replies for the offline demo (not model output).

``python scripts/record_demo.py notes-to-backlog`` runs the pipeline against a fake server
that answers with these, and writes demo-cassette.jsonl. Edit a reply here, not in the cassette.
"""

from __future__ import annotations

import json
import re

INPUT = "meeting-notes.txt"
ARGS: list[str] = []

CONTEXT = {
    "title": "Weekly sync",
    "date": "12 November",
    "kind": "sync",
    "participants": [
        {"name": "Ana", "role": "backend"},
        {"name": "Bo", "role": "product"},
        {"name": "Chen", "role": "CI and infrastructure"},
    ],
    "topics": ["SSO login bug", "CSV export", "nightly build time", "docs after SSO fix"],
}

ITEMS = [
    {
        "id": "B1",
        "title": "Fix SSO login for emails with a plus sign",
        "detail": "Users whose email address contains a plus sign cannot log in through SSO. "
        "Start with a failing test for the plus-sign case.",
        "owner": "Ana",
        "type": "bug",
        "quote": "Ana: I will write a failing test for the plus-sign case today.",
    },
    {
        "id": "B2",
        "title": "Add CSV export of reports",
        "detail": "Customers keep asking to export their reports as CSV; the columns are to be "
        "agreed with sales.",
        "owner": "Bo",
        "type": "feature",
        "quote": "Bo: Customers keep asking for a CSV export of their reports.",
    },
    {
        "id": "B3",
        "title": "Move slow integration tests to a separate CI job",
        "detail": "The nightly build takes 40 minutes; the slow integration tests should run "
        "in a job of their own.",
        "owner": "Chen",
        "type": "chore",
        "quote": "Chen: I will move the slow integration tests to a separate job.",
    },
    {
        "id": "B4",
        "title": "Cache pip downloads in CI",
        "detail": "Cache dependency downloads between builds to shorten the nightly build.",
        "owner": None,
        "type": "chore",
        "quote": "Chen: We could also cache the pip downloads in CI, if someone has time.",
    },
    {
        "id": "B5",
        "title": "Update onboarding docs and release notes after the SSO fix",
        "detail": "The onboarding guide and the release notes must describe the fixed SSO login.",
        "owner": None,
        "type": "chore",
        "quote": "Ana: Somebody needs to update the onboarding docs after the SSO fix.",
    },
]

SCORES = {
    "B1": (0.95, "Ana committed to starting it today."),
    "B2": (0.8, "Customers ask for it and Bo owns the follow-up, but scope is open."),
    "B3": (0.9, "Chen said he will do it."),
    "B4": (0.4, "Only floated as an idea, with no owner."),
    "B5": (0.75, "Agreed by two people, but nobody took it."),
}

RISKS = [
    {
        "id": "B1",
        "risks": ["Changing email normalisation may log out existing sessions."],
        "conflicts": [],
    },
    {
        "id": "B2",
        "risks": ["Exports with personal data need the data protection officer's approval."],
        "conflicts": ["Must respect per-role column permissions, which the PDF reports ignore."],
    },
    {
        "id": "B3",
        "risks": ["Integration tests need a PostgreSQL service in the new job."],
        "conflicts": ["A new job needs a third runner, and the runner budget is frozen."],
    },
    {"id": "B4", "risks": [], "conflicts": []},
    {
        "id": "B5",
        "risks": ["Depends on B1 shipping first."],
        "conflicts": [],
    },
]

QUESTIONS = [
    {"id": "B1", "questions": []},
    {"id": "B2", "questions": ["Which report columns does sales need in the CSV?"]},
    {
        "id": "B3",
        "questions": ["Can the integration tests share one of the two existing runners?"],
    },
    {"id": "B4", "questions": ["Who will set up the pip cache, and is it wanted now?"]},
    {"id": "B5", "questions": ["Who owns the onboarding guide update?"]},
]


def reply(prompt: str, model: str) -> str:
    """The example reply to one request, chosen by the prompt's ``Task:`` line."""
    task = prompt.splitlines()[0]
    if task.startswith("Task: describe the meeting"):
        return json.dumps(CONTEXT, indent=2)
    if task.startswith("Task: extract"):
        return json.dumps(ITEMS, indent=2)
    if task.startswith("Task: score"):
        found = re.search(r"^Candidate (\w+):", prompt, re.MULTILINE)
        assert found, prompt
        confidence, reason = SCORES[found.group(1)]
        return json.dumps({"id": found.group(1), "confidence": confidence, "reason": reason})
    if task.startswith("Task: check backlog items"):
        return json.dumps(RISKS, indent=2)
    if task.startswith("Task: ask clarifying"):
        return "```json\n" + json.dumps(QUESTIONS, indent=2) + "\n```"
    raise ValueError(f"no example reply for {task!r} ({model})")
