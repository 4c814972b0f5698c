"""The Nexmark-style suite's pure parts: the generator, the oracle, the results page."""

from __future__ import annotations

import hashlib
from pathlib import Path

from bench.nexmark import (
    CLOSING_ID,
    PARTITIONS,
    Q5_ADVANCE_MS,
    Q7_WINDOW_MS,
    Event,
    NexmarkStream,
    Oracle,
    closing_gate,
    partition_of,
)
from bench.report import Cell
from bench.results_page import render_page, round_two_targets, spread

from streamline.serde import AvroCodec, SchemaStore

BENCH_SCHEMAS = Path(__file__).resolve().parents[2] / "bench" / "schemas"
SCHEMAS = {
    "persons": "com.example.nexmark.Person",
    "auctions": "com.example.nexmark.Auction",
    "bids": "com.example.nexmark.Bid",
}
BASE = 1_700_000_040_000  # a whole minute


def _bytes(events: int) -> str:
    store = SchemaStore(BENCH_SCHEMAS)
    codecs = {k: AvroCodec(store, store.get(v)) for k, v in SCHEMAS.items()}
    digest = hashlib.sha256()
    for e in NexmarkStream(events, BASE):
        digest.update(f"{e.topic}/{e.partition}/{e.key}".encode())
        digest.update(codecs[e.topic].encode(e.record, check=False))
    return digest.hexdigest()


def test_the_same_seed_gives_the_same_bytes() -> None:
    assert _bytes(2_000) == _bytes(2_000)
    assert _bytes(2_000) != _bytes(2_001)


def test_keys_land_in_their_partition_and_time_only_grows_within_one() -> None:
    last: dict[tuple[str, int], int] = {}
    for e in NexmarkStream(3_000, BASE):
        assert e.partition == partition_of(e.key)
        at = (e.topic, e.partition)
        assert e.record["date_time"] > last.get(at, 0)
        last[at] = e.record["date_time"]
    closing = [
        e
        for e in NexmarkStream(100, BASE)
        if e.record.get("id", e.record.get("auction", 0)) >= CLOSING_ID
    ]
    assert len(closing) == 3 * PARTITIONS  # one per topic and partition


def test_every_seller_and_auction_exists_before_it_is_used() -> None:
    persons: set[int] = set()
    auctions: set[int] = set()
    for e in NexmarkStream(5_000, BASE):
        if e.topic == "persons":
            persons.add(e.record["id"])
        elif e.topic == "auctions" and e.record["id"] < CLOSING_ID:
            assert e.record["seller"] in persons
            auctions.add(e.record["id"])
        elif e.topic == "bids" and e.record["auction"] < CLOSING_ID:
            assert e.record["auction"] in auctions


def _person(pid: int, t: int, state: str = "OR") -> Event:
    record = {
        "id": pid,
        "name": f"p{pid}",
        "email": "-",
        "city": "c",
        "state": state,
        "date_time": t,
    }
    return Event("persons", partition_of(str(pid)), str(pid), record)


def _auction(aid: int, seller: int, t: int, category: int = 10) -> Event:
    record = {
        "id": aid,
        "seller": seller,
        "category": category,
        "initial_bid": 1,
        "expires": t,
        "date_time": t,
    }
    return Event("auctions", partition_of(str(seller)), str(seller), record)


def _bid(auction: int, price: int, t: int) -> Event:
    record = {"auction": auction, "bidder": 0, "price": price, "date_time": t}
    return Event("bids", partition_of(str(auction)), str(auction), record)


def test_oracle_of_each_query_on_a_handful_of_events() -> None:
    oracle = Oracle()
    events = [
        _person(1, BASE + 1, "OR"),
        _person(2, BASE + 3, "NY"),
        _auction(0, 1, BASE + 4),  # q3 (OR, category 10) and q8 (3 ms after its seller)
        _auction(1, 2, BASE + 6),  # NY: not q3; q8
        _auction(2, 1, BASE + 20_002, category=11),  # 20 s after its seller: not q8
        _bid(5, 500, BASE + 10),
        _bid(123, 700, BASE + 12),  # q2
        _bid(5, 900, BASE + Q7_WINDOW_MS + 2),  # the next tumbling window
        _bid(5, 100, BASE + 14),
        _bid(CLOSING_ID + 2000, 0, BASE + 3_600_000),  # closing: in no result
    ]
    for e in events:
        oracle.add(e)
    rows = oracle.rows()
    assert rows["q0"] == [
        (5, 0, 500, BASE + 10),
        (123, 0, 700, BASE + 12),
        (5, 0, 900, BASE + 10_002),
        (5, 0, 100, BASE + 14),
    ]
    assert rows["q1"][0] == (5, 0, 445, BASE + 10)  # 500 * 89 // 100
    assert rows["q2"] == [(123, 0, 700, BASE + 12)]
    assert rows["q3"] == [(0, 1, "p1", "c", "OR")]
    assert rows["q8"] == [(1, "p1", 0), (2, "p2", 1)]
    assert sorted(rows["q7"]) == [(BASE, 700), (BASE + Q7_WINDOW_MS, 900)]
    q5 = dict(rows["q5"])
    # auction 5 twice in each of the 5 windows holding BASE+10 and BASE+14, once in the
    # 5 later windows that hold BASE+10 s
    assert q5 == {BASE + k * Q5_ADVANCE_MS: 2 if k <= 0 else 1 for k in range(-4, 6)}


def test_closing_gate_lets_only_the_last_partitions_closing_bid_through() -> None:
    seen, passed = 0, []
    for p in range(PARTITIONS):
        seen, ok = closing_gate(seen, {"auction": CLOSING_ID + 2000 + p})
        passed.append(ok)
    assert passed == [False] * (PARTITIONS - 1) + [True]
    assert closing_gate(3, {"auction": 5}) == (3, True)


def _cells() -> list[Cell]:
    return [
        Cell("bare", "W0-tx", events_per_s=100_000.0, cpu_s_per_m=4.0, p50_ms=80.0, p99_ms=160.0),
        Cell(
            "streamline", "W1", events_per_s=70_000.0, cpu_s_per_m=14.0, p50_ms=90.0, p99_ms=175.0
        ),
        Cell("quix", "W1", events_per_s=40_000.0, cpu_s_per_m=20.0, p50_ms=85.0, p99_ms=200.0),
        Cell("streamline", "q7", events_per_s=50_000.0, cpu_s_per_m=20.0),
        Cell("quix", "q7", events_per_s=10_000.0, cpu_s_per_m=60.0),
        Cell("bytewax", "q7", events_per_s=30_000.0, cpu_s_per_m=15.0),
        Cell("streamline", "q3", events_per_s=1.0, extra={"too_short": True}),
        Cell("quix", "q3", events_per_s=5_000.0),
        Cell("streamline", "q5", status="n/a", note="the window is the last stage"),
    ]


def test_second_round_targets() -> None:
    verdicts = {t.name: (t.value.split(" ")[0], t.met) for t in round_two_targets(_cells())}
    assert verdicts["W1 CPU s/M / transactional loop's"] == ("3.50x", False)
    assert verdicts["W1 events/s / transactional loop's"] == ("70%", False)
    # against the fastest peer that has the query (Bytewax, not Quix Streams)
    assert verdicts["q7 streamline / fastest peer (Bytewax (at-least-once))"] == ("1.67x", False)
    assert verdicts["W1 p99 latency vs transactional loop's + 20 ms"][1] is True  # 175 <= 180
    assert verdicts["W1 p50 latency / Quix Streams's"][1] is False  # 90 > 85
    assert verdicts["W1 p99 latency / Quix Streams's"][1] is True
    assert verdicts["q7 CPU s/M / lowest peer's (Bytewax (at-least-once))"][1] is False
    assert verdicts["W1 CPU s/M / lowest peer's (Quix Streams)"][1] is True
    assert not any(name.startswith("q3") for name in verdicts)  # too short to judge


def test_spread_compares_the_ratios_both_runs_measured() -> None:
    rows = spread({"a": "2.00x (x)", "b": "70%", "c": "not measured"}, {"a": "2.20x", "b": "70%"})
    assert [(n, round(s, 3)) for n, _a, _b, s in rows] == [("a", 0.095), ("b", 0.0)]


def test_results_page_has_every_section() -> None:
    cells = _cells()
    classic = {"machine": {"cpu_model": "test cpu", "cores": 2}, "settings": {"events": 10},
               "cells": [c.as_dict() for c in cells if c.workload.startswith("W")]}  # fmt: skip
    nexmark = {"settings": {"events": 20, "records": {"bids": 16}},
               "cells": [c.as_dict() for c in cells if c.workload.startswith("q")]}  # fmt: skip
    failover = [{"label": "after", "keys": 10, "rate": 5.0,
                 "scenarios": [{"scenario": "a", "what": "SIGKILL b", "output_pause_s": 3.5}]}]  # fmt: skip
    history = [{"date": "d1", "load": "1", "ratios": {"x": "2.00x"}},
               {"date": "d2", "load": "9", "ratios": {"x": "2.50x"}}]  # fmt: skip
    page = render_page(classic, nexmark, failover, {"events": 5, "events_per_s": 26199}, history)
    assert "test cpu, 2 cores" in page
    assert "| Bytewax (at-least-once) | q7 highest bid (tumbling max) | 30,000 |" in page
    assert "| streamline | q5 hot items (hopping, then max) | - |" in page
    assert "the window is the last stage" in page
    assert "| (a) SIGKILL b | after, ?, 10 keys at 5/s | 3.50 |" in page
    assert "| q5 streamline / fastest peer | n/a: the window is the last stage | ≥ 2x | - |" in page
    assert "26,199 events/s" in page
    assert "| x | 1, 2 | 2.00 | 2.50 | 22% | **outside** |" in page
    assert "## Targets, second round" in page
