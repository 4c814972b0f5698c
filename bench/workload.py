"""The benchmark's input and what every system must make of it.

One stream of order events is generated per run and produced once; every system
reads the same bytes. The expected output of each workload is computed here,
independently of any system, while the events are generated.

- Keys are customers; each key always goes to the same partition (chosen here,
  explicitly), so no system needs to repartition for the windowed workloads.
- Event time (`created_at`, also the Kafka record timestamp) grows by
  `STEP_MS` from one event to the next, so it only increases within a
  partition and there is no late data.
- Each partition ends with a closing event ten minutes (of event time) after the last real one: it
  moves every partition's watermark past every real window, so each system
  fires them all. Windows of closing keys are left out of the checks.
"""

from __future__ import annotations

import random
import zlib
from collections.abc import Iterator
from dataclasses import dataclass, field
from typing import Any

from bench.report import Row

PARTITIONS = 6
CUSTOMERS = 1000
STEP_MS = 2
WINDOW_MS = 60_000
# odd, while event times are even: no gap between two events equals it exactly
SESSION_GAP_MS = 5_001
CLOSING_AFTER_MS = (
    600_000  # past every window and session; the broker rejects timestamps >1 h ahead
)
CLOSING_PREFIX = "close-"
RATES_TO_EUR = {"USD": 0.9, "EUR": 1.0}
INVALID_EVERY = 200  # one event in 200 has a negative amount and fails validation


def partition_of(key: str, partitions: int = PARTITIONS) -> int:
    return zlib.crc32(key.encode()) % partitions


def closing_key(partition: int, partitions: int = PARTITIONS) -> str:
    """A key that lands in `partition` and names itself a closing key."""
    n = 0
    while True:
        key = f"{CLOSING_PREFIX}{partition}-{n}"
        if partition_of(key, partitions) == partition:
            return key
        n += 1


def is_valid(order: dict[str, Any]) -> bool:
    """The validation rules of W1 (streamline's `validate` stage, the peers' check)."""
    return bool(order["amount"] > 0.0 and order["currency"] in RATES_TO_EUR)


def to_eur(order: dict[str, Any]) -> dict[str, Any]:
    """The W1 map, as examples.orders:to_eur computes it."""
    return {
        "order_id": order["order_id"],
        "customer_id": order["customer_id"],
        "amount_eur": round(order["amount"] * RATES_TO_EUR[order["currency"]], 2),
        "country": order["country"],
        "created_at": order["created_at"],
    }


def paid_row(record: dict[str, Any]) -> Row:
    """The identity-bearing tuple a W1 output record is checked by."""
    return (
        record["order_id"],
        record["customer_id"],
        round(float(record["amount_eur"]), 6),
        record["country"],
        int(record["created_at"]),
    )


def window_row(key: str, start_ms: int, count: int, total: float) -> Row:
    """The tuple a W2/W3 window result is checked by."""
    return (key, int(start_ms), int(count), round(float(total), 6))


@dataclass
class Expected:
    """What each workload must output for the generated events."""

    events: int = 0
    paid: list[Row] = field(default_factory=list)
    windows: dict[tuple[str, int], list[float]] = field(default_factory=dict)
    sessions: list[Row] = field(default_factory=list)

    def window_rows(self) -> list[Row]:
        return [window_row(k, s, int(c), t) for (k, s), (c, t) in self.windows.items()]


class OrderStream:
    """Deterministic order events: `(partition, key, record)` in produce order."""

    def __init__(self, events: int, base_ms: int, seed: int = 7) -> None:
        self.events = events
        self.base_ms = base_ms - base_ms % WINDOW_MS
        self.seed = seed

    def __iter__(self) -> Iterator[tuple[int, str, dict[str, Any]]]:
        rng = random.Random(self.seed)
        customers = [f"c-{i:04d}" for i in range(CUSTOMERS)]
        countries = ["DE", "FR", "NL", "IT"]
        t = self.base_ms
        for i in range(self.events):
            key = customers[rng.randrange(CUSTOMERS)]
            amount = round(rng.uniform(1.0, 500.0), 2)
            yield (
                partition_of(key),
                key,
                {
                    "order_id": f"o-{i:09d}",
                    "customer_id": key,
                    "amount": -amount if i % INVALID_EVERY == 7 else amount,
                    "currency": "USD" if rng.random() < 0.3 else "EUR",
                    "status": "PAID" if rng.random() < 0.8 else "PENDING",
                    "country": countries[rng.randrange(len(countries))],
                    "created_at": t,
                },
            )
            t += STEP_MS
        for p in range(PARTITIONS):
            key = closing_key(p)
            yield (
                p,
                key,
                {
                    "order_id": f"close-{p}",
                    "customer_id": key,
                    "amount": 1.0,
                    "currency": "EUR",
                    "status": "PAID",
                    "country": "DE",
                    "created_at": t + CLOSING_AFTER_MS,
                },
            )


class Expectation:
    """Builds `Expected` from the events as they are generated."""

    def __init__(self) -> None:
        self.expected = Expected()
        self._last_seen: dict[str, int] = {}
        self._open: dict[str, list[Any]] = {}  # key -> [start, last, count, sum]

    def add(self, record: dict[str, Any]) -> None:
        e = self.expected
        e.events += 1
        if is_valid(record) and record["status"] == "PAID":
            e.paid.append(paid_row(to_eur(record)))
        key: str = record["customer_id"]
        if key.startswith(CLOSING_PREFIX):
            return
        t: int = record["created_at"]
        window = e.windows.setdefault((key, t - t % WINDOW_MS), [0, 0.0])
        window[0] += 1
        window[1] += record["amount"]
        session = self._open.get(key)
        if session is not None and t - session[1] > SESSION_GAP_MS:
            e.sessions.append(window_row(key, session[0], session[2], session[3]))
            session = None
        if session is None:
            self._open[key] = [t, t, 1, record["amount"]]
        else:
            session[1] = t
            session[2] += 1
            session[3] += record["amount"]

    def finish(self) -> Expected:
        for key, (start, _last, count, total) in self._open.items():
            self.expected.sessions.append(window_row(key, start, count, total))
        self._open = {}
        return self.expected
