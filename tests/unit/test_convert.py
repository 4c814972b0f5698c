"""Input conversion for `produce`: CSV cells and ISO timestamps into Avro values."""

from __future__ import annotations

from pathlib import Path

import pytest

from streamline.serde import SchemaStore
from streamline.serde.convert import convert_csv_row, convert_json_record, parse_timestamp_ms

ROOT = Path(__file__).resolve().parents[2]


@pytest.fixture(scope="module")
def store() -> SchemaStore:
    return SchemaStore(ROOT / "schemas")


def test_iso_timestamps_become_epoch_millis() -> None:
    assert parse_timestamp_ms("2026-01-01T00:00:01Z") == 1767225601000
    assert parse_timestamp_ms("2026-01-01T01:00:01.500+01:00") == 1767225601500
    assert parse_timestamp_ms("2026-01-01T00:00:00") == 1767225600000


def test_csv_row_takes_the_schema_types(store: SchemaStore) -> None:
    row = {
        "order_id": "o",
        "customer_id": "c",
        "amount": "12.5",
        "currency": "EUR",
        "status": "PAID",
        "country": "DE",
        "created_at": "2026-01-01T00:00:01Z",
    }
    assert convert_csv_row(row, store.get("com.example.Order")) == {
        **row,
        "amount": 12.5,
        "created_at": 1767225601000,
    }


def test_csv_cell_of_wrong_type_names_field(store: SchemaStore) -> None:
    row = {"order_id": "o", "amount": "lots"}
    with pytest.raises(ValueError, match="field amount: 'lots' is not a valid double"):
        convert_csv_row(row, store.get("com.example.Order"))


def test_csv_unknown_column_is_rejected(store: SchemaStore) -> None:
    with pytest.raises(ValueError, match="column 'colour'"):
        convert_csv_row({"colour": "red"}, store.get("com.example.Order"))


def test_json_timestamp_string_is_converted(store: SchemaStore) -> None:
    record = convert_json_record(
        {"created_at": "2026-01-01T00:00:01Z"}, store.get("com.example.Order")
    )
    assert record["created_at"] == 1767225601000


def test_json_bad_timestamp_names_field(store: SchemaStore) -> None:
    with pytest.raises(ValueError, match="created_at"):
        convert_json_record({"created_at": "yesterday"}, store.get("com.example.Order"))
