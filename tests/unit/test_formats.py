"""The `json` and `confluent-avro` formats without Kafka: codecs, dead letters with JSON paths,
several formats on one source, and the compatibility reasons."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest
from fastavro import schemaless_writer

from streamline import headers as h
from streamline.serde import DecodeError, SchemaStore
from streamline.serde.codec import EncodeError
from streamline.serde.compatibility import first_incompatibility
from streamline.serde.formats import (
    AnyOfCodec,
    ConfluentAvroCodec,
    codec_for,
    subject_name,
)
from streamline.serde.json_codec import JsonCodec
from streamline.testing import TopologyDriver
from streamline.topology.builder import Topology

ROOT = Path(__file__).resolve().parents[2]
STORE = SchemaStore(ROOT / "schemas")
ORDER = STORE.get("com.example.Order")


def order(i: int, **changes: Any) -> dict[str, Any]:
    return {
        "order_id": f"o{i}",
        "customer_id": f"c{i % 3}",
        "amount": 10.0 + i,
        "currency": "EUR",
        "status": "PAID",
        "country": "DE",
        "created_at": 1_700_000_000_000 + i,
        **changes,
    }


def nested_store(tmp_path: Path) -> SchemaStore:
    (tmp_path / "basket.avsc").write_text(
        json.dumps(
            {
                "type": "record",
                "name": "Basket",
                "namespace": "t",
                "fields": [
                    {"name": "id", "type": "string"},
                    {
                        "name": "items",
                        "type": {
                            "type": "array",
                            "items": {
                                "type": "record",
                                "name": "Item",
                                "fields": [
                                    {"name": "sku", "type": "string"},
                                    {"name": "price", "type": "double"},
                                    {
                                        "name": "total",
                                        "type": [
                                            "null",
                                            {
                                                "type": "bytes",
                                                "logicalType": "decimal",
                                                "precision": 10,
                                                "scale": 2,
                                            },
                                        ],
                                        "default": None,
                                    },
                                ],
                            },
                        },
                    },
                    {"name": "tags", "type": {"type": "map", "values": "int"}, "default": {}},
                    {
                        "name": "kind",
                        "type": {"type": "enum", "name": "Kind", "symbols": ["A", "B"]},
                    },
                    {"name": "note", "type": ["null", "string"]},
                ],
            }
        )
    )
    return SchemaStore(tmp_path)


def test_json_reads_timestamps_as_iso_or_epoch_and_fills_defaults() -> None:
    codec = JsonCodec(ORDER)
    raw = order(1)
    del raw["country"]
    raw["created_at"] = "2023-11-14T22:13:20.001Z"
    got = codec.decode(json.dumps(raw).encode())
    assert got == order(1)
    assert codec.decode(json.dumps(order(2)).encode()) == order(2)
    assert codec.decode(codec.encode(order(3))) == order(3)


@pytest.mark.parametrize(
    ("value", "reason"),
    [
        (
            {
                "items": [
                    {"sku": "a", "price": 1},
                    {"sku": "b", "price": 2},
                    {"sku": "c", "price": "x"},
                ]
            },
            "$.items[2].price: expected number, got string",
        ),
        ({"items": [{"price": 1}]}, "$.items[0].sku: missing required field"),
        ({"items": [], "kind": "C"}, "$.kind: expected one of A, B"),
        ({"items": [], "tags": {"x": 1.5}}, '$.tags["x"]: expected integer, got number'),
        (
            {"items": [{"sku": "a", "price": 1, "total": "1.234"}]},
            "$.items[0].total: expected a decimal with at most 2 decimal places",
        ),
        ({"items": [], "note": 3}, "$.note: expected string, got number"),
        ({"items": {}}, "$.items: expected array, got object"),
    ],
)
def test_json_dead_letter_reason_names_the_json_path(
    tmp_path: Path, value: dict[str, Any], reason: str
) -> None:
    codec = JsonCodec(nested_store(tmp_path).get("t.Basket"))
    with pytest.raises(DecodeError) as caught:
        codec.decode(json.dumps({"id": "b", "kind": "A", **value}).encode())
    assert str(caught.value) == reason
    assert caught.value.kind == "decode"


def test_json_decimals_from_strings_or_numbers_and_back(tmp_path: Path) -> None:
    codec = JsonCodec(nested_store(tmp_path).get("t.Basket"))
    items = [{"sku": "a", "price": 1, "total": "12.30"}, {"sku": "b", "price": 2.5, "total": -0.5}]
    got = codec.decode(json.dumps({"id": "b", "kind": "B", "items": items}).encode())
    assert [i["total"] for i in got["items"]] == [(1230).to_bytes(2, "big"), b"\xce"]
    assert got["items"][0]["price"] == 1.0 and got["tags"] == {} and got["note"] is None


def test_json_refuses_what_is_not_a_json_object() -> None:
    codec = JsonCodec(ORDER)
    with pytest.raises(DecodeError, match="not valid JSON"):
        codec.decode(b"{nope")
    with pytest.raises(DecodeError, match=r"^\$: expected object, got array"):
        codec.decode(b"[1]")


class FakeIds:
    """Writer schemas by id, as a registry would answer (the registry itself is tested
    against a real server in the integration tests)."""

    def __init__(self, schemas: dict[int, Any]) -> None:
        self.schemas = schemas
        self.asked: list[int] = []

    def writer_schema(self, schema_id: int) -> Any:
        self.asked.append(schema_id)
        if schema_id not in self.schemas:
            raise DecodeError(f"unknown schema id {schema_id}", "schema")
        return self.schemas[schema_id]


def confluent_bytes(schema_id: int, definition: Any, record: dict[str, Any]) -> bytes:
    from io import BytesIO

    import fastavro

    out = BytesIO()
    out.write(b"\x00" + schema_id.to_bytes(4, "big"))
    schemaless_writer(out, fastavro.parse_schema(definition), record)
    return out.getvalue()


def test_confluent_avro_reads_writers_by_id_once_each_with_resolution() -> None:
    v1 = {k: v for k, v in ORDER.definition.items()}
    v1["fields"] = [f for f in ORDER.definition["fields"] if f["name"] != "country"]
    ids = FakeIds({7: ORDER.definition, 8: v1})
    codec = ConfluentAvroCodec(ORDER, ids)
    same = confluent_bytes(7, ORDER.definition, order(1))
    old = {k: v for k, v in order(2).items() if k != "country"}
    for _ in range(3):
        assert codec.decode(same) == order(1)
        assert codec.decode(confluent_bytes(8, v1, old)) == order(2)  # country's default
    assert ids.asked == [7, 8]
    for _ in range(2):
        with pytest.raises(DecodeError) as caught:
            codec.decode(confluent_bytes(9, ORDER.definition, order(1)))
        assert caught.value.kind == "schema" and "9" in str(caught.value)
    assert ids.asked == [7, 8, 9]  # an unknown id is asked for once
    with pytest.raises(DecodeError, match="not Confluent Avro"):
        codec.decode(b"\xc3\x01abcdefgh")


def test_confluent_avro_writes_the_header_of_its_id() -> None:
    codec = ConfluentAvroCodec(ORDER, FakeIds({}), schema_id=258)
    data = codec.encode(order(1))
    assert data[:5] == b"\x00\x00\x00\x01\x02"
    assert ConfluentAvroCodec(ORDER, FakeIds({258: ORDER.definition})).decode(data) == order(1)


def test_confluent_avro_unchecked_write_of_a_bad_record_names_the_field_as_avro_does() -> None:
    # one encoder for both framings: the unchecked path says which field, for either
    bad = order(1, amount="ten")
    confluent = ConfluentAvroCodec(ORDER, FakeIds({}), schema_id=258)
    single = codec_for("avro", STORE, ORDER)
    for codec in (confluent, single):
        with pytest.raises(
            EncodeError, match=r"^field com\.example\.Order\.amount: 'ten' is not a valid double$"
        ):
            codec.encode(bad, check=False)
    with pytest.raises(EncodeError, match="not registered"):
        ConfluentAvroCodec(ORDER, FakeIds({})).encode(order(1))


def test_a_source_of_several_formats_tells_them_apart_by_first_byte() -> None:
    codec = codec_for(
        ["confluent-avro", "avro", "json"], STORE, ORDER, FakeIds({1: ORDER.definition})
    )
    assert isinstance(codec, AnyOfCodec)
    avro = codec_for("avro", STORE, ORDER).encode(order(1))
    assert codec.decode(avro) == order(1)
    assert codec.decode(confluent_bytes(1, ORDER.definition, order(2))) == order(2)
    assert codec.decode(json.dumps(order(3)).encode()) == order(3)
    only_avro = codec_for(["avro", "confluent-avro"], STORE, ORDER, FakeIds({}))
    with pytest.raises(
        DecodeError, match=r"not in any of the source's formats \(avro, confluent-avro\)"
    ):
        only_avro.decode(b'{"a": 1}')


def test_subject_names_by_strategy() -> None:
    assert subject_name("topic", "orders", "com.example.Order") == "orders-value"
    assert subject_name("record", "orders", "com.example.Order") == "com.example.Order"
    assert subject_name("topic-record", "orders", "com.example.Order") == "orders-com.example.Order"


def test_compatibility_reasons_name_the_field() -> None:
    old = {"type": "record", "name": "R", "fields": [{"name": "a", "type": "int"}]}
    added = {**old, "fields": [*old["fields"], {"name": "b", "type": "string"}]}
    defaulted = {**old, "fields": [*old["fields"], {"name": "b", "type": "string", "default": ""}]}
    retyped = {**old, "fields": [{"name": "a", "type": "string"}]}
    widened = {**old, "fields": [{"name": "a", "type": "long"}]}
    assert first_incompatibility(old, added, "BACKWARD") == "field b was added without a default"
    assert first_incompatibility(old, defaulted, "BACKWARD") is None
    assert (
        first_incompatibility(old, retyped, "BACKWARD") == "field a changed type from int to string"
    )
    assert first_incompatibility(old, widened, "BACKWARD") is None
    assert first_incompatibility(old, widened, "FORWARD") == "field a changed type from int to long"
    assert first_incompatibility(old, added, "NONE") is None


def json_topology(sink_format: str = "json") -> Any:
    return (
        Topology("json-orders", version="1")
        .source(
            name="orders",
            topic="orders",
            schema="com.example.Order",
            event_time="created_at",
            max_out_of_orderness="5s",
            format="json",
        )
        .validate({"amount_positive": "amount > 0.0"})
        .to(topic="orders-out", schema="com.example.Order", format=sink_format)
    )


def test_a_json_topology_processes_valid_values_and_dead_letters_invalid_ones() -> None:
    n = 300
    invalid = {i for i in range(n) if i % 100 == 37}  # 1%
    with TopologyDriver(json_topology(), STORE) as driver:
        raw = []
        for i in range(n):
            value: dict[str, Any] = order(i)
            if i in invalid:
                value["amount"] = "lots"
            raw.append(json.dumps(value).encode())
        driver.pipe("orders", raw)
        driver.commit()
        values = [r.value for r in driver.output()]
        assert values == [order(i) for i in range(n) if i not in invalid]
        dead = driver.dead_letters()
        assert len(dead) == len(invalid)
        for letter in dead:
            assert letter.header(h.ERROR_TYPE) == b"decode"
            assert letter.header(h.ERROR_MESSAGE) == b"$.amount: expected number, got string"


def test_a_json_sink_writes_plain_json() -> None:
    topology = json_topology()
    with TopologyDriver(topology, STORE) as driver:
        driver.pipe("orders", [json.dumps(order(1)).encode()])
        driver.commit()
        [entry] = driver.topics.visible("orders-out")
        assert json.loads(entry.value or b"") == order(1)


def test_registry_settings_come_from_the_environment_and_secrets_are_masked() -> None:
    from streamline.kafka.redaction import redact
    from streamline.kafka.registry import registry_settings

    env = {
        "STREAMLINE_SCHEMA_REGISTRY_URL": "https://sr.example:8081",
        "STREAMLINE_SCHEMA_REGISTRY_BASIC_AUTH_USER_INFO": "svc:hunter2-secret",
        "STREAMLINE_SCHEMA_REGISTRY_SSL_CA_LOCATION": "/etc/ca.pem",
        "STREAMLINE_KAFKA_SASL_USERNAME": "not-a-registry-setting",
    }
    assert registry_settings(None, env) == {
        "url": "https://sr.example:8081",
        "basic.auth.user.info": "svc:hunter2-secret",
        "ssl.ca.location": "/etc/ca.pem",
    }
    assert registry_settings("http://other:1", env)["url"] == "http://other:1"  # the flag wins
    assert registry_settings(None, {}) is None
    assert redact("401 for svc:hunter2-secret") == "401 for ***"


def test_a_confluent_avro_sink_without_a_registry_is_a_usage_error() -> None:
    from streamline.errors import UsageError

    with pytest.raises(UsageError, match="needs a schema registry"):
        TopologyDriver(json_topology("confluent-avro"), STORE)


def test_a_table_in_json_is_read_with_the_json_codec(tmp_path: Path) -> None:
    import yaml

    from streamline.runtime.record import Record
    from streamline.runtime.table_operator import TablePartition
    from streamline.runtime.tables import table_state
    from streamline.topology import Topology as TopologyModel
    from streamline.topology import check_topology

    data = yaml.safe_load((ROOT / "topologies" / "orders-enriched.yaml").read_text())
    data["tables"][0]["format"] = "json"
    checked = check_topology(TopologyModel.model_validate(data), STORE)
    state = table_state(checked, STORE, tmp_path)
    [settings] = [state.settings[name] for name in state.settings]
    assert isinstance(settings.codec, JsonCodec)
    row = {"customer_id": "c-1", "segment": "gold", "country": "DE", "updated_at": 1_000}
    record = Record(settings.topic, 0, 0, b"c-1", json.dumps(row).encode(), None)
    record.event_time = 1_000
    partition = TablePartition(settings, 0)
    failures: list[Any] = []
    partition.apply([record], failures)
    assert failures == []
    assert partition.lookup("c-1", 2_000)["segment"] == "gold"  # type: ignore[index]
    partition.close()
