"""``pipeline diff``: which step outputs of two runs differ, and how one of them differs.

Steps are matched by id. Outputs are compared by the hash of the file on disk now (so hand
edits count, and a ``.json`` and a ``.jsonl`` holding the same list are the same), not by the
hash ``state.json`` remembers. A text diff is made of the values, pretty-printed with sorted
keys, so key order and indentation never show up as changes.
"""

from __future__ import annotations

import difflib
import json
from collections.abc import Iterable, Iterator
from dataclasses import dataclass
from enum import StrEnum
from typing import Any

from stepline.errors import InputError
from stepline.spec import select_step
from stepline.store.jsonl import JsonLines
from stepline.store.rundir import RunDir
from stepline.store.state import RunState, StepState, load_state

MAX_DIFF_LINES = 200_000
"""Above this many lines on a side, difflib's time grows too much; the diff says so instead."""


class OutputChange(StrEnum):
    SAME = "same"
    CHANGED = "changed"
    ONLY_A = "only_a"
    ONLY_B = "only_b"
    NO_OUTPUT = "no_output"  # the step is known but neither run has an output for it


DIFFERENT = frozenset({OutputChange.CHANGED, OutputChange.ONLY_A, OutputChange.ONLY_B})
"""The changes that make ``diff --exit-code`` exit 1; a step with no output in either run
has nothing that could differ."""


@dataclass(frozen=True)
class StepComparison:
    """One step id across both runs; ``output_*`` are the paths inside each run folder."""

    step: str
    change: OutputChange
    output_a: str | None
    output_b: str | None
    hash_a: str | None
    hash_b: str | None

    @property
    def differs(self) -> bool:
        return self.change in DIFFERENT


@dataclass(frozen=True)
class RunComparison:
    run_a: str
    run_b: str
    steps: list[StepComparison]

    def count(self, change: OutputChange) -> int:
        return sum(step.change is change for step in self.steps)

    @property
    def differs(self) -> bool:
        """Any step's output changed or exists in one run only (``diff --exit-code``)."""
        return any(step.differs for step in self.steps)


def compare_runs(run_a: RunDir, run_b: RunDir) -> RunComparison:
    """Every step of A in A's order, then the steps only B has, each with its change."""
    state_a, state_b = load_state(run_a.state_path), load_state(run_b.state_path)
    ids = [step.id for step in state_a.steps]
    ids += [step.id for step in state_b.steps if step.id not in ids]
    steps = [
        _compare_step(step_id, (run_a, state_a.step(step_id)), (run_b, state_b.step(step_id)))
        for step_id in ids
    ]
    return RunComparison(run_a=run_a.run_id, run_b=run_b.run_id, steps=steps)


def _compare_step(
    step_id: str, side_a: tuple[RunDir, StepState | None], side_b: tuple[RunDir, StepState | None]
) -> StepComparison:
    output_a, hash_a = _output_and_hash(*side_a)
    output_b, hash_b = _output_and_hash(*side_b)
    if hash_a is not None and hash_b is not None:
        change = OutputChange.SAME if hash_a == hash_b else OutputChange.CHANGED
    elif hash_a is not None:
        change = OutputChange.ONLY_A
    elif hash_b is not None:
        change = OutputChange.ONLY_B
    else:
        change = OutputChange.NO_OUTPUT
    return StepComparison(step_id, change, output_a, output_b, hash_a, hash_b)


def _output_and_hash(run_dir: RunDir, step: StepState | None) -> tuple[str | None, str | None]:
    if step is None or step.output is None:
        return None, None
    digest = run_dir.output_hash(step.output)
    return (step.output, digest) if digest is not None else (None, None)


def step_diff(run_a: RunDir, run_b: RunDir, selector: str) -> tuple[StepComparison, str]:
    """The comparison of one step (a number or an id, as in A, else B) and its unified diff
    (empty when the outputs are the same)."""
    state_a, state_b = load_state(run_a.state_path), load_state(run_b.state_path)
    step_id = _select(selector, state_a, state_b)
    side_a, side_b = (run_a, state_a.step(step_id)), (run_b, state_b.step(step_id))
    comparison = _compare_step(step_id, side_a, side_b)
    if comparison.change in (OutputChange.SAME, OutputChange.NO_OUTPUT):
        return comparison, ""
    outputs = (comparison.output_a or "", comparison.output_b or "")
    as_rows = any(output.endswith(".jsonl") for output in outputs)  # compare like with like
    lines_a = _lines(run_a, comparison.output_a, as_rows=as_rows)
    lines_b = _lines(run_b, comparison.output_b, as_rows=as_rows)
    if max(len(lines_a), len(lines_b)) > MAX_DIFF_LINES:
        return comparison, f"(the outputs differ; over {MAX_DIFF_LINES:,} lines, not diffed)\n"
    diff = difflib.unified_diff(
        lines_a,
        lines_b,
        fromfile=f"{run_a.run_id}/{comparison.output_a or '(no output)'}",
        tofile=f"{run_b.run_id}/{comparison.output_b or '(no output)'}",
        lineterm="",
    )
    return comparison, "".join(line + "\n" for line in diff)


def _select(selector: str, state_a: RunState, state_b: RunState) -> str:
    """A step id known to either run; a number counts in A. Unknown: A's did-you-mean error."""
    ids_a = [step.id for step in state_a.steps]
    if selector in ids_a or selector.isdigit():
        return ids_a[select_step(selector, ids_a)]
    if state_b.step(selector) is not None:
        return selector
    ids = ids_a + [step.id for step in state_b.steps if step.id not in ids_a]
    if not ids:
        raise InputError("neither run has any steps")
    return ids[select_step(selector, ids)]


def _lines(run_dir: RunDir, relative: str | None, *, as_rows: bool) -> list[str]:
    """An output as lines to diff: text as it reads, JSON indented; a list a row a line when
    either side is JSON Lines, so the same list stored both ways diffs as equal."""
    if relative is None:
        return []
    value = run_dir.read_output(relative)
    if isinstance(value, str):
        return value.splitlines()
    if isinstance(value, JsonLines) or (as_rows and isinstance(value, list)):
        return list(_rows(value))
    return json.dumps(value, indent=2, sort_keys=True, ensure_ascii=False).splitlines()


def _rows(value: Iterable[Any]) -> Iterator[str]:
    for row in value:
        yield json.dumps(row, sort_keys=True, ensure_ascii=False)


def comparison_json(comparison: RunComparison) -> dict[str, Any]:
    """``diff --json``: both run ids, a count per change, and every step."""
    return {
        "run_a": comparison.run_a,
        "run_b": comparison.run_b,
        "counts": {change.value: comparison.count(change) for change in OutputChange},
        "steps": [
            {
                "step": step.step,
                "change": step.change.value,
                "output_a": step.output_a,
                "output_b": step.output_b,
                "hash_a": step.hash_a,
                "hash_b": step.hash_b,
            }
            for step in comparison.steps
        ],
    }
