"""The test driver against the broker: the same input gives the same records as `streamline run`."""

from __future__ import annotations

import math
import time
from itertools import groupby
from pathlib import Path
from typing import Any

import pytest
from confluent_kafka import Message, Producer

from streamline import headers as h
from streamline.kafka.connection import Connection
from streamline.testing import OutputRecord, TopologyDriver
from tests.helpers import read_all
from tests.integration.test_windows import (
    BASE_T,
    OOO_MS,
    REVENUE,
    Scenario,
    assert_windows_exact,
)
from tests.support.harness import SCHEMAS
from tests.support.windows_oracle import Event, events

pytestmark = pytest.mark.slow

GARBAGE = b"\x00not an order"
GARBAGE_HEADERS = [("trace-id", b"t-42")]

SCENARIOS: dict[str, dict[str, Any]] = {
    "tumbling": {"kind": "tumbling"},
    "hopping": {"kind": "hopping"},
    "session": {"kind": "session"},
    "repartition": {"kind": "session", "repartition": True},
    "late": {"kind": "tumbling", "lateness": "10s", "partitions": 1},
}


def scenario_events(name: str) -> list[Event]:
    if name != "late":
        return events(20_000, keys=200, step_ms=20, disorder_ms=OOO_MS - 1000)
    on_time = [Event("k-1", f"o-{i}", 1.0, BASE_T + i * 1000, i) for i in range(200)]
    return [
        *on_time,  # the watermark is now BASE_T + 194 s: the first minute closed at 70 s
        Event("k-1", "late-1", 5.0, BASE_T + 10_000, 200),
        Event("k-2", "late-2", 5.0, BASE_T + 60_000 + 30_000, 201),
    ]


def await_records(kafka: Connection, topic: str, n: int, timeout: float) -> list[Message]:
    deadline = time.monotonic() + timeout
    found: list[Message] = []
    while time.monotonic() < deadline:
        found = read_all(kafka, topic, timeout=5)
        if len(found) >= n:
            return found
        time.sleep(0.5)
    raise AssertionError(f"{len(found)} of {n} records on {topic} after {timeout}s")


def failed_view(key: bytes | None, value: bytes | None, headers: Any) -> tuple[Any, ...]:
    """A dead-letter or late record as written, but for the time it was written."""
    kept = tuple((k, v) for k, v in headers or [] if k != h.FAILED_AT)
    return key, value, kept


def sink_view(value: dict[str, Any], headers: Any, exact: bool) -> tuple[Any, ...]:
    """A window result: its fields, and with `exact` its source offsets and event time."""
    own = dict(headers or [])
    floats = tuple(value[f] for f in ("revenue", "avg_amount"))
    rest = tuple(sorted((k, v) for k, v in value.items() if k not in ("revenue", "avg_amount")))
    if exact:
        return rest, floats, own[h.SOURCE], own[h.EVENT_TIME], own[h.TOPOLOGY]
    return rest, floats


def by_window(views: list[tuple[Any, ...]]) -> dict[tuple[str, int], tuple[Any, ...]]:
    out = {}
    for view in views:
        fields = dict(view[0])
        key = (fields["customer_id"], fields["window_start"])
        assert key not in out, f"window {key} written twice"
        out[key] = view
    return out


def pipe_as_on_the_broker(driver: TopologyDriver, source: str, messages: list[Message]) -> None:
    """The source records, each to the partition and offset the broker gave it."""
    ordered = sorted(messages, key=lambda m: (m.partition(), m.offset()))
    for (partition, headers), run in groupby(
        ordered, key=lambda m: (m.partition(), tuple(m.headers() or []))
    ):
        records = list(run)
        offsets = [m.offset() for m in records]
        assert offsets == list(range(offsets[0] or 0, (offsets[0] or 0) + len(records)))
        driver.pipe(
            source,
            [(m.key(), m.value()) for m in records],
            partition=partition,
            headers=list(headers) or None,
        )


@pytest.mark.parametrize("name", list(SCENARIOS))
def test_driver_and_broker_write_the_same_records(
    kafka: Connection, unique: str, tmp_path: Path, name: str
) -> None:
    scenario = Scenario(kafka, tmp_path, unique, **SCENARIOS[name])
    evts = scenario_events(name)
    scenario.produce(evts)
    producer = Producer(kafka.config())
    producer.produce(scenario.source, GARBAGE, key=b"junk", partition=0, headers=GARBAGE_HEADERS)
    assert producer.flush(30) == 0
    # the late scenario's last two records are too late to count
    expected = scenario.expected(evts[:200] if name == "late" else evts)
    topology = scenario.topology
    n_late = 2 if name == "late" else 0

    proc = scenario.process("a").start()
    try:
        scenario.await_output(expected, 300, [proc])
        dead = await_records(kafka, topology.dead_letter_topic, 1, 120)
        late = await_records(kafka, topology.late_topic, n_late, 120) if n_late else []
    finally:
        assert proc.stop() == 0
    sink = read_all(kafka, scenario.sink)
    assert_windows_exact([REVENUE.decode(m.value()) for m in sink], expected)

    sources = read_all(kafka, scenario.source, expected=len(evts) + 1, timeout=60)
    partitions = len(kafka_partitions(kafka, scenario.source))
    with TopologyDriver(scenario.path, SCHEMAS, partitions=partitions) as driver:
        pipe_as_on_the_broker(driver, scenario.source, sources)
        driver.flush()
        out: list[OutputRecord] = driver.output()
        driver_dead, driver_late = driver.dead_letters(), driver.late()

    assert_windows_exact([r.value for r in out if r.value is not None], expected)
    # without a repartition each window's input offsets are the broker's: headers match too
    exact = not scenario.repartition
    broker_windows = by_window(
        [sink_view(REVENUE.decode(m.value()), m.headers(), exact) for m in sink]
    )
    driver_windows = by_window([sink_view(r.value or {}, r.headers, exact) for r in out])
    assert set(driver_windows) == set(broker_windows)
    for key, have in driver_windows.items():
        want = broker_windows[key]
        assert have[0] == want[0], key
        if exact:  # the same additions in the same order
            assert have == want, key
        else:  # the same records, added in another interleaving of the sources
            assert all(
                math.isclose(a, b, rel_tol=1e-9) for a, b in zip(have[1], want[1], strict=True)
            )

    def views(records: list[Any]) -> list[tuple[Any, ...]]:
        return sorted(failed_view(m.key(), m.value(), m.headers()) for m in records)

    assert [failed_view(r.key, r.raw, r.headers) for r in driver_dead] == views(dead)
    assert dict(driver_dead[0].headers)["trace-id"] == b"t-42"
    assert sorted(failed_view(r.key, r.raw, r.headers) for r in driver_late) == views(late)


def kafka_partitions(kafka: Connection, topic: str) -> list[int]:
    from confluent_kafka.admin import AdminClient

    admin = AdminClient(kafka.config())
    return list(admin.list_topics(topic, timeout=30).topics[topic].partitions)
