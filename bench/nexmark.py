"""Nexmark-style streams and what each query must make of them (pure: no Kafka, no processes).

One deterministic event sequence is generated per run (the seed fixes every byte): each
step of `STEP_MS` of event time is a person (2 in 100), an auction (18 in 100) or a bid
(the rest). Nexmark's default mix is 1:3:46; auctions are raised here so that the join
queries, which read auctions, have enough input to be timed. Persons are keyed by `id`, auctions by `seller`, bids
by `auction`; each key always goes to the same partition (`partition_of`), so the
auctions of a seller sit in the partition of that person. Persons get odd event times,
auctions and bids even ones, so no auction is exactly `Q8_WITHIN_MS` after its seller.

Each topic and partition ends with a closing record 40 minutes of event time later
(ids from `CLOSING_ID`): it moves every watermark past every real window. Results of
closing records are left out of every check.

The queries (`QUERIES`), and the tuple each output is checked by:
- q0 passthrough of bids: (auction, bidder, price, date_time)
- q1 currency map, bid price in euro cents `price * 89 // 100`: the same tuple
- q2 filter, bids with `auction % 123 == 0`: the same tuple
- q3 stream-table join, auctions of category 10 with their seller (persons, a table) in
  OR, ID or CA: (auction id, seller, name, city, state)
- q5 hot items, bids counted per auction in hopping windows (10 s, every 2 s), then the
  largest count per window: (window_start, max_count)
- q7 highest bid, the largest price per tumbling 10 s window: (window_start, max_price)
- q8 new users, a stream-stream join: auctions whose seller registered at most 10 s
  before: (seller, name, auction id)
"""

from __future__ import annotations

import random
import zlib
from collections import defaultdict
from collections.abc import Iterator
from dataclasses import dataclass, field
from typing import Any

Row = tuple[Any, ...]

PARTITIONS = 6
STEP_MS = 2
PERSONS_PER_100 = 2
AUCTIONS_PER_100 = 18
# The peers' windows are given this much lateness: when several input partitions meet on
# one key (q7), Quix Streams and Bytewax advance event time by the largest one they have
# read, and a consumer may read a whole partition ahead of the others. streamline's
# watermark is the minimum over the input partitions and needs none.
PEER_LATENESS_MS = 1_800_000
# after the last event, past every window and the peers' lateness (and less than the 1 h
# ahead of now that the broker accepts: the run's events start 2 h in the past)
CLOSING_AFTER_MS = 2_400_000
MAX_EVENTS = PEER_LATENESS_MS // 2 - 1  # the run's event-time span stays below the lateness
CLOSING_ID = 1_000_000_000
Q2_MODULO = 123
Q3_CATEGORY = 10
Q3_STATES = ("OR", "ID", "CA")
Q5_SIZE_MS = 10_000
Q5_ADVANCE_MS = 2_000
Q7_WINDOW_MS = 10_000
Q8_WITHIN_MS = 10_000
STATES = ("OR", "ID", "CA", "WA", "NY", "TX", "AZ")
CITIES = ("Portland", "Boise", "Fresno", "Seattle", "Albany", "Austin", "Phoenix")

QUERIES = ("q0", "q1", "q2", "q3", "q5", "q7", "q8")
QUERY_TITLES = {
    "q0": "q0 passthrough",
    "q1": "q1 currency map",
    "q2": "q2 filter",
    "q3": "q3 person-auction join (stream-table)",
    "q5": "q5 hot items (hopping, then max)",
    "q7": "q7 highest bid (tumbling max)",
    "q8": "q8 new users (stream-stream join)",
}
# the topic each query is measured on (its throughput is that topic's events per second)
QUERY_INPUT = {
    "q0": "bids",
    "q1": "bids",
    "q2": "bids",
    "q3": "auctions",
    "q5": "bids",
    "q7": "bids",
    "q8": "auctions",
}
WINDOWED_OR_JOIN = ("q3", "q5", "q7", "q8")


def partition_of(key: str, partitions: int = PARTITIONS) -> int:
    return zlib.crc32(key.encode()) % partitions


def closing_id(partition: int, topic: str, partitions: int = PARTITIONS) -> int:
    """An id of `CLOSING_ID` or more whose key lands in `partition`; one range per topic."""
    n = CLOSING_ID + {"persons": 0, "auctions": 1_000, "bids": 2_000}[topic]
    while partition_of(str(n), partitions) != partition:
        n += 1
    return n


def is_closing(identifier: int) -> bool:
    return identifier >= CLOSING_ID


def closing_gate(seen: int, bid: dict[str, Any]) -> tuple[int, bool]:
    """For a peer whose event time is the largest it has read (q7's one key): holds the
    closing bids back until the last partition's has come, so the first one does not close
    windows that other partitions' bids still fall in. Returns (closing bids seen, pass?)."""
    if not is_closing(bid["auction"]):
        return seen, True
    return seen + 1, seen + 1 == PARTITIONS


def euro(price: int) -> int:
    """q1's conversion of a price in dollar cents to euro cents."""
    return price * 89 // 100


def q1_euro(bid: dict[str, Any]) -> dict[str, Any]:
    """q1's map (streamline's `map` stage and every peer call this)."""
    return {**bid, "price": euro(bid["price"])}


def bid_row(bid: dict[str, Any]) -> Row:
    return (int(bid["auction"]), int(bid["bidder"]), int(bid["price"]), int(bid["date_time"]))


def q3_row(auction: dict[str, Any], person: dict[str, Any]) -> Row:
    return (
        int(auction["id"]),
        int(auction["seller"]),
        person["name"],
        person["city"],
        person["state"],
    )


def q8_row(auction: dict[str, Any], name: str) -> Row:
    return (int(auction["seller"]), name, int(auction["id"]))


@dataclass
class Event:
    topic: str  # persons | auctions | bids
    partition: int
    key: str
    record: dict[str, Any]


class NexmarkStream:
    """The run's events in produce order, then one closing record per topic and partition."""

    def __init__(self, events: int, base_ms: int, seed: int = 3) -> None:
        if events > MAX_EVENTS:
            raise ValueError(f"at most {MAX_EVENTS:,} events (their event time must span less "
                             f"than {PEER_LATENESS_MS // 60_000} minutes)")  # fmt: skip
        self.events = events
        self.base_ms = base_ms - base_ms % 60_000
        self.seed = seed

    def __iter__(self) -> Iterator[Event]:
        rng = random.Random(self.seed)
        persons = auctions = 0
        t = self.base_ms
        for i in range(self.events):
            slot = i % 100
            if slot < PERSONS_PER_100 or persons == 0:
                pid = persons
                persons += 1
                k = rng.randrange(len(STATES))
                yield self._event(
                    "persons",
                    str(pid),
                    {
                        "id": pid,
                        "name": f"person-{pid}",
                        "email": f"p{pid}@example.com",
                        "city": CITIES[k],
                        "state": STATES[(k + rng.randrange(2)) % len(STATES)],
                        "date_time": t + 1,
                    },
                )
            elif slot < PERSONS_PER_100 + AUCTIONS_PER_100 or auctions == 0:
                recent = rng.random() < 0.5
                seller = (
                    persons - 1 - rng.randrange(min(persons, 5))
                    if recent
                    else rng.randrange(persons)
                )
                aid = auctions
                auctions += 1
                yield self._event(
                    "auctions",
                    str(seller),
                    {
                        "id": aid,
                        "seller": seller,
                        "category": 10 + rng.randrange(5),
                        "initial_bid": rng.randrange(100, 10_000),
                        "expires": t + rng.randrange(10_000, 100_000),
                        "date_time": t,
                    },
                )
            else:
                hot = rng.random() < 0.6
                auction = (
                    auctions - 1 - rng.randrange(min(auctions, 20))
                    if hot
                    else rng.randrange(auctions)
                )
                yield self._event(
                    "bids",
                    str(auction),
                    {
                        "auction": auction,
                        "bidder": rng.randrange(persons),
                        "price": rng.randrange(100, 1_000_000),
                        "date_time": t,
                    },
                )
            t += STEP_MS
        closing = t + CLOSING_AFTER_MS
        for p in range(PARTITIONS):
            pid = closing_id(p, "persons")
            yield self._event(
                "persons",
                str(pid),
                {"id": pid, "name": "closing", "email": "-", "city": "-", "state": "-",
                 "date_time": closing + 1},
            )  # fmt: skip
            seller = pid
            yield self._event(
                "auctions",
                str(seller),
                {"id": closing_id(p, "auctions"), "seller": seller, "category": 0,
                 "initial_bid": 0, "expires": closing, "date_time": closing},
            )  # fmt: skip
            auction = closing_id(p, "bids")
            yield self._event(
                "bids",
                str(auction),
                {"auction": auction, "bidder": 0, "price": 0, "date_time": closing},
            )

    @staticmethod
    def _event(topic: str, key: str, record: dict[str, Any]) -> Event:
        return Event(topic, partition_of(key), key, record)


def _window_starts(t: int, size: int, advance: int) -> range:
    last = t - t % advance
    return range(last - size + advance, last + 1, advance)


@dataclass
class Oracle:
    """Every query's expected rows, computed from the events as they are generated."""

    counts: dict[str, int] = field(default_factory=lambda: defaultdict(int))
    q0: list[Row] = field(default_factory=list)
    q1: list[Row] = field(default_factory=list)
    q2: list[Row] = field(default_factory=list)
    q3: list[Row] = field(default_factory=list)
    q8: list[Row] = field(default_factory=list)
    _persons: dict[int, dict[str, Any]] = field(default_factory=dict)
    _q5: dict[int, dict[int, int]] = field(default_factory=lambda: defaultdict(dict))
    _q7: dict[int, int] = field(default_factory=dict)

    def add(self, event: Event) -> None:
        self.counts[event.topic] += 1
        r = event.record
        if event.topic == "persons":
            if not is_closing(r["id"]):
                self._persons[r["id"]] = r
            return
        if event.topic == "auctions":
            if is_closing(r["id"]):
                return
            person = self._persons[r["seller"]]
            if r["category"] == Q3_CATEGORY and person["state"] in Q3_STATES:
                self.q3.append(q3_row(r, person))
            if 0 <= r["date_time"] - person["date_time"] <= Q8_WITHIN_MS:
                self.q8.append(q8_row(r, person["name"]))
            return
        if is_closing(r["auction"]):
            return
        row = bid_row(r)
        self.q0.append(row)
        self.q1.append(bid_row(q1_euro(r)))
        if r["auction"] % Q2_MODULO == 0:
            self.q2.append(row)
        t = r["date_time"]
        for start in _window_starts(t, Q5_SIZE_MS, Q5_ADVANCE_MS):
            window = self._q5[start]
            window[r["auction"]] = window.get(r["auction"], 0) + 1
        start = t - t % Q7_WINDOW_MS
        self._q7[start] = max(self._q7.get(start, -1), r["price"])

    def rows(self) -> dict[str, list[Row]]:
        q5 = [(start, max(counts.values())) for start, counts in self._q5.items()]
        q7 = [(start, price) for start, price in self._q7.items()]
        return {
            "q0": self.q0,
            "q1": self.q1,
            "q2": self.q2,
            "q3": self.q3,
            "q5": q5,
            "q7": q7,
            "q8": self.q8,
        }
