"""Hand-written example replies for the offline demo (not model output).

``python scripts/record_demo.py ticket-triage`` runs the pipeline against a fake server that
answers with these, and writes demo-cassette.jsonl. The triage of each sample ticket is in
make_tickets.py, next to the ticket itself.
"""

from __future__ import annotations

import importlib.util
import json
import re
from pathlib import Path

INPUT = "tickets.jsonl"
ARGS: list[str] = []

_spec = importlib.util.spec_from_file_location(
    "make_tickets", Path(__file__).with_name("make_tickets.py")
)
assert _spec and _spec.loader
make_tickets = importlib.util.module_from_spec(_spec)
_spec.loader.exec_module(make_tickets)


def reply(prompt: str, model: str) -> str:
    """The example triage of the ticket whose subject the prompt names."""
    found = re.search(r"^Subject: (.*)$", prompt, re.MULTILINE)
    if not found:
        raise ValueError(f"no example reply for {prompt.splitlines()[0]!r} ({model})")
    return json.dumps(make_tickets.example_triage(found.group(1)), indent=2)
