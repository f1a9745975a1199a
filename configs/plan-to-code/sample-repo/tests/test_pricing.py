from shop.pricing import total_cents


def test_german_vat():
    assert total_cents(1000, "DE") == 1190
