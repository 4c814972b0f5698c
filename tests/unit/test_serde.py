"""The schema store and the single-object wire format, without Kafka."""

from __future__ import annotations

import json
import struct
from pathlib import Path

import pytest

from streamline.serde import AvroCodec, DecodeError, EncodeError, SchemaError, SchemaStore
from streamline.serde.schema_store import crc64_avro_fingerprint

ROOT = Path(__file__).resolve().parents[2]
FIXTURES = ROOT / "tests" / "fixtures" / "schemas" / "evolution"

# CRC-64-AVRO fingerprints of the primitive schemas, as signed 64-bit longs, from the Avro
# specification's test vectors (share/test/data/schema-tests.txt).
SPEC_VECTORS = {
    '"null"': 7195948357588979594,
    '"boolean"': -6970731678124411036,
    '"int"': 8247732601305521295,
    '"long"': -3434872931120570953,
    '"float"': 5583340709985441680,
    '"double"': -8181574048448539266,
    '"bytes"': 5746618253357095269,
    '"string"': -8142146995180207161,
}

ORDER = {
    "order_id": "o-1",
    "customer_id": "c-1",
    "amount": 12.5,
    "currency": "EUR",
    "status": "PAID",
    "country": "DE",
    "created_at": 1767225600000,
}


@pytest.fixture(scope="module")
def store() -> SchemaStore:
    return SchemaStore(ROOT / "schemas")


@pytest.mark.parametrize(("canonical", "expected"), SPEC_VECTORS.items())
def test_fingerprint_matches_the_avro_specification(canonical: str, expected: int) -> None:
    fingerprint = crc64_avro_fingerprint(canonical)
    assert struct.unpack("<q", fingerprint)[0] == expected


def test_encoding_is_marker_then_little_endian_fingerprint_then_body(store: SchemaStore) -> None:
    schema = store.get("com.example.Order")
    data = AvroCodec(store, schema).encode(ORDER)
    assert data[:2] == b"\xc3\x01"
    assert data[2:10] == schema.fingerprint
    assert data[10:13] == b"\x06o-"  # zig-zag length 3, then the order id


def test_record_round_trips(store: SchemaStore) -> None:
    codec = AvroCodec(store, store.get("com.example.Order"))
    assert codec.decode(codec.encode(ORDER)) == ORDER


def test_named_types_defined_in_another_file_resolve(store: SchemaStore) -> None:
    reading = store.get("com.example.sensors.Reading")
    codec = AvroCodec(store, reading)
    record = {
        "sensor_id": "s-1",
        "temperature": 21.5,
        "humidity": None,
        "location": {"site": "plant-a", "floor": 2},
        "measured_at": 1,
    }
    assert codec.decode(codec.encode(record)) == record
    assert '"name":"com.example.sensors.Location"' in reading.canonical_form


def test_type_referenced_across_files(tmp_path: Path) -> None:
    (tmp_path / "a.avsc").write_text(
        json.dumps(
            {
                "type": "record",
                "name": "Outer",
                "namespace": "x.y",
                "fields": [{"name": "inner", "type": "Inner"}],
            }
        )
    )
    (tmp_path / "b.avsc").write_text(
        json.dumps(
            {
                "type": "record",
                "name": "Inner",
                "namespace": "x.y",
                "fields": [{"name": "n", "type": "int"}],
            }
        )
    )
    store = SchemaStore(tmp_path)
    codec = AvroCodec(store, store.get("x.y.Outer"))
    assert codec.decode(codec.encode({"inner": {"n": 5}})) == {"inner": {"n": 5}}


def test_v1_record_read_with_v2_fills_added_fields_with_defaults() -> None:
    v1 = SchemaStore(FIXTURES / "v1")
    v2 = SchemaStore(FIXTURES / "v2")  # v1 kept under previous/
    data = AvroCodec(v1, v1.get("com.test.User")).encode({"id": "u", "age": 30, "nickname": "x"})
    record = AvroCodec(v2, v2.get("com.test.User")).decode(data)
    assert record == {"id": "u", "age": 30, "email": None, "plan": "free"}


def test_v2_record_read_with_v1_drops_added_fields_and_defaults_removed_ones() -> None:
    v2 = SchemaStore(FIXTURES / "v2")
    v1 = SchemaStore(FIXTURES / "v1-reader")  # v1 current, v2 under previous/
    data = AvroCodec(v2, v2.get("com.test.User")).encode(
        {"id": "u", "age": 30, "email": "a@b", "plan": "pro"}
    )
    assert AvroCodec(v1, v1.get("com.test.User")).decode(data) == {
        "id": "u",
        "age": 30,
        "nickname": "none",
    }


def test_incompatible_change_is_a_schema_error_not_a_crash() -> None:
    v1 = SchemaStore(FIXTURES / "v1-reader")  # knows the v2 with a long age under previous/
    writer = SchemaStore(FIXTURES / "v2-long")
    data = AvroCodec(writer, writer.get("com.test.User")).encode(
        {"id": "u", "age": 2**40, "email": None, "plan": "p"}
    )
    with pytest.raises(DecodeError, match="schema resolution") as info:
        AvroCodec(v1, v1.get("com.test.User")).decode(data)
    assert info.value.kind == "schema"


def test_schemas_under_previous_are_not_known_by_name() -> None:
    v2 = SchemaStore(FIXTURES / "v2")
    assert v2.names() == ["com.test.User"]
    assert '"plan"' in v2.get("com.test.User").canonical_form


def test_bytes_without_marker_are_not_single_object_encoded(store: SchemaStore) -> None:
    codec = AvroCodec(store, store.get("com.example.Order"))
    with pytest.raises(DecodeError, match="not single-object encoded") as info:
        codec.decode(b"hello, this is not avro")
    assert info.value.kind == "decode"


def test_unknown_fingerprint_is_a_schema_error(store: SchemaStore) -> None:
    codec = AvroCodec(store, store.get("com.example.Order"))
    with pytest.raises(DecodeError, match="unknown fingerprint 0102030405060708") as info:
        codec.decode(b"\xc3\x01\x01\x02\x03\x04\x05\x06\x07\x08\x00")
    assert info.value.kind == "schema"


def test_truncated_record(store: SchemaStore) -> None:
    codec = AvroCodec(store, store.get("com.example.Order"))
    data = codec.encode(ORDER)
    with pytest.raises(DecodeError, match="truncated record"):
        codec.decode(data[:-4])


def test_trailing_bytes_are_corruption(store: SchemaStore) -> None:
    codec = AvroCodec(store, store.get("com.example.Order"))
    with pytest.raises(DecodeError, match="trailing bytes"):
        codec.decode(codec.encode(ORDER) + b"\x00\x00")


def test_unknown_schema_names_the_known_ones(store: SchemaStore) -> None:
    with pytest.raises(
        SchemaError, match=r"unknown schema com\.x\.Y; known: .*com\.example\.Order"
    ):
        store.get("com.x.Y")


def test_encoding_an_invalid_record_names_the_field(store: SchemaStore) -> None:
    codec = AvroCodec(store, store.get("com.example.Order"))
    with pytest.raises(EncodeError, match="amount"):
        codec.encode({**ORDER, "amount": "twelve"})


def test_missing_schema_folder_says_how_to_give_one(tmp_path: Path) -> None:
    with pytest.raises(SchemaError, match="--schemas"):
        SchemaStore(tmp_path / "nope")


def test_malformed_schema_file_is_named(tmp_path: Path) -> None:
    (tmp_path / "bad.avsc").write_text("{not json")
    with pytest.raises(SchemaError, match=r"bad\.avsc: not a JSON Avro schema"):
        SchemaStore(tmp_path)


def test_reference_to_undefined_type_is_named(tmp_path: Path) -> None:
    (tmp_path / "a.avsc").write_text(
        json.dumps({"type": "record", "name": "A", "fields": [{"name": "b", "type": "Missing"}]})
    )
    with pytest.raises(SchemaError, match="unknown type Missing"):
        SchemaStore(tmp_path)


def test_type_defined_twice_is_an_error(tmp_path: Path) -> None:
    schema = json.dumps({"type": "record", "name": "A", "fields": []})
    (tmp_path / "a.avsc").write_text(schema)
    (tmp_path / "b.avsc").write_text(schema)
    with pytest.raises(SchemaError, match="defined twice"):
        SchemaStore(tmp_path)
