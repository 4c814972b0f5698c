"""The test driver: a topology's outputs, failures and commits in process, without a broker."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest

from streamline import headers as h
from streamline.serde import EncodeError
from streamline.testing import TopologyDriver
from streamline.topology.builder import Topology
from tests.support.maps import paid_order
from tests.support.windows_oracle import BASE, Event, events, order, windows

ROOT = Path(__file__).resolve().parents[2]
SCHEMAS = ROOT / "schemas"
REVENUE = ROOT / "topologies" / "revenue-per-minute.yaml"
OOO_MS = 5000


def by_customer(value: Any) -> str | None:
    return value["customer_id"] if isinstance(value, dict) else None


def window_values(driver: TopologyDriver) -> dict[tuple[str, int], dict[str, Any]]:
    values = [r.value for r in driver.output()]
    got = {(v["customer_id"], v["window_start"]): v for v in values if v is not None}
    assert len(got) == len(values)  # one result per window: no duplicates
    return got


def mapping_topology(calls: list[str], name: str = "mapped", lineage: bool = False) -> Any:
    def counted(value: dict[str, Any]) -> dict[str, Any]:
        calls.append(value["order_id"])
        return paid_order(value)

    return (
        Topology(name, version="1", lineage=lineage)
        .source(
            name="orders",
            topic="orders",
            schema="com.example.Order",
            event_time="created_at",
            max_out_of_orderness="5s",
        )
        .map(counted)
        .to(topic="paid", schema="com.example.PaidOrder")
    )


def test_windowed_topology_gives_the_oracles_windows_after_flush() -> None:
    evts = events(3000, keys=20, step_ms=200, disorder_ms=OOO_MS - 1000)
    with TopologyDriver(REVENUE) as driver:
        driver.pipe("orders", [order(e) for e in evts], key=by_customer)
        driver.flush()
        got = window_values(driver)
    # the watermark is the highest event time less the out-of-orderness
    expected = windows(evts, "tumbling", 60_000, 0, 0, 10_000, max(e.t for e in evts) - OOO_MS)
    assert set(got) == set(expected)
    for key, want in expected.items():
        have = got[key]
        assert have["order_count"] == want["order_count"]
        assert have["first_order"] == want["first_order"]
        assert have["last_order"] == want["last_order"]
        assert have["revenue"] == pytest.approx(want["revenue"])


def test_outputs_carry_the_runtime_headers() -> None:
    calls: list[str] = []
    e = Event("c-1", "o-1", 10.0, BASE, 0)
    with TopologyDriver(mapping_topology(calls), SCHEMAS) as driver:
        driver.pipe("orders", [order(e, currency="USD")], key="c-1")
        (out,) = driver.output()
    assert out.value == paid_order(order(e, currency="USD"))
    assert out.key == b"c-1"
    assert out.header(h.SOURCE) == b"orders/0/0-0"
    assert out.header(h.EVENT_TIME) == str(BASE).encode()
    assert out.header(h.TOPOLOGY) is not None and out.header(h.TOPOLOGY).startswith(b"mapped@1#")


def test_garbage_bytes_become_a_dead_letter_with_the_failure_headers() -> None:
    with TopologyDriver(REVENUE) as driver:
        driver.pipe("orders", b"\x00garbage", key=b"k", headers=[("trace", b"t-1")])
        (dead,) = driver.dead_letters()
        assert driver.output() == []
    assert dead.raw == b"\x00garbage"
    assert dead.value is None
    assert dead.key == b"k"
    headers = dict(dead.headers)
    assert headers["trace"] == b"t-1"
    assert headers[h.ERROR_TYPE] == b"decode"
    assert headers[h.ERROR_STAGE] == b"decode"
    assert headers[h.SOURCE_TOPIC] == b"orders"
    assert headers[h.SOURCE_PARTITION] == b"0"
    assert headers[h.SOURCE_OFFSET] == b"0"
    assert headers[h.ATTEMPTS] == b"1"


def test_a_broken_rule_is_a_dead_letter_naming_the_rule() -> None:
    e = Event("c-1", "o-1", -3.0, BASE, 0)
    with TopologyDriver(REVENUE) as driver:
        driver.pipe("orders", order(e))
        (dead,) = driver.dead_letters()
    assert dead.value == order(e)
    assert dead.header(h.ERROR_TYPE) == b"validation"
    assert dead.header(h.ERROR_RULE) == b"amount_positive"


def test_a_record_too_late_goes_to_late_with_the_watermark_it_missed() -> None:
    on_time = [Event("k-1", f"o-{i}", 1.0, BASE + i * 1000, i) for i in range(200)]
    too_late = Event("k-1", "late-1", 5.0, BASE + 10_000, 200)
    with TopologyDriver(REVENUE) as driver:
        driver.pipe("orders", [order(e) for e in on_time], key=by_customer)
        driver.flush()
        driver.pipe("orders", order(too_late), key=b"k-1")
        (late,) = driver.late()
        first_minute = [r.value for r in driver.output() if r.value["window_start"] == BASE]
    assert late.value == order(too_late)
    assert late.header(h.ERROR_TYPE) == b"late"
    assert late.header(h.WATERMARK) == str(BASE + 199_000 - OOO_MS).encode()
    assert [v["order_count"] for v in first_minute] == [60]


def test_a_map_failure_is_retried_on_the_clock_then_dead_lettered() -> None:
    failures: list[str] = []

    def fails(value: dict[str, Any]) -> dict[str, Any]:
        failures.append(value["order_id"])
        raise RuntimeError("no rate")

    topology = (
        Topology("failing", version="1", retry={"attempts": 2, "topic_attempts": 1})
        .source(
            name="orders",
            topic="orders",
            schema="com.example.Order",
            event_time="created_at",
            max_out_of_orderness="5s",
        )
        .map(fails)
        .to(topic="paid", schema="com.example.PaidOrder")
    )
    with TopologyDriver(topology, SCHEMAS) as driver:
        driver.pipe("orders", order(Event("c", "o-1", 1.0, BASE, 0)))
        (retry,) = driver.retries()
        assert driver.dead_letters() == []
        assert retry.header(h.RETRY_TOPIC_ATTEMPTS) == b"1"
        driver.advance_wall_clock(60_000)  # past the backoff: the retry record is read again
        (dead,) = driver.dead_letters()
    assert failures == ["o-1"] * 4  # two in-process attempts, twice
    assert dead.header(h.ERROR_TYPE) == b"map"
    assert dead.header(h.ATTEMPTS) == b"4"
    assert dead.header(h.SOURCE_TOPIC) == b"orders"


def test_an_order_that_does_not_fit_the_source_schema_is_refused_naming_the_field() -> None:
    with TopologyDriver(REVENUE) as driver, pytest.raises(EncodeError, match="amount"):
        driver.pipe("orders", order(Event("c", "o", 1.0, BASE, 0), amount="lots"))


def test_crash_reprocesses_uncommitted_input_and_a_map_sees_those_records_twice() -> None:
    evts = [Event("c-1", f"o-{i}", 1.0, BASE + i, i) for i in range(5)]
    calls: list[str] = []
    with TopologyDriver(mapping_topology(calls), SCHEMAS, auto_commit=False) as driver:
        driver.pipe("orders", [order(e) for e in evts[:3]])
        driver.commit()
        driver.pipe("orders", [order(e) for e in evts[3:]])
        assert len(driver.output()) == 3  # the open transaction's outputs are not visible
        driver.crash()
        driver.commit()
        crashed = [(r.value, r.header(h.SOURCE)) for r in driver.output()]
    assert calls == ["o-0", "o-1", "o-2", "o-3", "o-4", "o-3", "o-4"]
    plain: list[str] = []
    with TopologyDriver(mapping_topology(plain), SCHEMAS) as driver:
        driver.pipe("orders", [order(e) for e in evts])
        assert crashed == [(r.value, r.header(h.SOURCE)) for r in driver.output()]


@pytest.mark.parametrize("lose_local_state", [False, True], ids=["checkpoint", "changelog"])
@pytest.mark.parametrize("partitioned", [False, True], ids=["repartitioned", "partitioned"])
def test_crash_between_commits_gives_the_windows_of_a_run_without_one(
    tmp_path: Path, partitioned: bool, lose_local_state: bool
) -> None:
    text = REVENUE.read_text()
    if partitioned:
        text = text.replace(
            "event_time: created_at\n", "event_time: created_at\n    partitioned_by: customer_id\n"
        )
    (tmp_path / "topologies").mkdir()
    path = tmp_path / "topologies" / "revenue.yaml"
    path.write_text(text)
    evts = events(4000, keys=30, step_ms=200, disorder_ms=OOO_MS - 1000)
    first, second = [order(e) for e in evts[:2500]], [order(e) for e in evts[2500:]]

    def run(crash: bool) -> dict[tuple[str, int], dict[str, Any]]:
        with TopologyDriver(path, SCHEMAS, partitions=3, auto_commit=False) as driver:
            driver.pipe("orders", first, key=by_customer)
            driver.commit()
            driver.pipe("orders", second, key=by_customer)
            if crash:
                driver.crash(lose_local_state=lose_local_state)
            driver.commit()
            driver.flush()
            driver.commit()
            return window_values(driver)

    assert run(crash=True) == run(crash=False)


def test_the_same_input_gives_the_same_records() -> None:
    evts = events(2000, keys=10, step_ms=300, disorder_ms=OOO_MS - 1000)

    def run() -> list[tuple[Any, ...]]:
        with TopologyDriver(REVENUE, partitions=2) as driver:
            driver.pipe("orders", [order(e) for e in evts], key=by_customer)
            driver.flush()
            return [(r.partition, r.offset, r.key, r.raw, r.headers) for r in driver.output()]

    assert run() == run()


def test_an_unknown_source_is_named() -> None:
    with TopologyDriver(REVENUE) as driver, pytest.raises(ValueError, match="sources: orders"):
        driver.pipe("payments", b"")


def test_each_commit_writes_a_lineage_event_with_its_offset_ranges() -> None:
    calls: list[str] = []
    topology = mapping_topology(calls, lineage=True)
    evts = [Event("c-1", f"o-{i}", 1.0, BASE + i, i) for i in range(5)]
    with TopologyDriver(topology, SCHEMAS) as driver:
        driver.pipe("orders", [order(e) for e in evts[:3]])
        driver.pipe("orders", [order(e) for e in evts[3:]])
        events_ = driver.lineage()

    def ranges(datasets: list[dict[str, Any]]) -> list[tuple[str, int, int, int]]:
        return [
            (d["name"], p["partition"], p["first"], p["last"])
            for d in datasets
            for p in next(iter(d["facets"].values()))["partitions"]
        ]

    assert [ranges(e["inputs"]) for e in events_] == [[("orders", 0, 0, 2)], [("orders", 0, 3, 4)]]
    assert [ranges(e["outputs"]) for e in events_] == [[("paid", 0, 0, 2)], [("paid", 0, 3, 4)]]
    assert {e["job"]["name"] for e in events_} == {"mapped"}
