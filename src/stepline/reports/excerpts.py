"""A bounded, printable excerpt of a step's output for the HTML report.

Outputs can be large (a fan-out over 10,000 items) and a report must stay a file a browser
opens at once, so each excerpt is capped: text and JSON at ``MAX_CHARS`` characters, JSON
Lines at the first ``JSONL_ROWS`` rows. An output that no longer parses (a bad hand edit) is
shown as raw text with a note rather than failing the whole report.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from itertools import islice
from pathlib import Path

from stepline.errors import RunStoreError
from stepline.store.rundir import RunDir

MAX_CHARS = 100_000
JSONL_ROWS = 20


@dataclass(frozen=True)
class Excerpt:
    """What to show of one output: its text, a note when that is not all of it, its size."""

    text: str
    note: str | None
    size_bytes: int


def output_excerpt(run_dir: RunDir, relative: str) -> Excerpt:
    """The excerpt of the output file ``relative`` (as ``state.json`` names it)."""
    path = run_dir.resolve(relative)
    try:
        size = path.stat().st_size
    except FileNotFoundError:
        return Excerpt("", f"{relative} is missing from the run folder", 0)
    if path.suffix == ".jsonl":
        return _jsonl_excerpt(path, size)
    if size > 4 * MAX_CHARS:  # too big to parse for a preview: show the file's head as it is
        return _raw_head(path, size, f"showing the first {MAX_CHARS:,} characters")
    try:
        value = run_dir.read_output(relative)
    except RunStoreError as exc:
        return _raw_head(path, size, f"shown as it is: {exc.message}")
    text = value if isinstance(value, str) else json.dumps(value, indent=2, ensure_ascii=False)
    return _capped(text, size)


def _capped(text: str, size: int) -> Excerpt:
    if len(text) <= MAX_CHARS:
        return Excerpt(text, None, size)
    note = f"truncated: showing {MAX_CHARS:,} of {len(text):,} characters"
    return Excerpt(text[:MAX_CHARS], note, size)


def _raw_head(path: Path, size: int, why: str) -> Excerpt:
    with path.open(encoding="utf-8", errors="replace") as handle:
        text = handle.read(MAX_CHARS)
    truncated = size > len(text.encode("utf-8"))
    note = f"{why} (of {size:,} bytes)" if truncated else why
    return Excerpt(text, note, size)


def _jsonl_excerpt(path: Path, size: int) -> Excerpt:
    """The first rows, pretty enough to read, and how many there are in all."""
    with path.open(encoding="utf-8", errors="replace") as handle:
        rows = [line.rstrip("\n") for line in islice(handle, JSONL_ROWS) if line.strip()]
        rest = sum(1 for line in handle if line.strip())
    text = "\n".join(rows)
    if rest:
        total = len(rows) + rest
        capped = _capped(text, size)
        return Excerpt(capped.text, f"showing the first {len(rows)} of {total:,} rows", size)
    return _capped(text, size)
