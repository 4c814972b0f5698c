"""Freshness moves with every consumed record; the two freshness gauges; marker-only lineage.

A partition whose records are all filtered out (or dead-lettered by a rule) is read up to
its end: its lag is 0 and its watermark must keep up, or it would drift to `breached`.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest

from streamline.observability.heartbeats import partition_freshness
from streamline.testing import TopologyDriver

ROOT = Path(__file__).resolve().parents[2]
SCHEMAS = ROOT / "schemas"
T0 = 1_767_225_600_000


def order(i: int, **changes: Any) -> dict[str, Any]:
    return {
        "order_id": f"o-{i}", "customer_id": f"c-{i % 3}", "amount": 10.0, "currency": "EUR",
        "status": "PAID", "country": "DE", "created_at": T0 + i * 1000, **changes,
    }  # fmt: skip


@pytest.mark.parametrize(
    "topology", ["paid-orders.yaml", "revenue-per-minute.yaml"], ids=["stateless", "windowed"]
)
def test_a_partition_whose_records_are_all_filtered_stays_fresh(topology: str) -> None:
    with TopologyDriver(ROOT / "topologies" / topology, SCHEMAS) as driver:
        driver.pipe("orders", [order(i, status="PENDING") for i in range(5)])
        assert driver.output() == []
        tp = (driver.topology.source.topic, 0)
        fresh = driver.source_watermarks.freshness(tp)
        assert fresh is not None
        watermark, last_event = fresh
        assert last_event == T0 + 4000
        ooo = driver.topology.source.watermark.max_out_of_orderness
        assert watermark == T0 + 4000 - ooo
        # what the heartbeat says one second after the last event: ok, lag 0
        state = partition_freshness(
            tp[0], 0, watermark, last_event, 5, 5, T0 + 5000, 60_000, 180_000
        )
        assert (state.status, state.lag) == ("ok", 0)


def test_dead_lettered_records_move_freshness_and_undecodable_ones_do_not() -> None:
    with TopologyDriver(ROOT / "topologies" / "revenue-per-minute.yaml", SCHEMAS) as driver:
        driver.pipe("orders", [order(1, amount=-1.0), order(2, currency="GBP")])
        driver.pipe("orders", b"not avro")
        assert len(driver.dead_letters()) == 3
        fresh = driver.source_watermarks.freshness((driver.topology.source.topic, 0))
        assert fresh is not None and fresh[1] == T0 + 2000


def test_the_stages_watermark_is_unchanged_by_dropped_records() -> None:
    """Windows and repartition markers still see only the records that pass the stages."""
    with TopologyDriver(ROOT / "topologies" / "revenue-per-minute.yaml", SCHEMAS) as driver:
        driver.pipe("orders", [order(1), order(9, status="PENDING")])
        tp = (driver.topology.source.topic, 0)
        assert driver.source_watermarks.trackers[tp].max_event_time_ms == T0 + 1000
        assert driver.source_watermarks.freshness(tp) == (T0 + 9000 - 5000, T0 + 9000)


def test_watermark_lag_and_staleness_are_two_numbers() -> None:
    """watermark_lag_seconds: wall - watermark (the SLA's staleness); staleness_seconds:
    wall - newest event time. They differ by the out-of-orderness allowance."""
    from streamline.observability import Metrics
    from streamline.runtime.health import export_freshness

    metrics = Metrics("t")
    wall = T0 + 10_000
    state = partition_freshness("in", 0, T0 - 5000, T0, 7, 9, wall, 60_000, 180_000)
    export_freshness(metrics, state, wall)
    labels = {"topic": "in", "partition": 0}
    assert metrics.value("watermark_lag_seconds", **labels) == 15.0
    assert metrics.value("watermark_lag_seconds", **labels) == state.staleness_ms / 1000
    assert metrics.value("staleness_seconds", **labels) == 10.0
    assert metrics.value("watermark_ms", **labels) == T0 - 5000
    assert metrics.value("sla_status", status="ok", **labels) == 1.0


def test_a_transaction_of_only_watermark_markers_writes_no_lineage_event() -> None:
    path = ROOT / "topologies" / "revenue-per-minute.yaml"
    with TopologyDriver(path, SCHEMAS, partitions=2, wall_clock_ms=T0) as driver:
        assert driver.pipeline.repartition
        repartition = driver.pipeline.window_input_topic
        driver.pipe("orders", [order(i) for i in range(4)])
        events, markers = len(driver.lineage()), len(driver.topics.visible(repartition))
        driver.advance_wall_clock(20_000)  # idle: markers change, no record comes in
        new_markers = driver.topics.visible(repartition)[markers:]
        assert len(new_markers) == 4  # one source partition x repartition partition each
        written = [
            e
            for e in driver.lineage()[events:]
            if any(o["name"] == repartition for o in e["outputs"])
        ]
        assert written == []  # the transaction that wrote them has no event
        readers = driver.lineage()[events:]  # the window task's, reading the markers, has one
        assert [i["name"] for e in readers for i in e["inputs"]] == [repartition]


def test_describes_data_is_inputs_or_outputs() -> None:
    from streamline.runtime.transaction import Transaction

    assert not Transaction().describes_data
    assert Transaction(outputs=1).describes_data
    assert Transaction(inputs={("t", 0): [1, 2]}).describes_data
