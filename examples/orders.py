"""User code of the paid-orders example topology (topologies/paid-orders.yaml)."""

from __future__ import annotations

from typing import Any

RATES_TO_EUR: dict[str, float] = {"USD": 0.9, "EUR": 1.0}
"""Fixed conversion rates; a real topology would look them up (and version them)."""


def to_eur(order: dict[str, Any]) -> dict[str, Any] | None:
    """A com.example.Order as a com.example.PaidOrder, its amount converted to EUR.

    Returns None (the record is dropped) for a currency without a known rate.
    """
    rate = RATES_TO_EUR.get(order["currency"])
    if rate is None:
        return None
    return {
        "order_id": order["order_id"],
        "customer_id": order["customer_id"],
        "amount_eur": round(order["amount"] * rate, 2),
        "country": order["country"],
        "created_at": order["created_at"],
    }
