"""Sink encoding: records the stages kept as decoded go out as the bytes they came in as."""

from __future__ import annotations

from pathlib import Path
from typing import Any

from streamline import headers as h
from streamline.serde import AvroCodec, SchemaStore
from streamline.serde.codec import MAGIC
from streamline.testing import TopologyDriver
from streamline.topology.builder import Topology
from tests.support.maps import paid_order

ROOT = Path(__file__).resolve().parents[2]
SCHEMAS = ROOT / "schemas"
BASE = 1_764_000_000_000


def orders_topology(name: str) -> Topology:
    return Topology(name, version="1").source(
        name="orders",
        topic="orders",
        schema="com.example.Order",
        event_time="created_at",
        max_out_of_orderness="5s",
    )


def order(n: int, status: str = "PAID") -> dict[str, Any]:
    return {
        "order_id": f"o-{n}",
        "customer_id": f"c-{n % 3}",
        "amount": 10.0 + n,
        "currency": "EUR",
        "status": status,
        "country": "DE",
        "created_at": BASE + n,
    }


def codec() -> AvroCodec:
    store = SchemaStore(SCHEMAS)
    return AvroCodec(store, store.get("com.example.Order"))


def overlong(data: bytes) -> bytes:
    """The same record with its last field (created_at) as a varint one byte longer."""
    return data[:-1] + bytes([data[-1] | 0x80, 0x00])


def test_a_filter_only_topology_writes_each_kept_record_as_its_input_bytes() -> None:
    orders = codec()
    raws = [orders.encode(order(n, "PAID" if n % 2 else "PENDING")) for n in range(6)]
    odd = overlong(raws[3])
    assert odd != raws[3] and orders.decode(odd) == order(3)
    topology = (
        orders_topology("kept")
        .filter("status == 'PAID'")
        .to(topic="paid", schema="com.example.Order")
    )
    with TopologyDriver(topology, SCHEMAS) as driver:
        assert driver.pipeline.encode.unchanged == MAGIC + orders.schema.fingerprint
        driver.pipe("orders", [(b"k", raw) for raw in [*raws[:3], odd, *raws[4:]]])
        out = driver.output()
    assert [r.raw for r in out] == [raws[1], odd, raws[5]]  # byte for byte, as read
    assert [r.value for r in out] == [order(1), order(3), order(5)]
    assert [r.header(h.SOURCE) for r in out] == [b"orders/0/1-1", b"orders/0/3-3", b"orders/0/5-5"]
    assert [r.header(h.EVENT_TIME) for r in out] == [str(BASE + n).encode() for n in (1, 3, 5)]


def test_a_topology_whose_stages_change_values_encodes_them() -> None:
    orders = codec()
    mapped = (
        orders_topology("mapped").map(paid_order).to(topic="paid", schema="com.example.PaidOrder")
    )
    same_schema = orders_topology("same").map(dict).to(topic="paid", schema="com.example.Order")
    for topology in (mapped, same_schema):
        with TopologyDriver(topology, SCHEMAS) as driver:
            assert driver.pipeline.encode.unchanged is None
            odd = overlong(orders.encode(order(3)))
            driver.pipe("orders", [(b"k", odd)])
            (out,) = driver.output()
        assert out.raw != odd
        if topology is same_schema:
            assert out.raw == orders.encode(order(3))  # written again, canonically
