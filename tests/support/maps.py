"""User code for the end-to-end tests' topologies."""

from __future__ import annotations

from typing import Any

RATES = {"EUR": 1.0, "USD": 0.9}


class MapFailure(RuntimeError):
    """What the test's map raises for orders marked to fail."""


def to_eur_or_fail(order: dict[str, Any]) -> dict[str, Any]:
    """A PaidOrder in EUR; raises for every order whose id ends in `-boom`."""
    if order["order_id"].endswith("-boom"):
        raise MapFailure(f"cannot convert {order['order_id']}")
    return {
        "order_id": order["order_id"],
        "customer_id": order["customer_id"],
        "amount_eur": order["amount"] * RATES[order["currency"]],
        "country": order["country"],
        "created_at": order["created_at"],
    }
