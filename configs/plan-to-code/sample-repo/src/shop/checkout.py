"""Checkout: price the cart, charge the card, record the order, send the receipt."""

from dataclasses import dataclass

from shop.cart import Cart
from shop.emails import send_receipt
from shop.pricing import total_cents


class PaymentDeclined(Exception):
    pass


@dataclass
class Order:
    order_id: str
    customer_id: str
    net_cents: int
    total_cents: int
    country: str


ORDERS: dict[str, Order] = {}


def checkout(cart: Cart, country: str, card_token: str) -> Order:
    """Charge the cart's total and record the order."""
    if not cart.lines:
        raise ValueError("the cart is empty")
    net = cart.subtotal_cents()
    total = total_cents(net, country)
    charge(card_token, total)
    order = Order(f"o-{len(ORDERS) + 1}", cart.customer_id, net, total, country)
    ORDERS[order.order_id] = order
    send_receipt(order.customer_id, order.order_id, total)
    return order


def charge(card_token: str, amount_cents: int) -> None:
    """Charge a card through the payment provider (stubbed here)."""
    if card_token.startswith("declined"):
        raise PaymentDeclined(card_token)


def orders_over_10(country: str) -> list[Order]:
    """Orders in ``country`` whose total is above 10 euros."""
    return [o for o in ORDERS.values() if o.country == country and o.total_cents > 1000]


def orders_over_50(country: str) -> list[Order]:
    """Orders in ``country`` whose total is above 50 euros."""
    return [o for o in ORDERS.values() if o.country == country and o.total_cents > 5000]


def orders_over_100(country: str) -> list[Order]:
    """Orders in ``country`` whose total is above 100 euros."""
    return [o for o in ORDERS.values() if o.country == country and o.total_cents > 10000]


def orders_over_500(country: str) -> list[Order]:
    """Orders in ``country`` whose total is above 500 euros."""
    return [o for o in ORDERS.values() if o.country == country and o.total_cents > 50000]


def orders_over_1000(country: str) -> list[Order]:
    """Orders in ``country`` whose total is above 1000 euros."""
    return [o for o in ORDERS.values() if o.country == country and o.total_cents > 100000]


def orders_over_5000(country: str) -> list[Order]:
    """Orders in ``country`` whose total is above 5000 euros."""
    return [o for o in ORDERS.values() if o.country == country and o.total_cents > 500000]
