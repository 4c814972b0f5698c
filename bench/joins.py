"""W4, stream-table enrichment: each order gets its customer's segment and country as of
the order's event time, from a versioned table of 10,000 customers.

The customers topic is produced before any system starts, in the orders' partitions
(`partition_of(customer_id)`), each record timestamped with its `updated_at`: every
customer's first version is valid from before the first order, and `UPDATES` later
versions fall inside the orders' event-time range. streamline reads it as a versioned
table (`join` stage, `missing: drop`); Quix Streams with its own `join_asof` (inner),
which orders the two topics of a partition by timestamp. The orders of the closing
keys have no customer and are left out by both. The expected output is computed here.
"""

from __future__ import annotations

import bisect
import random
from collections.abc import Iterator
from typing import Any

from bench.report import Row
from bench.workload import CLOSING_PREFIX, STEP_MS, partition_of

TABLE_CUSTOMERS = 10_000
UPDATES = 10_000
SEGMENTS = ("bronze", "silver", "gold", "platinum")
COUNTRIES = ("DE", "FR", "NL", "IT", "ES")

W4_STAGES = """\
  - join:
      table: customers
      on: customer_id
      fields: {segment: segment, customer_country: country}
      missing: drop
"""

W4_TABLES = """\
tables:
  - name: customers
    topic: {table}
    schema: com.example.Customer
    key: customer_id
    versioned: {{history: 7d}}
    valid_from: updated_at
"""


def table_topic(source: str) -> str:
    """W4's customers topic, beside the run's input topic."""
    return f"{source}-customers"


def customer(n: int, version: int, valid_from: int) -> dict[str, Any]:
    return {
        "customer_id": f"c-{n:04d}",
        "segment": SEGMENTS[(n + version) % len(SEGMENTS)],
        "country": COUNTRIES[(n * 7 + version) % len(COUNTRIES)],
        "updated_at": valid_from,
    }


class CustomerTable:
    """The customers' versions, and the as-of oracle of W4."""

    def __init__(self, base_ms: int, events: int, seed: int = 5) -> None:
        rng = random.Random(seed)
        self.rows = [customer(n, 0, base_ms - 1) for n in range(TABLE_CUSTOMERS)]
        versions = [0] * TABLE_CUSTOMERS
        span = max(events * STEP_MS, 1)
        updates = []
        for _ in range(UPDATES):
            n = rng.randrange(1000) if rng.random() < 0.5 else rng.randrange(TABLE_CUSTOMERS)
            versions[n] += 1
            # odd, while order times are even: no order is at the very time of a version, where
            # the outcome would depend on which of the two a system reads first
            updates.append(customer(n, versions[n], base_ms + rng.randrange(span) | 1))
        self.rows += sorted(updates, key=lambda r: r["updated_at"])
        self._history: dict[str, tuple[list[int], list[dict[str, Any]]]] = {}
        for row in self.rows:
            times, rows = self._history.setdefault(row["customer_id"], ([], []))
            at = bisect.bisect_right(times, row["updated_at"])
            times.insert(at, row["updated_at"])
            rows.insert(at, row)
        self.expected: list[Row] = []

    def records(self) -> Iterator[tuple[int, str, dict[str, Any]]]:
        """(partition, key, record) of every version, in produce order (by valid_from)."""
        for row in self.rows:
            yield partition_of(row["customer_id"]), row["customer_id"], row

    def add(self, order: dict[str, Any]) -> None:
        """The W4 output of one order (none for a closing key, which has no customer)."""
        key = order["customer_id"]
        if key.startswith(CLOSING_PREFIX):
            return
        times, rows = self._history[key]
        row = rows[bisect.bisect_right(times, order["created_at"]) - 1]
        self.expected.append(enriched_row(order, row["segment"], row["country"]))


def enriched_row(order: dict[str, Any], segment: str, country: str) -> Row:
    """The tuple a W4 output record is checked by."""
    return (
        order["order_id"],
        order["customer_id"],
        round(float(order["amount"]), 6),
        int(order["created_at"]),
        segment,
        country,
    )
