"""Pipelines the end-to-end tests run: written into the test's folder as real files.

Each step that does work appends a line to ``calls.log``, so a test can tell exactly which
steps ran in each invocation (the LLM step is counted at the fake server instead).
"""

from __future__ import annotations

from pathlib import Path

from tests.helpers import write

HELPERS = """
import json
from pathlib import Path

LOG = Path(__file__).with_name("calls.log")


def _called(name):
    with LOG.open("a") as handle:
        handle.write(name + "\\n")


def count_items(ctx):
    _called("count")
    items = ctx.steps["extract"]
    ctx.log.info("counting %d items", len(items))
    return {"count": len(items), "titles": [item["title"] for item in items]}


def flaky(ctx):
    _called("flaky")
    if Path(__file__).with_name("broken").exists():
        raise RuntimeError("the flaky step is broken")
    return {"ok": True, "count": ctx.steps["count"]["count"]}
"""

CONFIG = """
name: notes-to-backlog
description: Turn meeting notes into backlog items
llm:
  model: claude-test-model
  max_tokens: 512
steps:
  - id: extract
    label: Extract candidate items
    kind: llm
    system: You turn meeting notes into backlog items.
    prompt: |
      Notes:
      {{ input.text }}
      Reply with a JSON list of {"title": ..., "detail": ...}.
    output: json
    pause: true
  - id: count
    label: Count items
    kind: python
    function: helpers:count_items
  - id: check
    kind: python
    function: helpers:flaky
  - id: report
    label: Render a report
    kind: shell
    command:
      - python3
      - -c
      - "import sys; open('calls.log','a').write('report\\\\n'); print('report for ' + sys.argv[1])"
      - "{{ steps.count.count }} items"
"""

REPLY = (
    "```json\n"
    '[{"title": "Fix login", "detail": "SSO breaks"}, {"title": "Add export", "detail": "CSV"}]'
    "\n```"
)


def write_backlog_pipeline(folder: Path) -> Path:
    """The four-step pipeline (llm, python, python, shell) and an input file; returns the config."""
    write(folder / "helpers.py", HELPERS)
    write(folder / "notes.txt", "Ana: login via SSO is broken.\nBo: we need a CSV export.\n")
    return write(folder / "pipeline-config.yaml", CONFIG)


def calls(folder: Path) -> list[str]:
    """The steps that ran since the log was last cleared, in order."""
    log = folder / "calls.log"
    return log.read_text().split() if log.exists() else []


def clear_calls(folder: Path) -> None:
    (folder / "calls.log").unlink(missing_ok=True)
