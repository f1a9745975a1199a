"""A run's spending limit (``budget: {max_usd: ...}`` or ``--max-cost``), checked before calls.

A call goes out only while what the run has spent, plus the most every call in flight could
still cost, plus the most this call could cost, stays within the limit. "The most a call could
cost" prices its estimated input and a full ``max_tokens`` reply, so the limit is never passed
by the calls stepline can price; a reply usually costs much less, and the difference is given
back when it arrives. Replies from the cache or a cassette cost nothing and are never checked.
"""

from __future__ import annotations

from stepline.errors import BudgetReached

ROUNDING_USD = 1e-9
"""How far a sum of decimal prices may stray in binary floats (0.1 + 0.1 + 0.1 > 0.3) before
it counts as passing the limit: a billionth of a dollar, far below any price."""


class CostBudget:
    """What a run may still spend, shared by every LLM call of the run."""

    def __init__(self, limit_usd: float, spent_usd: float = 0.0) -> None:
        self.limit_usd = limit_usd
        self.spent_usd = spent_usd  # before this process, from the run's state
        self._reserved_usd = 0.0  # the most the calls in flight can still cost

    def reserve(self, most_usd: float, *, model: str) -> None:
        """Hold ``most_usd`` for a call about to be sent, or refuse it with ``BudgetReached``."""
        committed = self.spent_usd + self._reserved_usd
        if committed + most_usd > self.limit_usd + ROUNDING_USD:
            raise BudgetReached(
                f"the budget of ${self.limit_usd:.4f} would be passed: ${self.spent_usd:.4f} "
                f"spent so far, and the next call to {model} could cost up to ${most_usd:.4f}",
                hint="resume with a higher limit: pipeline resume RUN_ID --max-cost USD",
            )
        self._reserved_usd += most_usd

    def settle(self, reserved_usd: float, cost_usd: float | None) -> None:
        """A reserved call ended: give back its hold, count what it cost (None: nothing)."""
        self._reserved_usd = max(0.0, self._reserved_usd - reserved_usd)
        self.spent_usd += cost_usd or 0.0
