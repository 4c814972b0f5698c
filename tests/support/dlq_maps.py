"""A map whose failures can be "fixed" from outside, for the dead-letter replay test."""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any

from tests.support.maps import MapFailure, paid_order

FAIL_FILE = "STREAMLINE_TEST_FAIL_FILE"


def to_eur_while_flagged(order: dict[str, Any]) -> dict[str, Any]:
    """A PaidOrder in EUR; raises for orders whose id ends in `-boom` while the file named by
    STREAMLINE_TEST_FAIL_FILE exists."""
    flag = os.environ.get(FAIL_FILE)
    if flag and Path(flag).exists() and order["order_id"].endswith("-boom"):
        raise MapFailure(f"cannot convert {order['order_id']} while {flag} exists")
    return paid_order(order)
