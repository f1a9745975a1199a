"""A customer's cart: lines of product, quantity and unit price in cents."""

from dataclasses import dataclass, field


@dataclass
class Line:
    sku: str
    quantity: int
    unit_cents: int


@dataclass
class Cart:
    customer_id: str
    lines: list[Line] = field(default_factory=list)

    def add(self, sku: str, quantity: int, unit_cents: int) -> None:
        self.lines.append(Line(sku, quantity, unit_cents))

    def subtotal_cents(self) -> int:
        return sum(line.quantity * line.unit_cents for line in self.lines)
