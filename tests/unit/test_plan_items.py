"""The planner's reason for a fan-out step that did not finish: how far its items got (from
its checkpoints), the same after Ctrl-C (left pending) as after a kill (left running)."""

from __future__ import annotations

import pytest

from stepline.engine.plan import Action, StepFacts, plan_run
from stepline.store.items import ItemCounts

PARTWAY = ItemCounts(done=84, started=2, total=200)


@pytest.mark.parametrize("status", ["pending", "running", None])
def test_an_unfinished_fan_out_says_how_many_items_are_done(status: str | None) -> None:
    (decision,) = plan_run([StepFacts(id="each", previous_status=status, items=PARTWAY)])

    assert (decision.action, decision.reason) == (Action.RUN, "unfinished: 84 of 200 items done")


def test_a_failed_fan_out_says_how_many_items_are_done_and_failed() -> None:
    items = ItemCounts(done=150, failed=50, total=200)

    (decision,) = plan_run([StepFacts(id="each", previous_status="failed", items=items)])

    assert decision.reason == "failed last time (150 of 200 items done, 50 failed)"


def test_without_a_known_total_the_items_done_are_counted_alone() -> None:
    (decision,) = plan_run([StepFacts(id="each", items=ItemCounts(done=3))])

    assert decision.reason == "unfinished: 3 items done"


def test_only_a_not_done_reason_mentions_the_items() -> None:
    facts = StepFacts(id="each", previous_status="pending", items=PARTWAY)

    (decision,) = plan_run([facts], from_step={"each"})

    assert (decision.action, decision.reason) == (Action.RUN, "--from-step")
