"""The repartition record format: what the window tasks read back, in either format.

A repartition topic may still hold records the previous version wrote (the value as JSON,
the event time and the source's position and bytes in headers) when a user upgrades: the
window stage reads both, and the windows come out the same.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest

from streamline import headers as h
from streamline.runtime.record import Record
from streamline.runtime.repartition_codec import (
    RepartitionEncoder,
    decode_repartitioned,
    origin_headers,
)
from streamline.serde import AvroCodec, SchemaStore
from streamline.testing import TopologyDriver
from streamline.topology import load_topology
from tests.support.windows_oracle import BASE, Event, events, order, windows

ROOT = Path(__file__).resolve().parents[2]
SCHEMAS = ROOT / "schemas"
REVENUE = ROOT / "topologies" / "revenue-per-minute.yaml"
ORDER = AvroCodec(SchemaStore(SCHEMAS), SchemaStore(SCHEMAS).get("com.example.Order"))
OOO_MS = 5000
LATENESS_MS = 10_000


def keyed(value: dict[str, Any], out_key: bytes | None, **where: Any) -> Record:
    """A record as the stateless stages leave it: decoded, event time set, keyed."""
    record = Record(
        where.get("topic", "orders"),
        where.get("partition", 2),
        where.get("offset", 41),
        where.get("key", b"src-key"),
        where.get("raw", b"\x00original"),
        None,
    )
    record.value = value
    record.event_time = where.get("event_time", 1_700_000_000_123)
    record.out_key = out_key
    return record


def as_read(value: bytes, headers: Any, out_key: bytes | None, offset: int = 7) -> Record:
    """The repartition record as the window task's consumer hands it over."""
    return Record("rev.repartition", 0, offset, out_key, value, headers)


def test_a_record_round_trips_with_its_source_position_and_bytes() -> None:
    value = {"customer_id": "c-1", "amount": 12.5, "blob": b"\x00\xff", "nested": {1: [1, 2]}}
    value_bytes, headers = RepartitionEncoder("customer").encode(keyed(value, b"c-1"))
    assert headers is None  # no headers: everything is in the value
    record = as_read(value_bytes, headers, b"c-1")
    decoded, event_time, key, fields = decode_repartitioned(record, "customer")
    assert decoded == {**value, "customer": "c-1"}
    assert event_time == 1_700_000_000_123
    assert key == "c-1"
    assert fields is not None
    record.headers = origin_headers(fields)
    assert record.origin() == ("orders", 2, 41)
    assert record.original() == (b"src-key", b"\x00original")


def test_a_record_without_keys_or_original_bytes() -> None:
    value_bytes, _ = RepartitionEncoder("k").encode(keyed({"a": None}, None, key=None, raw=None))
    record = as_read(value_bytes, None, None)
    decoded, _, key, fields = decode_repartitioned(record, "k")
    assert (decoded, key) == ({"a": None, "k": None}, None)
    assert fields is not None
    record.headers = origin_headers(fields)
    assert record.original() == (None, b"")


def test_a_value_msgpack_cannot_carry_is_written_in_the_json_format() -> None:
    value = {"big": 1 << 70, "n": 1}
    value_bytes, headers = RepartitionEncoder("k").encode(keyed(value, b"x"))
    assert value_bytes.startswith(b"{") and headers is not None
    record = as_read(value_bytes, headers, b"x")
    decoded, event_time, key, fields = decode_repartitioned(record, "k")
    assert (decoded, event_time, key, fields) == ({**value, "k": "x"}, 1_700_000_000_123, "x", None)
    assert record.origin() == ("orders", 2, 41)
    assert record.original() == (b"src-key", b"\x00original")


def test_the_previous_versions_json_records_are_read() -> None:
    """Written as the previous version did, byte for byte (not with this version's encoder)."""
    headers = [
        (h.EVENT_TIME, b"1700000000999"),
        (h.ORIGINAL, b"\x00orig"),
        (h.SOURCE_TOPIC, b"orders"),
        (h.SOURCE_PARTITION, b"1"),
        (h.SOURCE_OFFSET, b"9"),
        (h.SOURCE_KEY, b"sk"),
    ]
    record = as_read(b'{"amount":3.25,"customer":"c-9"}', headers, b"c-9")
    assert decode_repartitioned(record, "customer") == (
        {"amount": 3.25, "customer": "c-9"},
        1_700_000_000_999,
        "c-9",
        None,
    )
    assert record.origin() == ("orders", 1, 9)
    assert record.original() == (b"sk", b"\x00orig")


@pytest.mark.parametrize("value", [b"\x05junk", b"\x93\x02\x01\x02", b"[1]", b""])
def test_an_unknown_format_is_refused(value: bytes) -> None:
    with pytest.raises(ValueError):
        decode_repartitioned(as_read(value, None, b"k"), "k")


def previous_format(e: Event, offset: int) -> tuple[bytes, list[tuple[str, bytes]]]:
    """An order's repartition record as the previous version wrote it: JSON and headers."""
    value = json.dumps(order(e), separators=(",", ":")).encode()
    return value, [
        (h.EVENT_TIME, str(e.t).encode()),
        (h.ORIGINAL, ORDER.encode(order(e))),
        (h.SOURCE_TOPIC, b"orders"),
        (h.SOURCE_PARTITION, b"0"),
        (h.SOURCE_OFFSET, str(offset).encode()),
        (h.SOURCE_KEY, e.key.encode()),
    ]


def test_windows_over_records_of_both_formats_equal_the_oracle() -> None:
    """An upgrade: the repartition topic holds the previous version's records, then new ones."""
    evts = events(3000, keys=20, step_ms=200, disorder_ms=OOO_MS - 1000)
    old, new = evts[:1200], evts[1200:]
    with TopologyDriver(REVENUE, partitions=3) as driver:
        topic = driver.topology.repartition_topic
        for i, e in enumerate(old):
            value, headers = previous_format(e, i)
            driver.topics.extend(topic, [(e.key.encode(), value)], headers)
        driver.pipe("orders", [order(e) for e in new], key=lambda v: v["customer_id"])
        driver.flush()
        values = [r.value for r in driver.output()]
        assert driver.late() == [] and driver.dead_letters() == []
    got = {(v["customer_id"], v["window_start"]): v for v in values}
    assert len(got) == len(values)  # one result per window
    expected = windows(evts, "tumbling", 60_000, 0, 0, LATENESS_MS, max(e.t for e in evts) - OOO_MS)
    assert set(got) == set(expected)
    for window, want in expected.items():
        have = got[window]
        for field in ("order_count", "first_order", "last_order", "max_amount", "min_amount"):
            assert have[field] == want[field], (window, field)
        assert have["revenue"] == pytest.approx(want["revenue"])


@pytest.mark.parametrize("previous", [False, True], ids=["msgpack", "json"])
def test_a_late_repartitioned_record_names_its_source_record(previous: bool) -> None:
    on_time = [Event("k-1", f"o-{i}", 1.0, BASE + i * 1000, i) for i in range(200)]
    too_late = Event("k-1", "late-1", 5.0, BASE + 10_000, 200)
    with TopologyDriver(REVENUE) as driver:
        driver.pipe("orders", [order(e) for e in on_time], key=b"k-1")
        driver.flush()
        if previous:
            value, headers = previous_format(too_late, 200)
            driver.topics.extend(driver.topology.repartition_topic, [(b"k-1", value)], headers)
            driver.flush()
        else:
            driver.pipe("orders", order(too_late), key=b"src-key")
        (late,) = driver.late()
    assert late.value == order(too_late)
    assert late.header(h.ERROR_TYPE) == b"late"
    assert late.header(h.SOURCE_TOPIC) == b"orders"
    assert late.header(h.SOURCE_PARTITION) == b"0"
    assert late.header(h.SOURCE_OFFSET) == b"200"
    assert late.key == (b"k-1" if previous else b"src-key")


def test_a_record_carries_only_the_fields_the_window_reads() -> None:
    encoder = RepartitionEncoder.of(load_topology(REVENUE))
    value = {**order(Event("c-1", "o-1", 2.5, BASE, 0)), "note": "x" * 100}
    value_bytes, _ = encoder.encode(keyed(value, b"c-1"))
    decoded, _, _, _ = decode_repartitioned(as_read(value_bytes, None, b"c-1"), "customer_id")
    # revenue-per-minute aggregates amount and order_id (count() reads none)
    assert decoded == {"amount": 2.5, "order_id": "o-1", "customer_id": "c-1"}
    missing, _ = encoder.encode(keyed({"amount": 1.0}, b"c-2"))
    decoded, _, _, _ = decode_repartitioned(as_read(missing, None, b"c-2"), "customer_id")
    assert decoded == {"amount": 1.0, "customer_id": "c-2"}  # still missing: a dead letter
