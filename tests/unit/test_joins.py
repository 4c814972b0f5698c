"""Tables and stream-table joins without a broker: the model, type checks, the table store
(plain and versioned), the join stage and the topics a table adds."""

from __future__ import annotations

import copy
import dataclasses
import json
import shutil
from pathlib import Path
from typing import Any

import pytest
import yaml

from streamline.observability.metrics import Metrics
from streamline.reliability.dead_letter import Failure
from streamline.runtime.join_operator import Join
from streamline.runtime.record import Record
from streamline.runtime.table_operator import TablePartition, TableSettings, TableState
from streamline.serde import AvroCodec, SchemaStore
from streamline.topology import Topology, TopologyError, check_topology, load_topology
from streamline.topology.model import JoinSpec
from streamline.topology.resources import resources_of

PROJECT = Path(__file__).resolve().parents[2]
EXAMPLE = PROJECT / "topologies" / "orders-enriched.yaml"
STORE = SchemaStore(PROJECT / "schemas")
CUSTOMER = AvroCodec(STORE, STORE.get("com.example.Customer"))
DAY = 24 * 3600 * 1000


def example(**changes: Any) -> dict[str, Any]:
    data = yaml.safe_load(EXAMPLE.read_text())
    for path, value in changes.items():
        node = data
        *parents, last = path.split("__")
        for part in parents:
            node = node[int(part)] if part.isdigit() else node[part]
        if value is None:
            del node[last]
        else:
            node[last] = value
    return data


def problems(data: dict[str, Any]) -> list[str]:
    with pytest.raises((TopologyError, ValueError)) as caught:
        check_topology(Topology.model_validate(data), STORE)
    return str(caught.value).splitlines()


# --- the model and type checks -----------------------------------------------------------


def test_the_example_checks_and_the_sink_sees_the_joined_fields() -> None:
    checked = check_topology(load_topology(EXAMPLE), STORE)
    assert checked.output_fields["segment"] == "string"
    assert checked.output_fields["customer_country"] == "string"
    assert checked.table_schemas["customers"].name == "com.example.Customer"


def test_an_unquoted_yaml_on_key_is_the_join_key_not_a_boolean() -> None:
    data = example()
    assert True in data["stages"][0]["join"]  # YAML 1.1 reads `on:` as true
    assert Topology.model_validate(data).stages[0].join.on == "customer_id"  # type: ignore[union-attr]


def test_a_topology_without_tables_keeps_its_fingerprint() -> None:
    path = PROJECT / "topologies" / "paid-orders.yaml"
    assert '"tables"' not in load_topology(path).canonical_json()


@pytest.mark.parametrize(
    ("changes", "expected"),
    [
        (
            {"stages__0__join__table": "suppliers"},
            "stages[0].join.table: unknown table 'suppliers'; tables: customers",
        ),
        (
            {"stages__0__join": {"stream": "payments", "on": "order_id", "fields": {"a": "b"}}},
            "stages[0].join.stream: unknown source 'payments': a stream join names another "
            "item of sources:",
        ),
        (
            {"tables__0__versioned": None},
            "tables[0].valid_from: valid_from is for versioned tables",
        ),
        ({"tables__0__topic": "orders"}, "tables[0].topic: topic 'orders' is a source or the sink"),
    ],
)
def test_the_model_refuses_bad_and_unsupported_tables_and_joins(
    changes: dict[str, Any], expected: str
) -> None:
    found = problems(example(**changes))
    assert any(expected in line for line in found), found


def test_a_join_after_key_by_is_refused() -> None:
    data = example()
    data["stages"].insert(0, {"key_by": "customer_id"})
    assert any(
        "stages[1].join: a join must come before the key_by stage" in p for p in problems(data)
    )


def store_with(tmp_path: Path, name: str, fields: list[dict[str, Any]]) -> SchemaStore:
    folder = tmp_path / "schemas"
    folder.mkdir()
    for avsc in (PROJECT / "schemas").glob("*.avsc"):
        shutil.copy(avsc, folder)
    schema = {"type": "record", "name": name, "namespace": "test", "fields": fields}
    (folder / f"{name}.avsc").write_text(json.dumps(schema))
    return SchemaStore(folder)


def test_type_checks_name_the_join_path_and_the_field(tmp_path: Path) -> None:
    store = store_with(
        tmp_path,
        "NumberedCustomer",
        [
            {"name": "customer_id", "type": "long"},
            {"name": "segment", "type": "string"},
            {"name": "tags", "type": {"type": "array", "items": "string"}},
        ],
    )
    data = example(tables__0__schema="test.NumberedCustomer", tables__0__valid_from=None)
    data["stages"][0]["join"] = {
        "table": "customers",
        "on": "customer_id",
        "fields": {"segment": "segment", "amount": "segment", "nation": "country"},
    }
    with pytest.raises(TopologyError) as caught:
        check_topology(Topology.model_validate(data), store)
    text = str(caught.value)
    assert (
        "stages[0].join.on: field 'customer_id' is string, but the key of table 'customers' "
        "(field 'customer_id') is long" in text
    )
    assert "stages[0].join.fields.amount: the records already have a field 'amount'" in text
    assert "stages[0].join.fields.nation: table 'customers' has no field 'country'" in text


def test_a_stream_not_partitioned_by_the_join_key_is_refused_with_the_fix() -> None:
    found = problems(example(sources__0__partitioned_by=None))
    assert any(
        "stages[0].join.on: the stream must be partitioned by the join key 'customer_id'" in p
        and "partitioned_by: customer_id" in p
        for p in found
    ), found


def test_a_global_table_needs_no_copartitioning() -> None:
    topology = Topology.model_validate(
        example(sources__0__partitioned_by=None, tables__0__global=True)
    )
    check_topology(topology, STORE)
    resources = resources_of(topology)
    assert resources.topic("table").partitions == "requested"  # type: ignore[union-attr]
    assert resources.copartitioning_problems({"orders": 6, "customers": 1}) == []


def test_a_global_join_finds_the_key_in_whichever_partition_holds_it(tmp_path: Path) -> None:
    shared = dataclasses.replace(settings(tmp_path), global_=True)
    state = TableState([shared])
    for p in range(3):
        state.of("customers")[p] = TablePartition(shared, p)
    state.of("customers")[2].apply([table_record(0, row("c-1", "gold", 1_000))], [])
    spec = JoinSpec.model_validate(
        {"table": "customers", "on": "customer_id", "fields": {"seg": "segment"}}
    )
    join = Join("stages[0].join", spec, state, "t.retry", Metrics("t"))
    hit, miss = order("c-1", 2_000, partition=0), order("c-2", 2_000, partition=0)
    failed: list[Any] = []
    assert join.process([hit, miss], lambda r, f: failed.append((r, f)), lambda *a: None) == [hit]
    assert hit.value["seg"] == "gold"
    assert "no row in table customers" in failed[0][1].message


def test_missing_null_makes_the_new_fields_nullable() -> None:
    data = example()
    data["stages"][0]["join"]["missing"] = "null"
    found = problems(data)  # the sink's fields are not nullable
    assert any("customer_country" in p and "sink.schema" in p for p in found), found


# --- the table store ---------------------------------------------------------------------


def settings(tmp_path: Path, versioned: bool = True, history_ms: int = 7 * DAY) -> TableSettings:
    return TableSettings(
        name="customers",
        topic="customers",
        codec=CUSTOMER,
        key_field="customer_id",
        valid_from="updated_at" if versioned else None,
        history_ms=history_ms if versioned else None,
        fields=("segment", "country"),
        topology="t",
        state_dir=tmp_path,
    )


def row(customer: str, segment: str, at: int) -> dict[str, Any]:
    return {"customer_id": customer, "segment": segment, "country": "DE", "updated_at": at}


def table_record(offset: int, value: dict[str, Any] | None, key: str | None = None) -> Record:
    raw = CUSTOMER.encode(value) if value is not None else None
    k = (key or (value or {}).get("customer_id") or "").encode() or None
    record = Record("customers", 0, offset, k, raw, None)
    record.event_time = value["updated_at"] if value is not None else 5_000
    return record


def test_a_versioned_table_answers_as_of_event_time_and_tombstones_end_a_row(
    tmp_path: Path,
) -> None:
    table = TablePartition(settings(tmp_path), 0)
    failures: list[tuple[Record, Failure]] = []
    table.apply(
        [
            table_record(0, row("c-1", "bronze", 1_000)),
            table_record(1, row("c-1", "gold", 3_000)),
            table_record(2, row("c-1", "silver", 2_000)),  # out of order: still in its place
            table_record(3, None, key="c-1"),  # tombstone at 5_000
        ],
        failures,
    )
    assert failures == []
    assert table.lookup("c-1", 999) is None
    assert table.lookup("c-1", 1_000) == {"segment": "bronze", "country": "DE"}
    assert table.lookup("c-1", 2_500)["segment"] == "silver"  # type: ignore[index]
    assert table.lookup("c-1", 4_999)["segment"] == "gold"  # type: ignore[index]
    assert table.lookup("c-1", 5_000) is None
    assert table.lookup("c-2", 5_000) is None


def test_a_lookup_sees_a_change_applied_after_it(tmp_path: Path) -> None:
    for versioned in (True, False):
        table = TablePartition(settings(tmp_path / str(versioned), versioned=versioned), 0)
        table.apply([table_record(0, row("c-1", "bronze", 1_000))], [])
        assert table.lookup("c-1", 9_000)["segment"] == "bronze"  # type: ignore[index]
        table.apply([table_record(1, row("c-1", "gold", 2_000))], [])
        assert table.lookup("c-1", 9_000)["segment"] == "gold"  # type: ignore[index]
        table.apply([table_record(2, None, key="c-1")], [])
        assert table.lookup("c-1", 9_000) is None
        table.close()


def test_versions_older_than_history_behind_the_newest_are_forgotten(tmp_path: Path) -> None:
    table = TablePartition(settings(tmp_path, history_ms=1_000), 0)
    table.apply(
        [table_record(i, row("c-1", f"s{i}", i * 400)) for i in range(10)],  # 0 .. 3600
        [],
    )
    kept = [k for k, _ in table.store.items(prefix=b"c-1\x00")]
    # newest 3600, cutoff 2600: the version in force then (2400) and the later ones stay
    assert len(kept) == 4
    assert table.lookup("c-1", 2_600)["segment"] == "s6"  # type: ignore[index]
    assert table.lookup("c-1", 100) is None  # forgotten


def test_a_plain_table_upserts_and_deletes_and_keeps_its_rows_across_a_restart(
    tmp_path: Path,
) -> None:
    table = TablePartition(settings(tmp_path, versioned=False), 0)
    table.apply(
        [
            table_record(0, row("c-1", "bronze", 1)),
            table_record(1, row("c-2", "bronze", 1)),
            table_record(2, row("c-1", "gold", 2)),
            table_record(3, None, key="c-2"),
        ],
        [],
    )
    table.checkpoint(4)
    table.close()
    again = TablePartition(settings(tmp_path, versioned=False), 0)
    assert again.start_offset(10) == 4  # local state is used: only what is new is read
    assert again.lookup("c-1", 0) == {"segment": "gold", "country": "DE"}
    assert again.lookup("c-2", 0) is None
    again.close()


def test_stored_rows_of_another_layout_are_loaded_again(tmp_path: Path) -> None:
    table = TablePartition(settings(tmp_path, versioned=False), 0)
    table.apply([table_record(0, row("c-1", "bronze", 1))], [])
    table.checkpoint(1)
    table.close()
    other = TablePartition(settings(tmp_path, versioned=True), 0)
    assert other.start_offset(1) == 0
    other.close()


def test_undecodable_and_keyless_table_records_are_table_decode_failures(tmp_path: Path) -> None:
    table = TablePartition(settings(tmp_path), 0)
    garbage = Record("customers", 0, 0, b"c-1", b"not avro", None)
    garbage.event_time = 1
    keyless_tombstone = Record("customers", 0, 1, None, None, None)
    keyless_tombstone.event_time = 1
    failures: list[tuple[Record, Failure]] = []
    table.apply([garbage, keyless_tombstone, table_record(2, row("c-1", "gold", 1))], failures)
    assert [(r.offset, f.error_type, f.stage) for r, f in failures] == [
        (0, "table_decode", "tables.customers"),
        (1, "table_decode", "tables.customers"),
    ]
    assert table.lookup("c-1", 1)["segment"] == "gold"  # type: ignore[index]  # kept loading


# --- the join stage ----------------------------------------------------------------------


def joined(tmp_path: Path, missing: str) -> tuple[Join, Metrics, list[Any], list[Any]]:
    state = TableState([settings(tmp_path)])
    table = TablePartition(settings(tmp_path), 0)
    table.apply([table_record(0, row("c-1", "gold", 1_000))], [])
    state.of("customers")[0] = table
    metrics = Metrics("t")
    spec = JoinSpec.model_validate(
        {
            "table": "customers",
            "on": "customer_id",
            "fields": {"seg": "segment"},
            "missing": missing,
        }
    )
    return Join("stages[0].join", spec, state, "t.retry", metrics), metrics, [], []


def order(customer: str, at: int, partition: int = 0) -> Record:
    record = Record("orders", partition, 0, None, b"", None)
    record.value = {"order_id": "o", "customer_id": customer}
    record.event_time = at
    return record


@pytest.mark.parametrize("missing", ["dead_letter", "drop", "null"])
def test_a_join_adds_fields_and_handles_a_miss_as_configured(tmp_path: Path, missing: str) -> None:
    join, metrics, failed, dropped = joined(tmp_path, missing)
    hit, early, unknown = order("c-1", 1_500), order("c-1", 500), order("c-9", 1_500)
    out = join.process(
        [hit, early, unknown],
        lambda r, f: failed.append((r, f)),
        lambda s, reason, n: dropped.append((s, reason, n)),
    )
    assert hit.value["seg"] == "gold"
    assert metrics.value("streamline_join_misses_total", stage="stages[0].join") == 2
    if missing == "dead_letter":
        assert out == [hit]
        assert [(r, f.error_type) for r, f in failed] == [(early, "join"), (unknown, "join")]
    elif missing == "drop":
        assert out == [hit] and failed == []
        assert dropped == [("stages[0].join", "join_miss", 2)]
    else:
        assert out == [hit, early, unknown]
        assert early.value["seg"] is None and unknown.value["seg"] is None


# --- topics ------------------------------------------------------------------------------


def test_a_table_topic_is_read_compacted_copartitioned_and_checked() -> None:
    resources = resources_of(load_topology(EXAMPLE))
    table = resources.topic("table")
    assert table is not None
    assert (table.name, table.operations, table.partitions) == (
        "customers",
        ("READ",),
        "like_sources",
    )
    assert table.config == {"cleanup.policy": "compact"}
    assert "customers" in [t.name for t in resources.acl_topics]
    assert "customers" not in [t.name for t in resources.owned]  # never truncated by a replay
    assert resources.topic_plan(3, {"orders": 6})["customers"][0] == 6
    assert resources.copartitioning_problems({"orders": 6, "customers": 6}) == []
    (problem,) = resources.copartitioning_problems({"orders": 6, "customers": 4})
    assert "table topic customers has 4 partitions but orders has 6" in problem
    assert "recreate customers with 6 partitions" in problem


def test_acls_let_the_instances_read_tables_and_publish_their_positions() -> None:
    from streamline.ops.acls import topology_acls

    acls = {(a.resource, a.name, a.operation) for a in topology_acls(load_topology(EXAMPLE))}
    assert ("TOPIC", "customers", "READ") in acls
    assert ("GROUP", "orders-enriched.tables", "READ") in acls
    assert not any(a[1] == "customers" and a[2] != "READ" for a in acls)


def test_model_copy_keeps_tables() -> None:
    topology = load_topology(EXAMPLE)
    assert copy.deepcopy(topology).tables == topology.tables


def test_the_test_driver_pipes_table_rows_and_joins_as_of_event_time() -> None:
    from streamline.testing import TopologyDriver

    with TopologyDriver(load_topology(EXAMPLE), STORE, partitions=3) as driver:
        driver.tables.pipe("customers", [row("c-1", "bronze", 1_000), row("c-2", "gold", 1_000)])
        driver.tables.pipe("customers", row("c-1", "silver", 5_000))
        orders = [
            {"order_id": f"{c}@{t}", "customer_id": c, "amount": 1.0, "currency": "EUR",
             "status": "PAID", "country": "DE", "created_at": t}
            for c, t in (("c-1", 2_000), ("c-1", 6_000), ("c-2", 6_000), ("c-3", 6_000))
        ]  # fmt: skip
        driver.pipe("orders", orders, key=lambda o: o["customer_id"])
        got = {r.value["order_id"]: r.value["segment"] for r in driver.output()}
        assert got == {"c-1@2000": "bronze", "c-1@6000": "silver", "c-2@6000": "gold"}
        (dead,) = driver.dead_letters()
        assert dead.header("streamline.error.type") == b"join"
        with pytest.raises(ValueError, match="not a table"):
            driver.tables.pipe("suppliers", [])


def test_dlq_replay_refuses_table_decode_dead_letters() -> None:
    from streamline.errors import StreamlineError
    from streamline.ops.dlq import replay_dead_letters

    with pytest.raises(StreamlineError, match="write the row to the table's topic again"):
        replay_dead_letters(None, load_topology(EXAMPLE), "table_decode")  # type: ignore[arg-type]


def test_the_builder_makes_the_example() -> None:
    from streamline.topology.builder import TopologyBuilder

    built = (
        TopologyBuilder("orders-enriched", version="1")
        .source(
            name="orders",
            topic="orders",
            schema="com.example.Order",
            event_time="created_at",
            partitioned_by="customer_id",
            max_out_of_orderness="5s",
        )
        .table(
            "customers",
            topic="customers",
            schema="com.example.Customer",
            key="customer_id",
            history="7d",
            valid_from="updated_at",
        )
        .join(
            "customers",
            on="customer_id",
            fields={"segment": "segment", "customer_country": "country"},
            missing="dead_letter",
        )
        .to(topic="orders-enriched", schema="com.example.EnrichedOrder")
    )
    assert built.fingerprint == load_topology(EXAMPLE).fingerprint
