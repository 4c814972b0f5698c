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
    return paid_order(order)


def paid_order(order: dict[str, Any]) -> dict[str, Any]:
    """The PaidOrder of an order, its amount in EUR."""
    return {
        "order_id": order["order_id"],
        "customer_id": order["customer_id"],
        "amount_eur": order["amount"] * RATES[order["currency"]],
        "country": order["country"],
        "created_at": order["created_at"],
    }


_calls: dict[str, list[float]] = {}


def picky(order: dict[str, Any]) -> dict[str, Any]:
    """Fails by the order id's prefix: `flaky-` its first 2 calls, `slow-` for 2 s, `doomed-` always.

    Every call is appended to the file named by STREAMLINE_TEST_CALL_LOG as `order_id time_ms`.
    """
    import os
    import time

    order_id = order["order_id"]
    now = time.time()
    calls = _calls.setdefault(order_id, [])
    calls.append(now)
    log = os.environ.get("STREAMLINE_TEST_CALL_LOG")
    if log:
        with open(log, "a") as f:
            f.write(f"{order_id} {int(now * 1000)}\n")
    if order_id.startswith("flaky-") and len(calls) <= 2:
        raise MapFailure(f"{order_id}: call {len(calls)} fails")
    if order_id.startswith("slow-") and now - calls[0] < 2.0:
        raise MapFailure(f"{order_id}: not ready for {2.0 - (now - calls[0]):.1f}s")
    if order_id.startswith("doomed-"):
        raise MapFailure(f"{order_id}: always fails")
    return to_eur_or_fail(order)


def picky_in_eur(order: dict[str, Any]) -> dict[str, Any]:
    """Fails as `picky` does; returns the Order itself with its amount in EUR."""
    picky(order)
    return {**order, "amount": order["amount"] * RATES[order["currency"]], "currency": "EUR"}


def stalls(order: dict[str, Any]) -> dict[str, Any]:
    """A PaidOrder; for an order whose id starts with `stuck-`, never returns (a hung call)."""
    import time

    if order["order_id"].startswith("stuck-"):
        while True:
            time.sleep(3600)
    return paid_order(order)


def _dependency_url(order: dict[str, Any]) -> str:
    import os

    base = os.environ["STREAMLINE_TEST_DEPENDENCY"]
    return f"{base}/enrich/{order['order_id']}"


def _dependency_timeout() -> float:
    import os

    return float(os.environ.get("STREAMLINE_TEST_DEPENDENCY_TIMEOUT", "5"))


def _enriched(order: dict[str, Any], tier: str) -> dict[str, Any]:
    return {**paid_order(order), "country": f"{order['country']}/{tier}"}


def enrich_sync(order: dict[str, Any]) -> dict[str, Any]:
    """A PaidOrder whose country carries the tier the HTTP dependency answers (blocking call)."""
    import httpx

    response = httpx.get(
        _dependency_url(order),
        params={"key": order["customer_id"]},
        timeout=_dependency_timeout(),
    )
    response.raise_for_status()
    return _enriched(order, response.json()["tier"])


_sessions: dict[int, Any] = {}


async def enrich_async(order: dict[str, Any]) -> dict[str, Any]:
    """`enrich_sync` as an `async def` map, through one aiohttp session per event loop."""
    import asyncio

    import aiohttp

    loop = id(asyncio.get_running_loop())
    session = _sessions.get(loop)
    if session is None:
        session = _sessions[loop] = aiohttp.ClientSession(
            connector=aiohttp.TCPConnector(limit=0),
            timeout=aiohttp.ClientTimeout(total=_dependency_timeout()),
        )
    params = {"key": order["customer_id"]}
    async with session.get(_dependency_url(order), params=params) as response:
        response.raise_for_status()
        body = await response.json()
    return _enriched(order, body["tier"])
