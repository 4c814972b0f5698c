"""Stream-stream joins without a broker: the buffers' matching and expiry rules, the stage
through the test driver against an independently computed oracle (with crashes), and what
`validate` refuses."""

from __future__ import annotations

import random
from pathlib import Path
from typing import Any

import pytest
import yaml

from streamline.ops.acls import topology_acls
from streamline.runtime.stream_join import LEFT, RIGHT, Buffered, JoinBuffers
from streamline.serde import SchemaStore
from streamline.state.reset import plan_state_reset
from streamline.state.store import PartitionStore
from streamline.testing.driver import TopologyDriver
from streamline.topology import Topology, TopologyBuilder, TopologyError, check_topology
from streamline.topology.loader import load_topology
from streamline.topology.resources import resources_of
from tests.support.stream_joins import TOPOLOGY, Scenario, canonical

PROJECT = Path(__file__).resolve().parents[2]
STORE = SchemaStore(PROJECT / "schemas")
EXAMPLE = PROJECT / "topologies" / "orders-payments.yaml"
PARTITIONS = 3


def buffers(tmp_path: Path, join_type: Any = "left", lateness: int = 0) -> JoinBuffers:
    store = PartitionStore(tmp_path / "joins", 0)
    return JoinBuffers(store, 100, lateness, join_type, ["orders", "payments"])


def rec(side: Any, key: str, time: int, offset: int) -> Buffered:
    topic = "orders" if side == LEFT else "payments"
    return Buffered(side, key, time, {"k": key, "t": time}, (topic, 0, offset))


# --- the buffers ---------------------------------------------------------------------------


def test_a_match_is_made_whichever_side_comes_first(tmp_path: Path) -> None:
    b = buffers(tmp_path)
    assert b.add(rec(LEFT, "a", 1_000, 0)) == []
    assert [m.origin for m in b.add(rec(RIGHT, "a", 1_100, 0))] == [("orders", 0, 0)]
    assert [m.origin for m in b.add(rec(LEFT, "a", 1_050, 1))] == [("payments", 0, 0)]


def test_within_is_inclusive_and_keys_must_be_equal(tmp_path: Path) -> None:
    b = buffers(tmp_path)
    b.add(rec(LEFT, "a", 1_000, 0))
    assert b.add(rec(RIGHT, "a", 1_101, 0)) == []  # 101 ms apart
    assert b.add(rec(RIGHT, "ab", 1_000, 1)) == []  # another key, sharing a prefix
    assert len(b.add(rec(RIGHT, "a", 900, 2))) == 1  # 100 ms apart, before it


def test_an_unmatched_left_record_is_emitted_once_after_its_window_closed(
    tmp_path: Path,
) -> None:
    b = buffers(tmp_path, lateness=50)
    b.add(rec(LEFT, "a", 1_000, 0))
    assert b.expire(1_150) == ([], 0)  # time + within + lateness = 1_150: not yet passed
    unmatched, dropped = b.expire(1_151)
    assert [u.origin for u in unmatched] == [("orders", 0, 0)] and dropped == 1
    assert b.expire(5_000) == ([], 0)
    assert b.buffered() == 0


def test_a_matched_record_is_never_emitted_unmatched(tmp_path: Path) -> None:
    b = buffers(tmp_path, "outer")
    b.add(rec(LEFT, "a", 1_000, 0))
    b.add(rec(RIGHT, "a", 1_010, 0))
    assert b.expire(10_000) == ([], 2)


def test_inner_keeps_no_unmatched_and_outer_keeps_both_sides(tmp_path: Path) -> None:
    inner = buffers(tmp_path / "i", "inner")
    outer = buffers(tmp_path / "o", "outer")
    for b in (inner, outer):
        b.add(rec(LEFT, "a", 1_000, 0))
        b.add(rec(RIGHT, "b", 1_000, 0))
    assert inner.expire(10_000) == ([], 2)
    unmatched, _ = outer.expire(10_000)
    assert sorted(u.side for u in unmatched) == [LEFT, RIGHT]


def test_a_record_is_late_when_it_could_need_an_expired_one(tmp_path: Path) -> None:
    b = buffers(tmp_path, lateness=50)
    assert not b.is_late(950, 1_000)
    assert b.is_late(949, 1_000)


def test_the_expiry_watermark_survives_in_the_store(tmp_path: Path) -> None:
    b = buffers(tmp_path)
    assert b.expired_at() is None
    b.expire(2_000)
    b.store.commit(1)
    assert b.expired_at() == 2_000
    assert b.expire(1_500) == ([], 0)  # never backwards


# --- the stage, through the test driver ----------------------------------------------------


def driver(tmp_path: Path, join_type: str, idle: str = "1h") -> TopologyDriver:
    path = tmp_path / "topologies" / "join.yaml"
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(
        TOPOLOGY.format(
            name="join", orders="orders", payments="payments", sink="paid", type=join_type,
            idle=idle,
        )
    )  # fmt: skip
    return TopologyDriver(path, schemas=PROJECT / "schemas", partitions=PARTITIONS)


def pipe_all(d: TopologyDriver, scenario: Scenario, seed: int = 2, crashes: int = 0) -> None:
    """Pipes the scenario in chunks (committing after each), crashing before some commits,
    then the closing pairs."""
    feed = scenario.feed(seed)
    chunks = [feed[i : i + 25] for i in range(0, len(feed), 25)]
    crash_after = set(random.Random(seed).sample(range(len(chunks)), crashes))
    for i, chunk in enumerate(chunks):
        for source in ("orders", "payments"):
            rows = [v for s, v in chunk if s == source]
            if rows:
                d.pipe(source, rows, key=lambda v: v["order_id"])
        if i in crash_after:  # before the commit: the chunk is read and joined again
            d.crash(lose_local_state=i % 2 == 0)
        d.commit()
    for p, o, pay in scenario.closing(PARTITIONS):
        d.pipe("orders", o, key=o["order_id"], partition=p)
        d.pipe("payments", pay, key=o["order_id"], partition=p)
    d.commit()


@pytest.mark.parametrize("join_type", ["inner", "left", "outer"])
def test_the_join_equals_the_oracle(tmp_path: Path, join_type: str) -> None:
    scenario = Scenario.make(300)
    with driver(tmp_path, join_type) as d:
        pipe_all(d, scenario)
        outputs = [o.value for o in d.output()]
        assert d.late() == [] and d.dead_letters() == []
    assert canonical(outputs) == canonical(scenario.expected(join_type, PARTITIONS))


def test_metrics_count_matches_unmatched_records_and_buffers(tmp_path: Path) -> None:
    scenario = Scenario.make(200, seed=8)
    with driver(tmp_path, "outer") as d:
        pipe_all(d, scenario, seed=3)
        registry = d.metrics.registry
        rows = scenario.expected("outer", PARTITIONS)

        def sample(name: str, **labels: str) -> float:
            value = registry.get_sample_value(
                f"streamline_{name}", {"topology": "join", "stage": "stages[1].join", **labels}
            )
            return value or 0.0

        buffered = sum(sample("join_buffered_records", partition=str(p)) for p in range(PARTITIONS))
    assert sample("join_matches_total") == sum(
        1 for r in rows if r["created_at"] is not None and r["paid_at"] is not None
    )
    assert sample("join_unmatched_total", side="left") == sum(
        1 for r in rows if r["paid_at"] is None
    )
    assert sample("join_unmatched_total", side="right") == sum(
        1 for r in rows if r["created_at"] is None
    )
    assert buffered == 2 * PARTITIONS  # only the closing pairs are still held


def test_crashes_lose_nothing_and_emit_nothing_twice(tmp_path: Path) -> None:
    scenario = Scenario.make(300, seed=4)
    with driver(tmp_path, "outer") as d:
        pipe_all(d, scenario, seed=6, crashes=4)
        outputs = [o.value for o in d.output()]
    assert canonical(outputs) == canonical(scenario.expected("outer", PARTITIONS))


def test_an_unmatched_order_waits_for_its_window_to_close(tmp_path: Path) -> None:
    scenario = Scenario.make(1)
    order = dict(scenario.orders[0], order_id="o-unpaid")
    (_, ahead, paid), *_ = scenario.closing(1)
    with driver(tmp_path, "left") as d:
        d.pipe("orders", order, key="o-unpaid", partition=0)
        d.commit()
        assert d.output() == []  # its window is open
        d.pipe("orders", ahead, key="end-0", partition=0)
        d.pipe("payments", paid, key="end-0", partition=0)
        d.commit()
        unmatched = [o.value for o in d.output() if o.value["paid_at"] is None]
    assert [u["order_id"] for u in unmatched] == ["o-unpaid"]


def test_a_record_too_late_to_join_goes_to_the_late_topic(tmp_path: Path) -> None:
    scenario = Scenario.make(1)
    (_, ahead, paid), *_ = scenario.closing(1)
    with driver(tmp_path, "inner") as d:
        d.pipe("orders", ahead, key="end-0", partition=0)
        d.pipe("payments", paid, key="end-0", partition=0)
        late = dict(scenario.orders[0], order_id="o-late")
        d.pipe("orders", late, key="o-late", partition=0)
        d.commit()
        assert [r.value["order_id"] for r in d.late()] == ["o-late"]


def test_an_idle_side_stops_holding_the_watermark_back(tmp_path: Path) -> None:
    scenario = Scenario.make(1)
    order = dict(scenario.orders[0], order_id="o-unpaid")
    (_, ahead, _), *_ = scenario.closing(1)
    with driver(tmp_path, "left", idle="10s") as d:
        d.pipe("orders", order, key="o-unpaid", partition=0)
        d.pipe("orders", ahead, key="end-0", partition=0)  # no payment at all
        d.commit()
        assert d.output() == []  # the payments side holds the watermark back
        d.advance_wall_clock(11_000)
        d.commit()
        assert [o.value["order_id"] for o in d.output()] == ["o-unpaid"]


# --- validate ------------------------------------------------------------------------------


def example(**join: Any) -> dict[str, Any]:
    data = yaml.safe_load(EXAMPLE.read_text())
    spec = data["stages"][0]["join"]
    spec["on"] = spec.pop(True)
    for key, value in join.items():
        if value is None:
            spec.pop(key, None)
        else:
            spec[key] = value
    return data


def problems(data: dict[str, Any]) -> list[str]:
    with pytest.raises((TopologyError, ValueError)) as caught:
        check_topology(Topology.model_validate(data), STORE)
    return str(caught.value).splitlines()


def test_the_example_checks_and_the_sink_sees_nullable_joined_fields() -> None:
    checked = check_topology(load_topology(EXAMPLE), STORE)
    assert checked.output_fields["paid_amount"] == "nullable double"
    assert checked.stream_schemas["payments"].name == "com.example.Payment"
    resources = resources_of(checked.topology)
    assert resources.changelog_topic == "orders-payments.joins.changelog"
    assert resources.joined_streams == ("payments",)


@pytest.mark.parametrize(
    ("join", "expected"),
    [
        ({"on": "payment_id"}, "stages[0].join.on: unknown field 'payment_id' (join key)"),
        (
            {"on": {"left": "order_id", "right": "amount"}},
            "stages[0].join.on: the join key is string in the records ('order_id') but double",
        ),
        ({"fields": {"amount": "amount"}}, "stages[0].join.fields.amount: the records already"),
        ({"fields": {"x": "nope"}}, "stages[0].join.fields.x: stream 'payments' has no field"),
        ({"within": None}, "stages[0].join.within: a stream join needs within:"),
        (
            {"stream": "orders"},
            "stages[0].join.stream: 'orders' is sources[0], which feeds the stages",
        ),
        ({"missing": "drop"}, "stages[0].join.missing: missing: is for table joins"),
    ],
)
def test_validate_names_the_join_path(join: dict[str, Any], expected: str) -> None:
    found = problems(example(**join))
    assert any(expected in line for line in found), found


def test_both_sides_must_be_partitioned_by_the_join_key() -> None:
    data = example()
    data["sources"][1]["partitioned_by"] = "payment_id"
    assert any(
        "sources[1].partitioned_by: a stream join needs both sides partitioned by the join key"
        in line
        for line in problems(data)
    )


def test_stages_after_a_stream_join_are_refused_as_not_supported_yet() -> None:
    data = example()
    data["stages"].append({"filter": "amount > 0.0"})
    assert any(
        "stages[1]: stages after a stream join are not supported yet" in p for p in problems(data)
    )


def test_mismatched_partition_counts_are_a_problem_saying_how_to_fix_it() -> None:
    resources = resources_of(load_topology(EXAMPLE))
    found = resources.copartitioning_problems({"orders-by-id": 6, "payments": 3})
    assert found and "recreate payments with 6 partitions" in found[0]
    assert resources.copartitioning_problems({"orders-by-id": 6, "payments": 6}) == []


def test_topics_acls_and_replay_know_the_joined_stream_and_the_changelog() -> None:
    topology = load_topology(EXAMPLE)
    resources = resources_of(topology)
    roles = {t.name: t.role for t in resources.topics}
    assert roles["orders-by-id"] == roles["payments"] == "source"
    assert roles["orders-payments.joins.changelog"] == "changelog"
    plan = resources.topic_plan(1, {"orders-by-id": 4, "payments": 4})
    assert plan["orders-payments.joins.changelog"][0] == 4
    acls = {(a.resource, a.name, a.operation) for a in topology_acls(topology)}
    assert ("TOPIC", "payments", "READ") in acls
    assert ("TOPIC", "orders-payments.joins.changelog", "DELETE") in acls
    assert ("TOPIC", "orders-payments.late", "WRITE") in acls
    reset = plan_state_reset(
        resources,
        [("payments", 1)],
        {("orders-payments.joins.changelog", p): 10 for p in range(4)},
    )
    assert reset.partitions == [1]


def test_the_python_builder_makes_the_example() -> None:
    built = (
        TopologyBuilder("orders-payments", version="1")
        .source(
            name="orders", topic="orders-by-id", schema="com.example.Order",
            event_time="created_at", max_out_of_orderness="5s", partitioned_by="order_id",
        )
        .source(
            name="payments", topic="payments", schema="com.example.Payment",
            event_time="paid_at", max_out_of_orderness="30s", idle_timeout="1m",
            partitioned_by="order_id",
        )
        .join_stream(
            "payments", on="order_id", within="10m", type="left",
            fields={"paid_amount": "amount", "paid_at": "paid_at"},
        )
        .to(topic="orders-payments", schema="com.example.OrderPayment")
    )  # fmt: skip
    assert built.fingerprint == load_topology(EXAMPLE).fingerprint


def test_an_undecodable_payment_is_a_dead_letter_and_the_join_goes_on(tmp_path: Path) -> None:
    scenario = Scenario.make(1)
    (_, order, paid), *_ = scenario.closing(1)
    with driver(tmp_path, "inner") as d:
        d.pipe("payments", b"\x00garbage", key=b"end-0", partition=0)
        d.pipe("orders", order, key="end-0", partition=0)
        d.pipe("payments", paid, key="end-0", partition=0)
        [dead] = d.dead_letters()
        assert dead.raw == b"\x00garbage" and dead.header("streamline.error.type") == b"decode"
        assert [o.value["paid_amount"] for o in d.output()] == [paid["amount"]]
