"""An async enrichment map: each paid order gets its customer's tier from an HTTP service.

Used by examples/enrich-http.yaml:

    - map:
        fn: examples.enrich_http:enrich
        concurrency: 64        # calls in flight at once in this instance
        timeout: 2s            # the longest one call may take
        retry: {attempts: 3, backoff: {initial: 100ms, max: 1s}}
        circuit: {failure_rate: 50%, min_calls: 20, window: 30s, open_for: 10s}
        rate_limit: {per_second: 500, burst: 50}

The service is `ENRICH_URL` (default http://127.0.0.1:8080); `GET {ENRICH_URL}/customers/{id}`
answers `{"tier": "gold"}`. The runtime keeps one event loop per process, so the
aiohttp session made on the first call is reused for every later call. Calls may run
again after a crash (side effects are at-least-once): a lookup is safe to repeat.
Needs aiohttp (`pip install aiohttp`).
"""

from __future__ import annotations

import asyncio
import os
from typing import Any

_sessions: dict[int, Any] = {}


def _session() -> Any:
    """One aiohttp session per event loop (the runtime's loop lives as long as the process)."""
    import aiohttp

    loop = id(asyncio.get_running_loop())
    session = _sessions.get(loop)
    if session is None:
        session = _sessions[loop] = aiohttp.ClientSession(
            connector=aiohttp.TCPConnector(limit=0),  # `concurrency` bounds the calls
            timeout=aiohttp.ClientTimeout(total=5),  # the stage's `timeout` is shorter
        )
    return session


async def enrich(order: dict[str, Any]) -> dict[str, Any]:
    """A com.example.PaidOrder whose country carries the customer's tier: `DE/gold`.

    Raises on an error status, so the call is retried (and counts against the circuit).
    """
    base = os.environ.get("ENRICH_URL", "http://127.0.0.1:8080")
    async with _session().get(f"{base}/customers/{order['customer_id']}") as response:
        response.raise_for_status()
        tier = (await response.json())["tier"]
    return {
        "order_id": order["order_id"],
        "customer_id": order["customer_id"],
        "amount_eur": order["amount"] if order["currency"] == "EUR" else order["amount"] * 0.9,
        "country": f"{order['country']}/{tier}",
        "created_at": order["created_at"],
    }
