"""Routing to several sinks: `sinks:` and the terminal `route` stage (topology.md, "Route")."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest
from pydantic import ValidationError

from streamline.serde import SchemaStore
from streamline.testing import TopologyDriver
from streamline.topology import TopologyError, check_topology, render_chain
from streamline.topology.errors import problems_from_validation_error
from streamline.topology.model import Topology
from streamline.topology.resources import resources_of

PROJECT = Path(__file__).resolve().parents[2]
SOURCE = {
    "name": "orders",
    "topic": "orders",
    "schema": "com.example.Order",
    "event_time": "created_at",
    "watermark": {"max_out_of_orderness": "1s"},
}
ORDER_SINK = {"schema": "com.example.Order"}
BRANCHES = [
    {"when": "country == 'DE'", "to": "de"},
    {"when": "country == 'FR'", "to": ["fr", "audit"]},
    {"when": "amount > 100.0", "to": "big"},
    {"otherwise": "rest"},
]
SINKS = {
    name: {**ORDER_SINK, "topic": f"r.{name}"} for name in ("de", "fr", "audit", "big", "rest")
}


def routed(branches: list[dict[str, Any]] = BRANCHES, **extra: Any) -> Topology:
    data = {
        "name": "router",
        "version": "1",
        "sources": [SOURCE],
        "stages": [{"filter": "status != 'VOID'"}, {"route": branches}],
        "sinks": SINKS,
        **extra,
    }
    return Topology.model_validate(data)


@pytest.fixture(scope="module")
def store() -> SchemaStore:
    return SchemaStore(PROJECT / "schemas")


def order(i: int, country: str, amount: float = 10.0, status: str = "PAID") -> dict[str, Any]:
    return {
        "order_id": f"o-{i}",
        "customer_id": f"c-{i}",
        "amount": amount,
        "currency": "EUR",
        "status": status,
        "country": country,
        "created_at": 1_700_000_000_000 + i,
    }


def oracle(orders: list[dict[str, Any]]) -> dict[str, list[str]]:
    """Sink name -> order ids, computed without the runtime."""
    out: dict[str, list[str]] = {name: [] for name in SINKS}
    for o in orders:
        if o["status"] == "VOID":
            continue
        if o["country"] == "DE":
            targets = ["de"]
        elif o["country"] == "FR":
            targets = ["fr", "audit"]
        elif o["amount"] > 100.0:
            targets = ["big"]
        else:
            targets = ["rest"]
        for t in targets:
            out[t].append(o["order_id"])
    return out


def problems(data: dict[str, Any]) -> set[tuple[str, str]]:
    with pytest.raises(ValidationError) as info:
        Topology.model_validate(data)
    return {(p.path, p.message) for p in problems_from_validation_error(info.value)}


def test_sinks_fill_the_default_sink_and_keep_their_own_fingerprint() -> None:
    topology = routed()
    assert topology.sink.topic == "r.de"
    assert [s.topic for s in topology.outputs.values()] == [f"r.{name}" for name in SINKS]
    canonical = json.loads(topology.canonical_json())
    assert "sink" not in canonical and set(canonical["sinks"]) == set(SINKS)
    assert canonical["stages"][1]["route"][3] == {"otherwise": ["rest"]}
    assert routed().fingerprint == topology.fingerprint
    swapped = [BRANCHES[1], BRANCHES[0], *BRANCHES[2:]]
    assert routed(swapped).fingerprint != topology.fingerprint  # the order is meaning


def test_route_and_sinks_rules_name_the_path() -> None:
    base = {"name": "r", "version": "1", "sources": [SOURCE]}
    one = {"de": {**ORDER_SINK, "topic": "de"}}
    other = {**ORDER_SINK, "topic": "other"}
    assert problems({**base, "sink": other, "sinks": one}) == {
        ("sinks", "give sink (one output) or sinks (named outputs), not both")
    }
    assert problems({**base, "sinks": {**one, "fr": {**ORDER_SINK, "topic": "fr"}}}) == {
        ("sinks", "several sinks need a route stage to say where each record goes")
    }
    assert problems(
        {**base, "stages": [{"route": [{"when": "true", "to": "xx"}]}], "sinks": one}
    ) == {
        ("stages[0].route[0].to", "unknown sink 'xx'; sinks: de"),
        ("sinks.de", "no branch of the route sends records to it"),
    }
    assert problems(
        {**base, "stages": [{"route": [{"otherwise": "de"}, {"when": "true", "to": "de"}]}],
         "sinks": one}
    ) == {("stages[0].route", "otherwise must be the last branch")}  # fmt: skip
    assert problems(
        {**base, "stages": [{"route": [{"otherwise": "de"}]}, {"filter": "true"}], "sinks": one}
    ) == {("stages[1]", "nothing may follow the route stage: it is the last")}
    assert problems({**base, "stages": [{"route": [{"when": "true"}]}], "sinks": one}) == {
        (
            "stages[0].route[0]",
            "a branch needs when and to ({when: \"country == 'DE'\", to: de}), "
            "or is {otherwise: rest}",
        )
    }
    assert problems({**base, "stages": [{"route": [{"otherwise": "de"}]}], "sink": one["de"]}) == {
        ("stages[0].route", "a route sends to sinks declared in sinks:")
    }
    assert ("sinks.fr.topic", "topic 'de' is also the topic of sinks.de") in problems(
        {**base, "stages": [{"route": [{"when": "true", "to": ["de", "fr"]}]}],
         "sinks": {**one, "fr": {**ORDER_SINK, "topic": "de"}}}
    )  # fmt: skip


def test_each_sink_is_type_checked_and_the_chain_lists_them(store: SchemaStore) -> None:
    checked = check_topology(routed(), store)
    chain = render_chain(checked)
    assert "stages[1].route country == 'DE' -> de; country == 'FR' -> fr, audit" in chain
    assert "sinks.audit: topic r.audit <- com.example.Order" in chain
    wrong = {**SINKS, "big": {"topic": "r.big", "schema": "com.example.CustomerRevenue"}}
    with pytest.raises(TopologyError) as caught:
        check_topology(routed(sinks=wrong), store)
    assert "sinks.big.schema: com.example.CustomerRevenue field" in str(caught.value)
    bad_when = [{"when": "amount_eur > 1.0", "to": list(SINKS)}]
    with pytest.raises(TopologyError) as caught:
        check_topology(routed(bad_when), store)
    assert "stages[1].route[0].when" in str(caught.value)


def test_resources_cover_every_sink() -> None:
    resources = resources_of(routed())
    sinks = [t.name for t in resources.topics if t.role == "sink"]
    assert sinks == ["r.de", "r.fr", "r.audit", "r.big", "r.rest"]
    assert all(t.operations == ("WRITE",) for t in resources.topics if t.role == "sink")
    assert resources.required_topics[:6] == [*sinks, "router.dlq"]
    assert set(sinks) <= resources.lineage_outputs
    assert [t.name for t in resources.acl_topics][:6] == ["orders", *sinks]


def test_records_go_to_their_first_matching_branch_and_fan_out(store: SchemaStore) -> None:
    countries = ["DE", "FR", "IT", "ES", "DE", "FR", "US"]
    orders = [
        order(i, countries[i % len(countries)], 150.0 if i % 4 == 0 else 10.0,
              "VOID" if i % 9 == 0 else "PAID")
        for i in range(200)
    ]  # fmt: skip
    with TopologyDriver(routed(), store, partitions=2) as driver:
        driver.pipe("orders", orders[:120], key=lambda o: o["customer_id"])
        driver.crash()  # the open transaction is lost as a whole, and redone
        driver.pipe("orders", orders[120:], key=lambda o: o["customer_id"])
        driver.commit()
        got = {name: sorted(r.value["order_id"] for r in driver.output(name)) for name in SINKS}
        lineage = driver.lineage()
    want = oracle(orders)
    assert got == {name: sorted(ids) for name, ids in want.items()}
    outputs = {o["name"] for event in lineage for o in event["outputs"]}
    assert {f"r.{name}" for name in SINKS} <= outputs


def test_a_record_no_branch_takes_is_counted_unrouted(store: SchemaStore) -> None:
    branches = [{"when": "country == 'DE'", "to": list(SINKS)}]
    orders = [order(i, "DE" if i % 3 == 0 else "FR") for i in range(30)]
    with TopologyDriver(routed(branches), store) as driver:
        driver.pipe("orders", orders)
        assert len(driver.output("de")) == 10
        assert driver.dead_letters() == []
        unrouted = driver.metrics.value("dropped_total", stage="stages[1].route", reason="unrouted")
    assert unrouted == 20


class Ids:
    """Ids by subject, as a Schema Registry hands them out (the registry itself is tested
    against a real server in the integration tests)."""

    def __init__(self) -> None:
        self.registered: list[tuple[str, str, bool]] = []

    def sink_schema_id(self, subject: str, schema: Any, auto_register: bool) -> int:
        self.registered.append((subject, schema.name, auto_register))
        return 258

    def writer_schema(self, schema_id: int) -> Any:
        raise AssertionError("a sink asks for no writer schema")


def test_a_confluent_avro_route_sink_is_checked_and_registered_as_the_single_sink_is(
    store: SchemaStore,
) -> None:
    from streamline.errors import UsageError
    from streamline.runtime.route import router_of

    sinks = {**SINKS, "fr": {**SINKS["fr"], "format": "confluent-avro", "auto_register": False}}
    checked = check_topology(routed(sinks=sinks), store)
    with pytest.raises(UsageError) as caught:
        router_of(checked, store)
    assert str(caught.value) == (
        "sinks.fr: format confluent-avro needs a schema registry: give "
        "--schema-registry-url or STREAMLINE_SCHEMA_REGISTRY_URL"
    )
    ids = Ids()
    router, _files = router_of(checked, store, ids)
    assert router is not None
    assert ids.registered == [("r.fr-value", "com.example.Order", False)]
    encode = router.sinks["fr"].encode
    assert encode is not None
    data = encode.codec.encode(order(1, "FR"))
    assert data[:5] == b"\x00\x00\x00\x01\x02"  # framed with the id the registry gave
    avro = router.sinks["de"].encode
    assert avro is not None and avro.codec.encode(order(2, "DE"))[:2] == b"\xc3\x01"


def test_validate_registry_checks_the_route_sinks_in_confluent_avro(store: SchemaStore) -> None:
    from streamline.errors import UsageError
    from streamline.kafka.registry import sink_incompatibility

    asked: list[str] = []

    class Rules:
        def incompatibility(self, subject: str, schema: Any) -> str | None:
            asked.append(subject)
            return "field x was added without a default" if subject == "r.fr-value" else None

    sinks = {**SINKS, "fr": {**SINKS["fr"], "format": "confluent-avro"}}
    with pytest.raises(UsageError) as caught:
        sink_incompatibility(Rules(), check_topology(routed(sinks=sinks), store))  # type: ignore[arg-type]
    assert str(caught.value) == (
        "router: sink schema com.example.Order is incompatible with subject r.fr-value: "
        "field x was added without a default"
    )
    assert asked == ["r.fr-value"]  # only the confluent-avro sinks are asked
