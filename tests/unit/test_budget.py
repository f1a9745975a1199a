"""``CostBudget``: holds for calls in flight, what they cost, and where the limit stops them.

The amounts are sums of powers of two, so every comparison with the limit is exact.
"""

from __future__ import annotations

import pytest

from stepline.errors import BudgetReached
from stepline.providers.budget import ROUNDING_USD, CostBudget

PAST = 1000 * ROUNDING_USD
"""The least amount that counts as past the limit in these tests: above float rounding."""


def test_a_call_that_fits_is_held_and_its_cost_counted_when_it_settles() -> None:
    budget = CostBudget(1.0)

    budget.reserve(0.5, model="claude-haiku-5-5")
    assert budget.spent_usd == 0.0  # a hold is not spending

    budget.settle(0.5, 0.125)
    assert budget.spent_usd == 0.125


def test_a_reservation_that_reaches_the_limit_exactly_is_allowed() -> None:
    budget = CostBudget(1.0)

    budget.reserve(0.75, model="m")
    budget.reserve(0.25, model="m")  # 0.75 + 0.25 == 1.0: at the limit, not past it


def test_a_reservation_past_the_limit_by_the_least_amount_is_refused() -> None:
    budget = CostBudget(1.0)
    budget.reserve(0.75, model="m")

    with pytest.raises(BudgetReached):
        budget.reserve(0.25 + PAST, model="m")  # a millionth of a dollar too much


def test_one_call_dearer_than_the_whole_budget_is_refused() -> None:
    with pytest.raises(BudgetReached) as raised:
        CostBudget(0.5).reserve(0.75, model="claude-opus-5-5")

    assert "claude-opus-5-5" in raised.value.message
    assert raised.value.exit_code == 3  # the run pauses at its budget


def test_holds_of_calls_in_flight_count_against_the_limit() -> None:
    budget = CostBudget(1.0)
    budget.reserve(0.5, model="m")
    budget.reserve(0.25, model="m")

    with pytest.raises(BudgetReached):
        budget.reserve(0.5, model="m")  # 0.5 + 0.25 held, 0.25 left
    budget.reserve(0.25, model="m")


def test_a_refused_reservation_holds_nothing() -> None:
    budget = CostBudget(1.0)
    budget.reserve(0.5, model="m")
    with pytest.raises(BudgetReached):
        budget.reserve(0.75, model="m")

    budget.reserve(0.5, model="m")  # the refused 0.75 left the other half free


def test_settling_gives_back_what_the_reply_did_not_cost() -> None:
    budget = CostBudget(1.0)
    budget.reserve(0.5, model="m")
    budget.reserve(0.5, model="m")

    budget.settle(0.5, 0.125)  # the reply cost a quarter of its hold

    budget.reserve(0.375, model="m")  # 0.125 spent + 0.5 held + 0.375 == 1.0
    with pytest.raises(BudgetReached):
        budget.reserve(PAST, model="m")


def test_a_call_without_a_cost_gives_its_hold_back_and_spends_nothing() -> None:
    budget = CostBudget(1.0)
    budget.reserve(1.0, model="m")

    budget.settle(1.0, None)  # failed, interrupted, or never sent

    assert budget.spent_usd == 0.0
    budget.reserve(1.0, model="m")


def test_a_reply_can_cost_more_than_its_hold_and_is_counted_in_full() -> None:
    budget = CostBudget(1.0)
    budget.reserve(0.25, model="m")

    budget.settle(0.25, 0.5)

    assert budget.spent_usd == 0.5
    with pytest.raises(BudgetReached):
        budget.reserve(0.75, model="m")


def test_giving_back_more_than_is_held_never_frees_more_than_the_limit() -> None:
    budget = CostBudget(1.0)
    budget.reserve(0.25, model="m")

    budget.settle(0.75, None)  # more than was held: the holds go to zero, not below

    budget.reserve(1.0, model="m")
    with pytest.raises(BudgetReached):
        budget.reserve(PAST, model="m")


def test_spending_from_before_this_process_counts_against_the_limit() -> None:
    budget = CostBudget(1.0, spent_usd=0.75)

    with pytest.raises(BudgetReached):
        budget.reserve(0.5, model="m")
    budget.reserve(0.25, model="m")
    budget.settle(0.25, 0.125)

    assert budget.spent_usd == 0.875


def test_a_budget_already_spent_refuses_every_priced_call() -> None:
    budget = CostBudget(1.0, spent_usd=1.0)

    budget.reserve(0.0, model="m")  # a call that costs nothing still fits
    with pytest.raises(BudgetReached):
        budget.reserve(PAST, model="m")


def test_many_small_settled_calls_add_up_to_what_they_cost() -> None:
    budget = CostBudget(1.0)
    for _ in range(32):
        budget.reserve(0.03125, model="m")
        budget.settle(0.03125, 0.03125)

    assert budget.spent_usd == 1.0
    budget.reserve(0.0, model="m")
    with pytest.raises(BudgetReached):
        budget.reserve(0.03125, model="m")


def test_decimal_amounts_that_reach_the_limit_exactly_are_allowed() -> None:
    budget = CostBudget(0.3)
    budget.reserve(0.1, model="m")
    budget.reserve(0.1, model="m")

    budget.reserve(0.1, model="m")
