"""Hand-written example replies for the offline demo (not model output).

``python scripts/record_demo.py plan-to-code`` runs the pipeline on sample-repo/ against a
fake server that answers with these, and writes demo-cassette.jsonl.
"""

from __future__ import annotations

import json
import re

INPUT = "task.md"
ARGS: list[str] = []

RELEVANCE = {
    "src/shop/checkout.py#1": (0.95, "checkout() computes the total; the discount goes here."),
    "src/shop/checkout.py#2": (0.1, "Order queries; unaffected by discounts."),
    "src/shop/pricing.py#1": (0.8, "Net and VAT arithmetic; the discount applies before VAT."),
    "src/shop/emails.py#1": (0.7, "The receipt must show the discount."),
    "src/shop/cart.py#1": (0.4, "The subtotal is the net price the discount reduces."),
    "tests/test_pricing.py#1": (0.6, "Pricing tests to extend with discounted totals."),
    "README.md#1": (0.05, "A general description."),
    "pyproject.toml#1": (0.0, "Packaging only."),
}

PLAN = """## Steps

1. **`src/shop/discounts.py` (new).** A `DiscountCode` dataclass (`code`, `percent`,
   `expires_on: date`) and `find_code(code, today) -> DiscountCode`, raising
   `InvalidDiscount` for an unknown or expired code.
2. **`src/shop/pricing.py`.** Add `discount_cents(net_cents, percent)`; round to whole
   cents like `vat_cents`. VAT is computed on the discounted net.
3. **`src/shop/checkout.py`.** `checkout()` takes `discount_code: str | None = None`; look it
   up before charging, subtract the discount from `net`, and store `discount_cents` on
   `Order` (one code per order, so a single field).
4. **`src/shop/emails.py`.** `send_receipt()` takes `discount_cents` and prints it as its own
   line when it is not zero.

## Tests

- `tests/test_pricing.py`: 10% off 1000 cents in DE gives 1071 (900 net + 171 VAT).
- `tests/test_checkout.py` (new): an expired code is refused before the card is charged; a
  valid code shows on the receipt.
"""


def reply(prompt: str, model: str) -> str:
    """The example reply to one request, chosen by the prompt's ``Task:`` line."""
    if prompt.startswith("Task: judge"):
        found = re.search(r"^File (\S+), lines (\d+)-", prompt, re.MULTILINE)
        assert found, prompt
        chunk = 1 + (int(found.group(2)) - 1) // 40
        relevance, reason = RELEVANCE[f"{found.group(1)}#{chunk}"]
        return json.dumps({"relevance": relevance, "reason": reason})
    if prompt.startswith("Task: write an implementation plan"):
        return PLAN
    raise ValueError(f"no example reply for {prompt.splitlines()[0]!r} ({model})")
