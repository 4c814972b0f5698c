"""Type checking topologies against Avro schemas (topology.md, "Type checking")."""

import json
import shutil
from pathlib import Path
from typing import Any

import pytest

from streamline.serde.schema_store import SchemaStore
from streamline.topology import (
    CheckedTopology,
    Topology,
    TopologyError,
    check_topology,
    load_topology,
    render_chain,
)
from streamline.topology.builder import TopologyBuilder

PROJECT = Path(__file__).resolve().parents[2]
EXAMPLES = sorted((PROJECT / "topologies").glob("*.yaml"))


@pytest.fixture(scope="module")
def store() -> SchemaStore:
    return SchemaStore(PROJECT / "schemas")


def store_with(tmp_path: Path, **fields: list[dict[str, Any]]) -> SchemaStore:
    """The project's schemas plus one record schema `test.<Name>` per keyword."""
    folder = tmp_path / "schemas"
    folder.mkdir()
    for avsc in (PROJECT / "schemas").glob("*.avsc"):
        shutil.copy(avsc, folder)
    for name, record_fields in fields.items():
        schema = {"type": "record", "name": name, "namespace": "test", "fields": record_fields}
        (folder / f"{name}.avsc").write_text(json.dumps(schema))
    return SchemaStore(folder)


MILLIS = {"type": "long", "logicalType": "timestamp-millis"}


def windowed(aggregate: dict[str, str], sink: str, key: Any = "customer_id") -> Topology:
    """Orders keyed by `key` (a field, or {name, expr}) in 1-minute windows, to `sink`."""
    builder = TopologyBuilder("t", version="1").source(
        name="orders",
        topic="orders",
        schema="com.example.Order",
        event_time="created_at",
        max_out_of_orderness="1s",
    )
    builder = builder.key_by(key) if isinstance(key, str) else builder.key_by(**key)
    return builder.window(tumbling="1m", aggregate=aggregate).to(topic="out", schema=sink)


def sink_fields(key: str = "customer_id", **aggregates: Any) -> list[dict[str, Any]]:
    return [
        {"name": key, "type": "string"},
        {"name": "window_start", "type": MILLIS},
        {"name": "window_end", "type": MILLIS},
        *({"name": name, "type": t} for name, t in aggregates.items()),
    ]


def problems(topology: Topology, store: SchemaStore) -> list[str]:
    with pytest.raises(TopologyError) as caught:
        check_topology(topology, store)
    return str(caught.value).splitlines()


@pytest.mark.parametrize("path", EXAMPLES, ids=lambda p: p.stem)
def test_examples_type_check(path: Path, store: SchemaStore) -> None:
    checked = check_topology(load_topology(path), store)
    # the run fingerprint pins the definition and more (schemas, map code, version)
    assert len(checked.fingerprint) == 64
    assert checked.fingerprint != checked.topology.fingerprint


def test_checked_topology_holds_schemas_expressions_and_callables(store: SchemaStore) -> None:
    checked = check_topology(load_topology(PROJECT / "topologies" / "paid-orders.yaml"), store)
    assert (checked.source_schema.name, checked.sink_schema.name) == (
        "com.example.Order",
        "com.example.PaidOrder",
    )
    assert set(checked.expressions) == {0, 1}
    assert set(checked.expressions[0]) == {"amount_positive", "known_currency"}
    assert checked.expressions[1]["filter"].evaluate({"status": "PAID"}) is True
    to_eur = checked.map_callables[2]
    assert f"{to_eur.__module__}:{to_eur.__name__}" == "examples.orders:to_eur"
    order = {
        "order_id": "o-1",
        "customer_id": "c-1",
        "amount": 10.0,
        "currency": "USD",
        "status": "PAID",
        "country": "DE",
        "created_at": 1,
    }
    assert to_eur(order) == {
        "order_id": "o-1",
        "customer_id": "c-1",
        "amount_eur": 9.0,
        "country": "DE",
        "created_at": 1,
    }


def test_the_chain_shows_every_stage_its_output_and_the_fingerprint(store: SchemaStore) -> None:
    checked = check_topology(
        load_topology(PROJECT / "topologies" / "revenue-per-minute.yaml"), store
    )
    chain = render_chain(checked)
    for expected in (
        "sources[0] orders: topic orders -> com.example.Order {order_id: string",
        "stages[0].validate amount_positive: amount > 0.0",
        "stages[1].filter status == 'PAID'",
        "stages[2].key_by customer_id",
        "-> keyed by customer_id (string)",
        "stages[3].window tumbling 1m, allowed lateness 10s, emit final",
        "-> {customer_id: string, window_start: long (timestamp-millis), window_end: long "
        "(timestamp-millis), order_count: long, revenue: double,",
        "sink: topic revenue-per-minute <- com.example.CustomerRevenue",
        f"fingerprint {checked.fingerprint} (header revenue-per-minute@3#",
    ):
        assert expected in chain


def test_all_problems_are_reported_at_once(store: SchemaStore) -> None:
    topology = (
        TopologyBuilder("t", version="1")
        .source(
            name="orders",
            topic="orders",
            schema="com.example.Order",
            event_time="status_at",
            max_out_of_orderness="1s",
        )
        .filter("stauts == 'PAID'")
        .validate({"ok": "amount > 0"}, on_failure="drop")
        .key_by("customer")
        .window(tumbling="1m", aggregate={"revenue": "sum(currency)"})
        .to(topic="out", schema="com.example.Nope")
    )
    lines = problems(topology, store)
    assert [line.split(": ")[1] for line in lines] == [
        "sources[0].event_time",
        "sink.schema",
        "stages[0].filter",
        "stages[2].key_by",
        "stages[3].window.aggregate.revenue",
    ]
    assert all(line.startswith("topology 't': ") for line in lines)


@pytest.mark.parametrize(
    ("field_type", "ok"),
    [
        ("string", True),
        (MILLIS, True),
        ("long", True),
        ("double", False),
        (["null", "long"], False),
    ],
)
def test_event_time_is_a_millisecond_long_or_a_string(
    tmp_path: Path, field_type: Any, ok: bool
) -> None:
    store = store_with(tmp_path, Event=[{"name": "at", "type": field_type}])
    topology = (
        TopologyBuilder("t", version="1")
        .source(
            name="e", topic="e", schema="test.Event", event_time="at", max_out_of_orderness="1s"
        )
        .to(topic="out", schema="test.Event")
    )
    if ok:
        check_topology(topology, store)
    else:
        assert "sources[0].event_time: event time field 'at' is " in problems(topology, store)[0]


@pytest.mark.parametrize(
    ("aggregate", "sink_type"),
    [
        ("count()", "long"),
        ("count()", "double"),
        ("sum(amount)", "double"),
        ("avg(amount)", "double"),
        ("min(amount)", "double"),
        ("max(created_at)", MILLIS),
        ("min(status)", "string"),
        ("first(order_id)", "string"),
        ("last(country)", ["null", "string"]),
    ],
)
def test_fitting_aggregate_outputs_pass(tmp_path: Path, aggregate: str, sink_type: Any) -> None:
    store = store_with(tmp_path, Out=sink_fields(x=sink_type))
    check_topology(windowed({"x": aggregate}, "test.Out"), store)


@pytest.mark.parametrize(
    ("aggregate", "sink_type", "message"),
    [
        ("count()", "string", "count() gives long, but test.Out field 'x' is string"),
        ("count()", "int", "count() gives long, but test.Out field 'x' is int"),
        ("avg(amount)", "long", "avg(amount) gives double, but test.Out field 'x' is long"),
        ("sum(amount)", "long", "sum(amount) gives double, but test.Out field 'x' is long"),
        ("first(order_id)", "long", "first(order_id) gives string, but test.Out field 'x' is long"),
        ("sum(created_at)", "long", "sum(created_at) needs a number, but 'created_at' is long"),
        ("avg(status)", "double", "avg(status) needs a number, but 'status' is string"),
        ("sum(nothing)", "double", "unknown field 'nothing' (input of sum(nothing))"),
    ],
)
def test_unfitting_aggregates_name_stage_and_field(
    tmp_path: Path, aggregate: str, sink_type: Any, message: str
) -> None:
    store = store_with(tmp_path, Out=sink_fields(x=sink_type))
    (line,) = problems(windowed({"x": aggregate}, "test.Out"), store)
    assert f"stages[1].window.aggregate.x: {message}" in line


def test_sum_of_integers_is_a_long(tmp_path: Path) -> None:
    store = store_with(
        tmp_path,
        Counted=[
            {"name": "k", "type": "string"},
            {"name": "n", "type": "int"},
            {"name": "at", "type": MILLIS},
        ],
        Out=sink_fields(key="k", total="long", low="long", flag="boolean"),
    )
    topology = (
        TopologyBuilder("t", version="1")
        .source(
            name="c", topic="c", schema="test.Counted", event_time="at", max_out_of_orderness="0s"
        )
        .key_by("k")
        .window(
            session={"gap": "5m"}, aggregate={"total": "sum(n)", "low": "min(n)", "flag": "count()"}
        )
        .to(topic="out", schema="test.Out")
    )
    (line,) = problems(topology, store)
    assert "stages[1].window.aggregate.flag: count() gives long, but test.Out field 'flag'" in line


def test_min_and_max_refuse_booleans(tmp_path: Path) -> None:
    store = store_with(
        tmp_path,
        Flagged=[
            {"name": "k", "type": "string"},
            {"name": "b", "type": "boolean"},
            {"name": "at", "type": "long"},
        ],
        Out=sink_fields(key="k", top="boolean"),
    )
    topology = (
        TopologyBuilder("t", version="1")
        .source(
            name="f", topic="f", schema="test.Flagged", event_time="at", max_out_of_orderness="0s"
        )
        .key_by("k")
        .window(tumbling="1m", aggregate={"top": "max(b)"})
        .to(topic="out", schema="test.Out")
    )
    assert (
        "max(b) needs a number, string or timestamp, but 'b' is boolean"
        in problems(topology, store)[0]
    )


def test_the_sink_needs_the_key_field(tmp_path: Path) -> None:
    store = store_with(tmp_path, Out=sink_fields(key="customer", n="long"))
    first, second = problems(windowed({"n": "count()"}, "test.Out"), store)
    assert "stages[0].key_by: test.Out has no field 'customer_id' for the key" in first
    assert "sink.schema: test.Out field 'customer' (string, no default) is not produced" in second


def test_a_computed_key_is_named_by_its_name(tmp_path: Path) -> None:
    store = store_with(tmp_path, Out=sink_fields(key="region", n="long"))
    key = {"name": "region", "expr": "country + '/' + currency"}
    checked = check_topology(windowed({"n": "count()"}, "test.Out", key=key), store)
    assert (
        checked.expressions[0]["key_by"].evaluate({"country": "DE", "currency": "EUR"}) == "DE/EUR"
    )


def test_a_computed_key_must_fit_the_sink_key_field(tmp_path: Path) -> None:
    sink = sink_fields(key="region", n="long")
    sink[0]["type"] = "long"
    store = store_with(tmp_path, Out=sink)
    key = {"name": "region", "expr": "country + '/' + currency"}
    (line,) = problems(windowed({"n": "count()"}, "test.Out", key=key), store)
    assert (
        "stages[0].key_by.name: the key gives string, but test.Out field 'region' is long" in line
    )


def test_window_bounds_must_be_millisecond_longs(tmp_path: Path) -> None:
    sink = sink_fields(n="long")
    sink[1]["type"] = "string"
    store = store_with(tmp_path, Out=sink)
    (line,) = problems(windowed({"n": "count()"}, "test.Out"), store)
    assert (
        "sink.schema: test.Out field 'window_start' is string; expected long timestamp-millis"
        in line
    )


def test_sink_fields_the_window_does_not_write_need_a_default(tmp_path: Path) -> None:
    sink = [*sink_fields(n="long"), {"name": "note", "type": "string"}]
    store = store_with(tmp_path, Out=sink)
    (line,) = problems(windowed({"n": "count()"}, "test.Out"), store)
    assert (
        "sink.schema: test.Out field 'note' (string, no default) is not produced by the window"
        in line
    )


def stateless(sink: str, *stages: tuple[str, Any]) -> Topology:
    builder = TopologyBuilder("t", version="1").source(
        name="orders",
        topic="orders",
        schema="com.example.Order",
        event_time="created_at",
        max_out_of_orderness="1s",
    )
    for method, argument in stages:
        getattr(builder, method)(argument)
    return builder.to(topic="out", schema=sink)


def test_stateless_records_must_fit_the_sink(tmp_path: Path) -> None:
    store = store_with(
        tmp_path,
        Slim=[
            {"name": "order_id", "type": "string"},
            {"name": "amount", "type": ["null", "double"]},
            {"name": "note", "type": "string", "default": ""},
        ],
        Wrong=[{"name": "amount", "type": "long"}, {"name": "extra", "type": "string"}],
    )
    check_topology(stateless("test.Slim", ("filter", "amount > 0.0")), store)
    lines = problems(stateless("test.Wrong"), store)
    assert lines == [
        "topology 't': sink.schema: test.Wrong field 'amount' is long, but com.example.Order "
        "gives double",
        "topology 't': sink.schema: test.Wrong field 'extra' (string, no default) is not in "
        "com.example.Order, which reaches the sink unchanged; add a map stage or a default",
    ]


def test_a_map_defers_the_sink_fit_to_run_time(store: SchemaStore) -> None:
    topology = stateless("com.example.PaidOrder", ("map", "examples.orders:to_eur"))
    assert isinstance(check_topology(topology, store), CheckedTopology)


def test_a_python_callable_is_kept_as_the_map_function(store: SchemaStore) -> None:
    def keep(record: dict[str, Any]) -> dict[str, Any]:
        return record

    checked = check_topology(stateless("com.example.Order", ("map", keep)), store)
    assert checked.map_callables == {0: keep}


def test_a_map_function_must_take_one_record(store: SchemaStore) -> None:
    def two(a: Any, b: Any) -> None:
        return None

    (line,) = problems(stateless("com.example.Order", ("map", two)), store)
    assert "stages[0].map: " in line and "must take one argument, the record dict" in line


@pytest.mark.parametrize(
    ("reference", "message"),
    [
        ("examples.orders:nothing", "examples.orders has no 'nothing'"),
        (
            "examples.orders:RATES_TO_EUR",
            "'examples.orders:RATES_TO_EUR' is a dict, not a function",
        ),
        ("no_such_module_xyz:f", "no module named 'no_such_module_xyz'"),
    ],
)
def test_map_references_must_import_a_callable(
    store: SchemaStore, reference: str, message: str
) -> None:
    (line,) = problems(stateless("com.example.Order", ("map", reference)), store)
    assert "stages[0].map: " in line and message in line


def test_validation_rules_are_checked_one_by_one(store: SchemaStore) -> None:
    rules = [{"name": "ok", "expr": "amount > 0.0"}, {"name": "bad", "expr": "amount + 1 > 0"}]
    (line,) = problems(stateless("com.example.Order", ("validate", rules)), store)
    assert "stages[0].validate.rules[1].expr: 'amount + 1 > 0': type error" in line


def test_partitioned_by_must_be_a_field(tmp_path: Path, store: SchemaStore) -> None:
    topology = (
        TopologyBuilder("t", version="1")
        .source(
            name="orders",
            topic="orders",
            schema="com.example.Order",
            event_time="created_at",
            max_out_of_orderness="1s",
            partitioned_by="customer",
        )
        .to(topic="out", schema="com.example.Order")
    )
    assert "sources[0].partitioned_by: unknown field 'customer'" in problems(topology, store)[0]


def test_type_errors_point_at_file_lines(tmp_path: Path, store: SchemaStore) -> None:
    text = (PROJECT / "topologies" / "revenue-per-minute.yaml").read_text()
    path = tmp_path / "topologies" / "r.yaml"
    path.parent.mkdir()
    path.write_text(text.replace("status == 'PAID'", "stauts == 'PAID'"))
    line_number = next(i for i, line in enumerate(text.splitlines(), 1) if "- filter:" in line)
    (line,) = problems(load_topology(path), store)
    assert line.startswith(f"{path}:{line_number}: stages[1].filter: unknown field 'stauts'")
