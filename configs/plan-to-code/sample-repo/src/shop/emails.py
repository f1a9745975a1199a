"""Emails to customers (printed here instead of sent)."""


def send_receipt(customer_id: str, order_id: str, total_cents: int) -> None:
    print(f"to {customer_id}: receipt for {order_id}, {total_cents / 100:.2f} EUR")
