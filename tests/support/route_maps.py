"""User code for the routing end-to-end test: a typed map that sometimes returns a misfit."""

from __future__ import annotations

from typing import Any

from tests.support.maps import to_eur_or_fail


def misfits(order_id: str) -> bool:
    """The orders whose result has a string amount (a `schema` dead letter)."""
    return order_id.startswith("o-") and order_id[2:].isdigit() and int(order_id[2:]) % 113 == 11


def to_eur_typed(order: dict[str, Any]) -> dict[str, Any]:
    """`to_eur_or_fail`, but the amount of some orders comes back as text."""
    out = to_eur_or_fail(order)
    if misfits(order["order_id"]):
        out["amount_eur"] = str(out["amount_eur"])
    return out
