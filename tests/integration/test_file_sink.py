"""The Parquet file sink under SIGKILLs: the final files, read with pyarrow, equal the oracle."""

from __future__ import annotations

import os
import random
import time
from collections import Counter
from pathlib import Path
from typing import Any

import pyarrow.dataset as ds
import pytest

from streamline.kafka.admin import create_topics
from streamline.kafka.connection import Connection
from tests.support.harness import (
    InputFeeder,
    StreamlineProcess,
    await_started,
    order_stream,
    process_env,
)

pytestmark = pytest.mark.slow

FULL = os.environ.get("STREAMLINE_ACCEPTANCE_SCALE") == "full"
N_RECORDS = 100_000 if FULL else 10_000
ROLL_S = 10 if FULL else 2
ROLL = f"{ROLL_S}s"


def count_files(folder: Path) -> int:
    return sum(1 for p in folder.rglob("part-*")) if folder.exists() else 0


TOPOLOGY = """\
apiVersion: streamline/v1
name: {name}
version: "1"
sources:
  - {{name: orders, topic: {source}, schema: com.example.Order, event_time: created_at,
     watermark: {{max_out_of_orderness: 5s}}}}
stages:
  - filter: "status == 'PAID'"
sinks:
  lake:
    schema: com.example.Order
    files: {{path: {path}, format: parquet, partition_by: [country], roll: {{every: {roll}}}}}
"""


def final_rows(folder: Path) -> list[dict[str, Any]]:
    if not folder.exists():
        return []
    table = ds.dataset(folder, format="parquet", partitioning="hive").to_table()
    return table.to_pylist()


def test_parquet_files_are_exact_through_sigkills(
    kafka: Connection, unique: str, tmp_path: Path
) -> None:
    name, source = f"lake-{unique}", f"orders-{unique}"
    out = tmp_path / "lake"
    path = tmp_path / "topologies" / f"{name}.yaml"
    path.parent.mkdir()
    path.write_text(TOPOLOGY.format(name=name, source=source, path=out, roll=ROLL))
    create_topics(kafka, {source: (3, {}), f"{name}.dlq": (3, {})})
    create_topics(kafka, {"streamline.lineage": (3, {}), "streamline.heartbeats": (1, {})})

    stream = order_stream(N_RECORDS, seed=11)
    want = sorted(
        (r["order_id"], r["customer_id"], r["amount"], r["currency"], r["status"],
         r["country"], r["created_at"])
        for *_rest, r in stream
        if r is not None and r["status"] == "PAID"
    )  # fmt: skip
    feeder = InputFeeder(kafka, source, stream, rate=2500 if FULL else 1500)
    feeder.start()
    proc = StreamlineProcess(path, "a", process_env(kafka), tmp_path).start()
    rng = random.Random(unique)
    for _ in range(3):  # SIGKILL mid-roll, once each start has committed files of its own
        await_started(proc)
        before = count_files(out)
        deadline = time.monotonic() + 3 * ROLL_S
        while count_files(out) == before and time.monotonic() < deadline:
            time.sleep(0.2)
        time.sleep(rng.uniform(0.2, ROLL_S))
        proc.kill()
        proc.start()
    feeder.join(120)
    assert feeder.error is None
    await_started(proc)

    deadline = time.monotonic() + 180
    rows: list[dict[str, Any]] = []
    while time.monotonic() < deadline:
        rows = final_rows(out)
        if len(rows) >= len(want):
            break
        time.sleep(1)
    assert proc.stop() == 0, proc.log()[-3000:]
    rows = final_rows(out)
    got = sorted(
        (r["order_id"], r["customer_id"], r["amount"], r["currency"], r["status"],
         r["country"], int(r["created_at"].timestamp() * 1000))
        for r in rows
    )  # fmt: skip
    assert [k for k, n in Counter(g[0] for g in got).items() if n > 1] == []
    assert got == want
    files = [p for p in out.rglob("*") if p.is_file()]
    assert [p for p in files if p.name.startswith(".") or "inprogress" in p.name] == []
    assert {p.parent.name for p in files} == {"country=DE", "country=FR", "country=NL"}
    for p in files:  # part-<topic>-<partition>-<first>-<last>.parquet
        assert p.name.startswith(f"part-{source}-") and p.suffix == ".parquet"
    print(
        f"{len(files)} files; recovery: {proc.log().count('file sink lake:')} starts settled files"
    )
