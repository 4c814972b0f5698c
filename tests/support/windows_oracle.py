"""Brute-force window results, computed from the input alone, to check the runtime against."""

from __future__ import annotations

import random
from collections import defaultdict
from dataclasses import dataclass
from typing import Any

BASE = 1767225600000


@dataclass(frozen=True)
class Event:
    key: str
    order_id: str
    amount: float
    t: int
    seq: int  # position in its input partition: ties of first/last go by arrival


def order(e: Event, **changes: Any) -> dict[str, Any]:
    """The event as a PAID order in EUR (the Order schema's fields), with `changes` applied."""
    return {
        "order_id": e.order_id,
        "customer_id": e.key,
        "amount": e.amount,
        "currency": "EUR",
        "status": "PAID",
        "country": "DE",
        "created_at": e.t,
        **changes,
    }


def events(n: int, keys: int, step_ms: int, disorder_ms: int, seed: int = 3) -> list[Event]:
    """n events, event time advancing by step_ms, each delayed by up to disorder_ms."""
    rng = random.Random(seed)
    used: set[int] = set()
    out = []
    for i in range(n):
        t = BASE + i * step_ms - rng.randrange(disorder_ms)
        while t in used:  # distinct event times: first/last never depend on arrival order
            t -= 1
        used.add(t)
        out.append(Event(f"k-{rng.randrange(keys)}", f"o-{i}", round(rng.uniform(1, 100), 2), t, i))
    return out


def _aggregate(members: list[Event]) -> dict[str, Any]:
    amounts = [e.amount for e in members]
    first = min(members, key=lambda e: (e.t, e.seq))
    last = max(members, key=lambda e: (e.t, e.seq))
    return {
        "order_count": len(members),
        "revenue": sum(amounts),
        "max_amount": max(amounts),
        "min_amount": min(amounts),
        "avg_amount": sum(amounts) / len(members),
        "first_order": first.order_id,
        "last_order": last.order_id,
    }


def windows(
    evts: list[Event], kind: str, size: int, advance: int, gap: int, lateness: int, watermark: int
) -> dict[tuple[str, int], dict[str, Any]]:
    """(key, window_start) -> the sink record of every window that fires by `watermark`."""
    members: dict[tuple[str, int, int], list[Event]] = defaultdict(list)
    if kind == "session":
        by_key: dict[str, list[Event]] = defaultdict(list)
        for e in evts:
            by_key[e.key].append(e)
        for key, own in by_key.items():
            own.sort(key=lambda e: e.t)
            current = [own[0]]
            for e in own[1:]:
                if e.t - current[-1].t <= gap:
                    current.append(e)
                else:
                    members[(key, current[0].t, current[-1].t + gap)] = current
                    current = [e]
            members[(key, current[0].t, current[-1].t + gap)] = current
    else:
        step = size if kind == "tumbling" else advance
        for e in evts:
            start = (e.t // step) * step
            while start > e.t - size:
                if kind == "tumbling" or start <= e.t < start + size:
                    members[(e.key, start, start + size)].append(e)
                start -= step
                if kind == "tumbling":
                    break
    out = {}
    for (key, start, end), group in members.items():
        if end + lateness <= watermark:
            out[(key, start)] = {
                "customer_id": key,
                "window_start": start,
                "window_end": end,
                **_aggregate(group),
            }
    return out
