"""Request bodies become encoded records, or per-record errors with field paths: all or nothing."""

from __future__ import annotations

import json

from streamline.ingest.body import Encoded, RecordError, body_format, parse_body
from streamline.serde import AvroCodec, SchemaStore
from tests.helpers import ROOT

STORE = SchemaStore(ROOT / "schemas")
ORDER = STORE.get("com.example.Order")
CODEC = AvroCodec(STORE, ORDER)
GOOD = {
    "order_id": "o-1",
    "customer_id": "c-1",
    "amount": 3.5,
    "currency": "EUR",
    "status": "PAID",
    "created_at": "2026-01-01T00:00:00Z",
}


def _parse(body: bytes, fmt: str = "json", key_field: str | None = None):  # type: ignore[no-untyped-def]
    return parse_body(body, fmt, ORDER, CODEC, key_field)


def test_a_json_array_is_encoded_in_order_with_keys_from_the_key_field() -> None:
    second = dict(GOOD, order_id="o-2", customer_id="c-2")
    parsed = _parse(json.dumps([GOOD, second]).encode(), key_field="customer_id")
    assert isinstance(parsed, Encoded)
    assert [k for k, _ in parsed.records] == [b"c-1", b"c-2"]
    assert CODEC.decode(parsed.records[1][1])["order_id"] == "o-2"
    assert CODEC.decode(parsed.records[0][1])["created_at"] == 1767225600000


def test_one_bad_record_refuses_the_body_with_every_error_by_index_and_field() -> None:
    bad = {k: v for k, v in GOOD.items() if k != "currency"} | {"amount": "lots"}
    body = "\n".join(json.dumps(r) for r in [GOOD, bad, GOOD]).encode()
    assert _parse(body, "jsonl") == [
        RecordError(1, "amount", "'lots' is not a valid double"),
        RecordError(1, "currency", "missing"),
    ]


def test_json_lines_that_do_not_parse_are_named_by_index() -> None:
    body = (json.dumps(GOOD) + "\n{nope\n[1]\n").encode()
    errors = _parse(body, "jsonl")
    assert [(e.index, e.field) for e in errors] == [(1, ""), (2, "")]  # type: ignore[union-attr]
    assert errors[0].reason.startswith("not valid JSON")  # type: ignore[index]
    assert errors[1].reason == "expected a JSON object"  # type: ignore[index]


def test_csv_cells_are_converted_and_a_bad_cell_names_its_column() -> None:
    header = "order_id,customer_id,amount,currency,status,created_at\n"
    good = "o-1,c-1,2.5,EUR,PAID,2026-01-01T00:00:00Z\n"
    assert isinstance(_parse((header + good).encode(), "csv"), Encoded)
    errors = _parse((header + good + "o-2,c-2,cheap,EUR,PAID,1\n").encode(), "csv")
    assert errors == [RecordError(1, "amount", "'cheap' is not a valid double")]


def test_an_invalid_timestamp_and_an_empty_body_are_refused() -> None:
    assert _parse(json.dumps(dict(GOOD, created_at="yesterday")).encode()) == [
        RecordError(0, "created_at", "'yesterday' is not an ISO-8601 timestamp")
    ]
    assert _parse(b"") == [RecordError(0, "", "not valid JSON: Expecting value at line 1 column 1")]
    assert _parse(b"\n\n", "jsonl") == [RecordError(0, "", "the body holds no records")]


def test_a_union_field_error_names_every_branch() -> None:
    click = STORE.get("com.example.clicks.Click")
    record = {"user_id": "u", "url": "/", "device": "PHONE", "referrer": 3, "ts": 1}
    assert parse_body(
        json.dumps(record).encode(), "json", click, AvroCodec(STORE, click), None
    ) == [
        RecordError(0, "device", "'PHONE' is not a valid com.example.clicks.Device"),
        RecordError(0, "referrer", "3 is not a valid null or string"),
    ]


def test_the_content_type_chooses_the_format_else_the_default() -> None:
    assert body_format("application/x-ndjson; charset=utf-8", "json") == "jsonl"
    assert body_format("text/csv", "json") == "csv"
    assert body_format("text/plain", "csv") == "csv"
    assert body_format(None, "jsonl") == "jsonl"
