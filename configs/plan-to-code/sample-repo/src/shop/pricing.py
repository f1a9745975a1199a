"""Prices: VAT by country, rounding to whole cents."""

VAT = {"DE": 0.19, "FR": 0.20, "NL": 0.21}


def vat_cents(net_cents: int, country: str) -> int:
    return round(net_cents * VAT.get(country, 0.0))


def total_cents(net_cents: int, country: str) -> int:
    return net_cents + vat_cents(net_cents, country)
