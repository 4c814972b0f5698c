"""`streamline schema infer`: a draft schema that is valid Avro and reads the data it came from."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

from typer.testing import CliRunner

from streamline.cli import app
from streamline.errors import UsageError
from streamline.serde import SchemaStore
from streamline.serde.infer import infer_schema
from streamline.serde.json_codec import JsonCodec

TS = {"type": "long", "logicalType": "timestamp-millis"}
ROWS: list[dict[str, Any]] = [
    {"id": 1, "at": "2026-01-01T10:00:00Z", "price": 1, "tags": ["a"], "addr": {"city": "X"}},
    {"id": 2, "at": "2026-01-02 10:00:00", "price": 2.5, "tags": [], "addr": {"city": "Y", "zip": "1"},
     "note": None, "created_at": 1767225600001, "day": "2026-01-02", "count": 3, "mixed": "x"},
    {"id": 3, "at": "2026-01-03T10:00:00+01:00", "price": 3, "tags": ["b", "c"], "addr": {"city": "Z"},
     "created_at": 1767225600002, "day": "2026-01-03", "count": 5, "mixed": 4},
]  # fmt: skip


def fields(schema: dict[str, Any]) -> dict[str, Any]:
    return {f["name"]: f["type"] for f in schema["fields"]}


def test_types_nullability_and_timestamps() -> None:
    schema = infer_schema(ROWS, "Sample", "com.example")
    assert schema["name"] == "Sample" and schema["namespace"] == "com.example"
    got = fields(schema)
    assert got["id"] == "long"
    assert got["at"] == TS  # ISO-8601 strings
    assert got["price"] == "double"  # whole and fractional numbers
    assert got["tags"] == {"type": "array", "items": "string"}
    assert got["addr"]["type"] == "record" and got["addr"]["name"] == "Addr"
    assert fields(got["addr"]) == {"city": "string", "zip": ["null", "string"]}
    assert got["note"] == ["null", "string"]  # only null seen: the user says what it is
    assert got["created_at"] == ["null", TS]  # epoch millis in a time-named field; missing once
    assert got["day"] == ["null", {"type": "int", "logicalType": "date"}]
    assert got["count"] == ["null", "long"]
    assert got["mixed"] == ["null", "long", "string"]  # a union for the user to settle
    nullable = [f for f in schema["fields"] if isinstance(f["type"], list) and "null" in f["type"]]
    assert all(f["default"] is None for f in nullable)


def test_the_draft_is_valid_avro_and_reads_its_own_data(tmp_path: Path) -> None:
    rows = [{k: v for k, v in r.items() if k != "mixed"} for r in ROWS]
    (tmp_path / "sample.avsc").write_text(json.dumps(infer_schema(rows, "Sample", "t")))
    codec = JsonCodec(SchemaStore(tmp_path).get("t.Sample"))
    decoded = [codec.decode(json.dumps(r).encode()) for r in rows]
    assert [d["id"] for d in decoded] == [1, 2, 3]
    assert decoded[0]["at"] == 1767261600000 and decoded[1]["note"] is None


def test_csv_cells_are_typed_and_empty_cells_are_null() -> None:
    rows = [
        {"order_id": "o1", "amount": "10", "paid": "true", "created_at": "2026-01-01T00:00:00Z", "x": ""},
        {"order_id": "o2", "amount": "2.5", "paid": "false", "created_at": "2026-01-01T00:00:01Z", "x": "7"},
    ]  # fmt: skip
    assert fields(infer_schema(rows, "Order", text=True)) == {
        "order_id": "string",
        "amount": "double",
        "paid": "boolean",
        "created_at": TS,
        "x": ["null", "long"],
    }


def test_cli_prints_the_draft_and_refuses_what_it_cannot_read(tmp_path: Path) -> None:
    runner = CliRunner()
    data = tmp_path / "click-events.jsonl"
    data.write_text("\n".join(json.dumps(r) for r in ROWS) + "\n")
    done = runner.invoke(app, ["schema", "infer", str(data), "--namespace", "com.example"])
    assert done.exit_code == 0, done.output
    printed = json.loads(done.stdout)
    assert printed["name"] == "ClickEvents" and fields(printed)["at"] == TS
    (tmp_path / "t.parquet").write_bytes(b"PAR1")
    refused = runner.invoke(app, ["schema", "infer", str(tmp_path / "t.parquet")])
    assert isinstance(refused.exception, UsageError)  # main() prints it, exit 2
    assert "not a readable Parquet file" in str(refused.exception)
    (tmp_path / "bad.jsonl").write_text('{"a": 1}\n{nope\n')
    bad = runner.invoke(app, ["schema", "infer", str(tmp_path / "bad.jsonl")])
    assert "bad.jsonl:2: not valid JSON" in str(bad.exception)


def test_parquet_columns_keep_their_types(tmp_path: Path) -> None:
    from datetime import UTC, date, datetime
    from decimal import Decimal

    import pyarrow as pa
    import pyarrow.parquet as pq

    table = pa.table(
        {
            "id": pa.array([1, 2, 3], pa.int64()),
            "at": pa.array([datetime(2026, 1, 1, tzinfo=UTC)] * 3, pa.timestamp("ms", tz="UTC")),
            "day": pa.array([date(2026, 1, 1), None, date(2026, 1, 3)], pa.date32()),
            "price": pa.array([Decimal("1.50"), Decimal("2.00"), Decimal("3.25")]),
            "name": pa.array(["a", "b", None]),
            "blob": pa.array([b"x", b"y", b"z"]),
        }
    )
    path = tmp_path / "orders.parquet"
    pq.write_table(table, path)
    done = CliRunner().invoke(app, ["schema", "infer", str(path)])
    assert done.exit_code == 0, done.output
    assert fields(json.loads(done.stdout)) == {
        "id": "long",
        "at": TS,
        "day": ["null", {"type": "int", "logicalType": "date"}],
        "price": "double",
        "name": ["null", "string"],
        "blob": "bytes",
    }
