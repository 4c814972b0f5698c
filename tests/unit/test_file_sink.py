"""The exactly-once file sink: Parquet/JSONL files, visible only for committed transactions."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pyarrow.dataset as ds
import pytest
from pydantic import ValidationError

from streamline.runtime.record import Record
from streamline.runtime.sinks.files import FileSinkWriter, parse_name
from streamline.serde import SchemaStore
from streamline.testing import TopologyDriver
from streamline.topology import TopologyError, check_topology, render_chain
from streamline.topology.errors import problems_from_validation_error
from streamline.topology.model import FilesSpec, Topology

PROJECT = Path(__file__).resolve().parents[2]
SOURCE = {
    "name": "orders",
    "topic": "orders",
    "schema": "com.example.Order",
    "event_time": "created_at",
    "watermark": {"max_out_of_orderness": "1s"},
}


@pytest.fixture(scope="module")
def store() -> SchemaStore:
    return SchemaStore(PROJECT / "schemas")


def lake(folder: Path, fmt: str = "parquet", **files: Any) -> Topology:
    spec = {"path": str(folder), "format": fmt, "partition_by": ["country"], **files}
    return Topology.model_validate(
        {
            "name": "lake",
            "version": "1",
            "sources": [SOURCE],
            "stages": [{"filter": "status == 'PAID'"}],
            "sinks": {"lake": {"files": spec, "schema": "com.example.Order"}},
        }
    )


def order(i: int) -> dict[str, Any]:
    return {
        "order_id": f"o-{i}",
        "customer_id": f"c-{i % 7}",
        "amount": float(i),
        "currency": "EUR",
        "status": "VOID" if i % 5 == 0 else "PAID",
        "country": ["DE", "FR", "NL/BE"][i % 3],
        "created_at": 1_700_000_000_000 + i,
    }


def read_parquet(path: Path) -> list[dict[str, Any]]:
    """What a reader of the final folders sees (pyarrow skips hidden in-progress files)."""
    table = ds.dataset(path, format="parquet", partitioning="hive").to_table()
    rows = table.to_pylist()
    for row in rows:
        row["created_at"] = int(row["created_at"].timestamp() * 1000)
    return sorted(rows, key=lambda r: r["order_id"])


def expected(orders: list[dict[str, Any]]) -> list[dict[str, Any]]:
    return sorted((o for o in orders if o["status"] == "PAID"), key=lambda r: r["order_id"])


def files_in(path: Path) -> list[Path]:
    return sorted(p for p in path.rglob("*") if p.is_file())


def test_file_sink_settings_are_checked() -> None:
    def problems(**files: Any) -> set[tuple[str, str]]:
        with pytest.raises(ValidationError) as info:
            lake(Path("out"), **files)
        return {(p.path, p.message) for p in problems_from_validation_error(info.value)}

    assert (
        FilesSpec.model_validate({"path": "out", "roll": {"max_bytes": "64KB"}}).roll.max_bytes
        == 65536
    )
    (problem,) = problems(path="s3://bucket/orders")
    assert problem[0] == "sinks.lake.files.path"
    assert "object storage is not supported yet" in problem[1]
    (problem,) = problems(roll={"every": "10m"})
    assert problem[0] == "sinks.lake.files.roll.every"
    (problem,) = problems(roll={"max_bytes": "lots"})
    assert "expected a size with a unit" in problem[1]


def test_file_sinks_are_type_checked(store: SchemaStore, tmp_path: Path) -> None:
    with pytest.raises(TopologyError) as caught:
        check_topology(lake(tmp_path, partition_by=["nation"]), store)
    assert "sinks.lake.files.partition_by[0]: unknown field 'nation'" in str(caught.value)
    chain = render_chain(check_topology(lake(tmp_path), store))
    assert f"sinks.lake: parquet files in {tmp_path}, partitioned by country" in chain


def test_committed_records_land_in_final_files_exactly(store: SchemaStore, tmp_path: Path) -> None:
    orders = [order(i) for i in range(300)]
    with TopologyDriver(lake(tmp_path), store, partitions=3, auto_commit=False) as driver:
        driver.pipe("orders", orders[:100], key=lambda o: o["customer_id"])
        assert files_in(tmp_path) == []  # nothing before the commit
        driver.commit()
        driver.pipe("orders", orders[100:200], key=lambda o: o["customer_id"])
        driver.crash()  # the uncommitted part is redone from the input
        driver.pipe("orders", orders[200:], key=lambda o: o["customer_id"])
        driver.commit()
    assert read_parquet(tmp_path) == expected(orders)
    names = files_in(tmp_path)
    assert not [p for p in names if "inprogress" in p.name]
    assert {p.parent.name for p in names} == {"country=DE", "country=FR", "country=NL%2FBE"}
    for p in names:
        parsed = parse_name(p.name)
        assert parsed is not None and parsed[0][0] == "orders" and parsed[1] <= parsed[2]


def test_jsonl_files(store: SchemaStore, tmp_path: Path) -> None:
    orders = [order(i) for i in range(40)]
    with TopologyDriver(lake(tmp_path, "jsonl", partition_by=[]), store) as driver:
        driver.pipe("orders", orders)
    rows = [json.loads(line) for p in files_in(tmp_path) for line in p.read_text().splitlines()]
    assert sorted(rows, key=lambda r: r["order_id"]) == expected(orders)
    assert all(p.suffix == ".jsonl" and p.parent == tmp_path for p in files_in(tmp_path))


def writer(store: SchemaStore, path: Path) -> FileSinkWriter:
    spec = FilesSpec.model_validate({"path": str(path), "format": "jsonl"})
    return FileSinkWriter("lake", spec, store.get("com.example.Order"))


def prepared(store: SchemaStore, path: Path, first: int, last: int) -> FileSinkWriter:
    w = writer(store, path)
    records = []
    for offset in range(first, last + 1):
        record = Record("orders", 0, offset, None, b"", None)
        record.value = order(offset)
        records.append(record)
    assert w.add(records, lambda r, f: pytest.fail(f.message)) == len(records)
    w.prepare()
    return w


def test_recovery_keeps_committed_and_drops_the_rest(store: SchemaStore, tmp_path: Path) -> None:
    done = prepared(store, tmp_path, 0, 9)
    done.finalize()  # committed and renamed: offsets 0-9
    prepared(store, tmp_path, 10, 19)  # committed, crashed before the rename
    prepared(store, tmp_path, 20, 29)  # prepared, crashed before the commit
    beyond = prepared(store, tmp_path, 30, 39)
    beyond.finalize()  # final, but beyond the committed offset (the group was reset)
    assert len(files_in(tmp_path)) == 4
    assert writer(store, tmp_path).recover({("orders", 0): 20}) == (1, 2)
    names = [p.name for p in files_in(tmp_path)]
    assert names == [
        "part-orders-0-00000000000000000000-00000000000000000009.jsonl",
        "part-orders-0-00000000000000000010-00000000000000000019.jsonl",
    ]
    assert writer(store, tmp_path).recover({("orders", 1): 0}) == (0, 0)  # other partitions


def test_an_abort_deletes_the_prepared_files(store: SchemaStore, tmp_path: Path) -> None:
    w = prepared(store, tmp_path, 0, 4)
    assert len(files_in(tmp_path)) == 1
    w.abort()
    assert files_in(tmp_path) == []
