"""W5's enrichment, shared by streamline's map and the Quix Streams app: one HTTP call per order.

`GET {BENCH_ENRICH_URL}/customers/{customer_id}` answers `{"tier": ...}` after the
server's latency; the output is the order's PaidOrder with `country` = `DE/gold`.
"""

from __future__ import annotations

import asyncio
import os
from typing import Any

_sessions: dict[int, Any] = {}


def url(order: dict[str, Any]) -> str:
    return f"{os.environ['BENCH_ENRICH_URL']}/customers/{order['customer_id']}"


def enriched(order: dict[str, Any], tier: str) -> dict[str, Any]:
    return {
        "order_id": order["order_id"],
        "customer_id": order["customer_id"],
        "amount_eur": order["amount"],
        "country": f"{order['country']}/{tier}",
        "created_at": order["created_at"],
    }


async def enrich(order: dict[str, Any]) -> dict[str, Any]:
    """streamline's map: `async def`, through one aiohttp session per event loop."""
    import aiohttp

    loop = id(asyncio.get_running_loop())
    session = _sessions.get(loop)
    if session is None:
        session = _sessions[loop] = aiohttp.ClientSession(
            connector=aiohttp.TCPConnector(limit=0), timeout=aiohttp.ClientTimeout(total=10)
        )
    async with session.get(url(order)) as response:
        response.raise_for_status()
        return enriched(order, (await response.json())["tier"])
