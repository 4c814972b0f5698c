"""Orders and payments for stream-stream join tests, and the join oracle computed from them
independently of streamline (pairs by key and time distance, plus the unmatched rows).

Each side is produced out of order by at most half its `max_out_of_orderness`, so no
record is late; 10% of the orders are never paid, a few are paid too long after (no
match), some payments have no order, and some orders are paid twice (two matches).
"""

from __future__ import annotations

import random
from dataclasses import dataclass
from typing import Any

T0 = 1_767_225_600_000
STEP_MS = 200
WITHIN_MS = 60_000
LEFT_OOO_MS = 5_000
RIGHT_OOO_MS = 10_000

TOPOLOGY = """\
apiVersion: streamline/v1
name: {name}
version: "1"
sources:
  - name: orders
    topic: {orders}
    schema: com.example.Order
    event_time: created_at
    partitioned_by: order_id
    watermark: {{max_out_of_orderness: 5s, idle_timeout: {idle}}}
  - name: payments
    topic: {payments}
    schema: com.example.Payment
    event_time: paid_at
    partitioned_by: order_id
    watermark: {{max_out_of_orderness: 10s, idle_timeout: {idle}}}
stages:
  - filter: amount >= 0.0
  - join:
      stream: payments
      on: order_id
      within: 1m
      type: {type}
      fields: {{paid_amount: amount, paid_at: paid_at}}
sink:
  topic: {sink}
  schema: com.example.OrderPayment
commit_interval: 100ms
"""


def order(i: int, created_at: int) -> dict[str, Any]:
    return {
        "order_id": f"o-{i}",
        "customer_id": f"c-{i % 17}",
        "amount": float(i % 300) + 0.25,
        "currency": "EUR",
        "status": "NEW",
        "country": "DE",
        "created_at": created_at,
    }


def payment(n: int, order_id: str, paid_at: int) -> dict[str, Any]:
    return {
        "payment_id": f"p-{n}",
        "order_id": order_id,
        "amount": float(n % 300) + 0.5,
        "method": "card",
        "paid_at": paid_at,
    }


@dataclass
class Scenario:
    orders: list[dict[str, Any]]
    payments: list[dict[str, Any]]

    @classmethod
    def make(cls, n: int, seed: int = 1) -> Scenario:
        rng = random.Random(seed)
        orders, payments = [], []
        for i in range(n):
            created = T0 + i * STEP_MS
            orders.append(order(i, created))
            draw = rng.random()
            if draw < 0.10:
                continue  # never paid
            if draw < 0.13:  # paid too late: no match
                payments.append(payment(len(payments), f"o-{i}", created + WITHIN_MS + 1 + i))
                continue
            payments.append(
                payment(len(payments), f"o-{i}", created + rng.randint(-WITHIN_MS, WITHIN_MS))
            )
            if draw > 0.97:  # paid twice
                payments.append(
                    payment(len(payments), f"o-{i}", created + rng.randint(0, WITHIN_MS))
                )
        for j in range(n // 20):  # payments of no order
            payments.append(payment(len(payments), f"x-{j}", T0 + rng.randrange(n) * STEP_MS))
        return cls(orders, payments)

    def closing(self, partitions: int) -> list[tuple[int, dict[str, Any], dict[str, Any]]]:
        """(partition, order, payment) far ahead of everything, for each partition: they move
        each partition's join watermark past every record above (and match each other)."""
        n = len(self.orders)
        end = T0 + n * STEP_MS + 3 * WITHIN_MS + 2 * RIGHT_OOO_MS
        pairs = []
        for p in range(partitions):
            o = order(n + p, end)
            o["order_id"] = f"end-{p}"
            pairs.append((p, o, payment(10**6 + p, f"end-{p}", end)))
        return pairs

    def feed(self, seed: int = 2) -> list[tuple[str, dict[str, Any]]]:
        """Both sides interleaved by event time, each out of order by at most half its
        max_out_of_orderness."""
        rng = random.Random(seed)
        items = [
            (o["created_at"] + rng.randint(0, LEFT_OOO_MS // 2), "orders", o) for o in self.orders
        ] + [
            (p["paid_at"] + rng.randint(0, RIGHT_OOO_MS // 2), "payments", p) for p in self.payments
        ]
        items.sort(key=lambda item: item[0])
        return [(side, value) for _, side, value in items]

    def expected(self, join_type: str, partitions: int) -> list[dict[str, Any]]:
        """The oracle: every output row the join of this type makes, in no order."""
        by_key: dict[str, list[dict[str, Any]]] = {}
        for p in self.payments:
            by_key.setdefault(p["order_id"], []).append(p)
        rows = []
        paid: set[str] = set()
        for o in self.orders:
            matched = [
                p
                for p in by_key.get(o["order_id"], [])
                if abs(p["paid_at"] - o["created_at"]) <= WITHIN_MS
            ]
            paid.update(p["payment_id"] for p in matched)
            rows += [row(o, p) for p in matched]
            if not matched and join_type in ("left", "outer"):
                rows.append(row(o, None))
        if join_type == "outer":
            rows += [row(None, p) for p in self.payments if p["payment_id"] not in paid]
        return rows + [row(o, p) for _, o, p in self.closing(partitions)]


def row(o: dict[str, Any] | None, p: dict[str, Any] | None) -> dict[str, Any]:
    """The sink record (com.example.OrderPayment) of a pair or an unmatched side."""
    assert o is not None or p is not None
    return {
        "order_id": o["order_id"] if o is not None else p["order_id"],  # type: ignore[index]
        "customer_id": o["customer_id"] if o else None,
        "amount": o["amount"] if o else None,
        "currency": o["currency"] if o else None,
        "created_at": o["created_at"] if o else None,
        "paid_amount": p["amount"] if p else None,
        "paid_at": p["paid_at"] if p else None,
    }


def canonical(rows: list[dict[str, Any]]) -> list[tuple[Any, ...]]:
    """Rows as sorted tuples: equal lists of rows, duplicates counted."""
    return sorted(tuple((k, str(v)) for k, v in sorted(r.items())) for r in rows)
