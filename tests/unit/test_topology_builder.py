"""The Python builder produces the same model as the YAML file of the same topology."""

from pathlib import Path
from typing import Any

import pytest

from streamline.topology import TopologyError, load_topology
from streamline.topology.builder import Topology
from streamline.topology.model import MapStage

PROJECT = Path(__file__).resolve().parents[2]
TOPOLOGIES = PROJECT / "topologies"


def orders_source(builder: Topology, **watermark: str) -> Topology:
    return builder.source(
        name="orders",
        topic="orders",
        schema="com.example.Order",
        event_time="created_at",
        max_out_of_orderness="5s",
        **watermark,
    )


def test_revenue_per_minute_built_in_python_equals_the_yaml() -> None:
    topology = (
        orders_source(
            Topology(
                "revenue-per-minute",
                version="3",
                guarantee="exactly_once",
                commit_interval="100ms",
                retry={
                    "attempts": 3,
                    "backoff": {"initial": "100ms", "multiplier": 2.0, "max": "5s", "jitter": True},
                    "topic_attempts": 2,
                },
                dead_letter_topic="revenue-per-minute.dlq",
                late_topic="revenue-per-minute.late",
                freshness={
                    "max_staleness": "2m",
                    "breach_after": "10m",
                    "heartbeat_interval": "5s",
                },
                lineage=True,
            ),
            idle_timeout="5s",
        )
        .validate(
            rules={
                "amount_positive": "amount > 0.0",
                "known_currency": "currency in ['EUR', 'USD']",
            },
            on_failure="dead_letter",
        )
        .filter("status == 'PAID'")
        .key_by("customer_id")
        .window(
            tumbling="1m",
            allowed_lateness="10s",
            aggregate={
                "order_count": "count()",
                "revenue": "sum(amount)",
                "max_amount": "max(amount)",
                "min_amount": "min(amount)",
                "avg_amount": "avg(amount)",
                "first_order": "first(order_id)",
                "last_order": "last(order_id)",
            },
            emit="final",
        )
        .to(topic="revenue-per-minute", schema="com.example.CustomerRevenue")
    )
    loaded = load_topology(TOPOLOGIES / "revenue-per-minute.yaml")
    assert topology == loaded
    assert topology.fingerprint == loaded.fingerprint


def test_paid_orders_built_in_python_equals_the_yaml() -> None:
    topology = (
        orders_source(Topology("paid-orders", version="1"))
        .validate(
            rules=[
                {"name": "amount_positive", "expr": "amount > 0.0"},
                {"name": "known_currency", "expr": "currency in ['EUR', 'USD']"},
            ]
        )
        .filter("status == 'PAID'")
        .map("examples.orders:to_eur")
        .to(topic="paid-orders", schema="com.example.PaidOrder")
    )
    assert topology == load_topology(TOPOLOGIES / "paid-orders.yaml")


def test_hopping_and_session_windows_and_computed_keys() -> None:
    hopping = (
        Topology("sensor-averages", version="1")
        .source(
            name="readings",
            topic="sensor-readings",
            schema="com.example.sensors.Reading",
            event_time="measured_at",
            max_out_of_orderness="30s",
        )
        .filter("temperature > -50.0 && temperature < 150.0")
        .key_by("sensor_id")
        .window(
            hopping={"size": "5m", "advance": "1m"},
            allowed_lateness="1m",
            aggregate={
                "readings": "count()",
                "avg_temperature": "avg(temperature)",
                "max_temperature": "max(temperature)",
            },
            emit="update",
        )
        .to(topic="sensor-averages", schema="com.example.sensors.SensorAverage")
    )
    assert hopping == load_topology(TOPOLOGIES / "sensor-averages.yaml")
    session = (
        orders_source(Topology("regions", version="1"))
        .key_by(name="region", expr="country + '/' + currency")
        .window(session={"gap": "30m"}, aggregate={"n": "count()"})
        .to(topic="out", schema="com.example.Order")
    )
    assert session.window is not None and session.window.session is not None
    assert session.window.session.gap == 30 * 60_000


def to_upper(record: dict[str, Any]) -> dict[str, Any]:
    return {**record, "status": record["status"].upper()}


def test_a_python_callable_is_kept_and_fingerprinted_by_name() -> None:
    topology = (
        orders_source(Topology("upper", version="1"))
        .map(to_upper)
        .to(topic="out", schema="com.example.Order")
    )
    stage = topology.stages[0]
    assert isinstance(stage, MapStage) and stage.map is to_upper
    assert f'"map":"{__name__}:to_upper"' in topology.canonical_json()
    by_name = (
        orders_source(Topology("upper", version="1"))
        .map(f"{__name__}:to_upper")
        .to(topic="out", schema="com.example.Order")
    )
    assert by_name.fingerprint == topology.fingerprint


def test_invalid_input_raises_the_same_errors_as_a_file() -> None:
    with pytest.raises(TopologyError) as caught:
        (
            orders_source(Topology("Bad Name", version="1"))
            .filter("")
            .window(tumbling="soon", aggregate={"n": "count()"})
            .to(topic="out", schema="com.example.Order")
        )
    assert str(caught.value).splitlines() == [
        "topology 'Bad Name': name: 'Bad Name' is not a valid name (lowercase letters, digits, "
        "'.', '-')",
        "topology 'Bad Name': stages[0].filter: must not be empty",
        "topology 'Bad Name': stages[1].window.tumbling: invalid duration 'soon'; expected a whole "
        "number with a unit (ms, s, m, h or d, e.g. 100ms, 5s, 1m, 2h, 1d)",
    ]


def test_a_topology_without_sink_or_source_is_rejected() -> None:
    with pytest.raises(TopologyError) as caught:
        Topology("empty", version="1").build()
    assert str(caught.value).splitlines() == [
        "topology 'empty': sources: must not be empty",
        "topology 'empty': sink: required, but missing",
    ]


def test_key_by_takes_a_field_or_name_and_expr() -> None:
    with pytest.raises(TypeError, match="key_by"):
        Topology("t", version="1").key_by("customer_id", name="x", expr="y")
    with pytest.raises(TypeError, match="key_by"):
        Topology("t", version="1").key_by()
