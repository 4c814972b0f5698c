"""`streamline produce` of a Parquet file: typed round trip, lineage headers, the ingest log, no second run."""

from __future__ import annotations

import hashlib
import json
import os
import subprocess
import time
from pathlib import Path
from typing import Any

import pyarrow as pa
import pyarrow.parquet as pq

from streamline.ops.ingest_log import INGEST_TOPIC, IngestRun, run_key
from tests.helpers import ROOT, STREAMLINE, json_lines, read_all, run_cli

FULL = os.environ.get("STREAMLINE_ACCEPTANCE_SCALE") == "full"
READING = {
    "type": "record",
    "name": "Reading",
    "namespace": "test.parquet",
    "fields": [
        {"name": "id", "type": "long"},
        {"name": "sensor", "type": "string"},
        {"name": "value", "type": ["null", "double"], "default": None},
        {"name": "at", "type": {"type": "long", "logicalType": "timestamp-millis"}},
        {
            "name": "seen",
            "type": ["null", {"type": "long", "logicalType": "timestamp-micros"}],
            "default": None,
        },
        {
            "name": "location",
            "type": [
                "null",
                {
                    "type": "record",
                    "name": "Location",
                    "fields": [
                        {"name": "lat", "type": "double"},
                        {"name": "lon", "type": "double"},
                        {"name": "label", "type": ["null", "string"], "default": None},
                    ],
                },
            ],
            "default": None,
        },
        {"name": "tags", "type": {"type": "array", "items": "string"}},
    ],
}
BASE_MS = 1_767_225_600_000


def expected_rows(n: int) -> list[dict[str, Any]]:
    """The rows as the topic must hold them: timestamps as epoch integers, nulls as null."""
    return [
        {
            "id": i,
            "sensor": f"s-{i % 17}",
            "value": None if i % 5 == 0 else i / 4,
            "at": BASE_MS + i * 1_001,
            "seen": None if i % 3 == 0 else (BASE_MS + i) * 1000 + 7,
            "location": None
            if i % 7 == 0
            else {"lat": i % 90 / 2, "lon": -(i % 180) / 4, "label": None if i % 2 else f"l{i}"},
            "tags": [f"t{j}" for j in range(i % 3)],
        }
        for i in range(n)
    ]


def write_parquet(path: Path, rows: list[dict[str, Any]]) -> None:
    """The same rows in Arrow's own types: timestamp columns, a nullable struct, a list."""
    location = pa.struct([("lat", pa.float64()), ("lon", pa.float64()), ("label", pa.string())])
    schema = pa.schema(
        [
            ("id", pa.int64()),
            ("sensor", pa.string()),
            ("value", pa.float64()),
            ("at", pa.timestamp("ms")),
            ("seen", pa.timestamp("us", tz="UTC")),
            ("location", location),
            ("tags", pa.list_(pa.string())),
        ]
    )
    writer = pq.ParquetWriter(path, schema)
    for start in range(0, len(rows), 50_000):
        chunk = rows[start : start + 50_000]
        columns = {name: [r[name] for r in chunk] for name in schema.names}
        # timestamps go in as integers of the column's unit: Arrow, not this test, makes them times
        writer.write_table(pa.table(columns, schema=schema), row_group_size=10_000)
    writer.close()


def _produce_watching_memory(*args: str) -> tuple[subprocess.CompletedProcess[str], float]:
    """Runs `streamline produce ARGS`, sampling its resident memory; (result, peak MiB)."""
    proc = subprocess.Popen(
        [*STREAMLINE, "produce", *args],
        cwd=ROOT,
        env=dict(os.environ),
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )
    peak_kib = 0
    deadline = time.monotonic() + 1800
    while proc.poll() is None and time.monotonic() < deadline:
        try:
            status = Path(f"/proc/{proc.pid}/status").read_text()
        except OSError:
            break
        for line in status.splitlines():
            if line.startswith("VmHWM:"):  # the process's own peak, sampled until it exits
                peak_kib = max(peak_kib, int(line.split()[1]))
        time.sleep(0.2)
    stdout, stderr = proc.communicate(timeout=60)
    return subprocess.CompletedProcess(proc.args, proc.returncode, stdout, stderr), peak_kib / 1024


def test_a_parquet_file_round_trips_typed_with_lineage_and_is_not_produced_twice(
    bootstrap_env, make_topic, kafka, tmp_path
) -> None:  # type: ignore[no-untyped-def]
    n = 1_000_000 if FULL else 20_000
    (tmp_path / "schemas").mkdir()
    (tmp_path / "schemas" / "reading.avsc").write_text(json.dumps(READING))
    rows = expected_rows(n)
    source = tmp_path / "readings.parquet"
    write_parquet(source, rows)
    digest = hashlib.sha256(source.read_bytes()).hexdigest()
    topic = make_topic("readings", partitions=3)
    schemas = ("--schemas", str(tmp_path / "schemas"))

    produced, peak_mib = _produce_watching_memory(
        topic, "--schema", "test.parquet.Reading", "-f", str(source), *schemas
    )
    assert produced.returncode == 0, produced.stderr
    assert f"sent {n} records to {topic}" in produced.stderr
    print(f"produce of {n} Parquet rows: peak RSS {peak_mib:.0f} MiB")
    assert peak_mib < 400  # streamed: the same bound for 20k rows as for a million

    consumed = run_cli(
        "consume",
        topic,
        "--from-beginning",
        "--max",
        str(n),
        "--timeout",
        "30",
        *schemas,
        timeout=1800,
    )
    assert consumed.returncode == 0, consumed.stderr
    values = sorted((r["value"] for r in json_lines(consumed.stdout)), key=lambda v: v["id"])
    assert values == rows

    sample = read_all(kafka, topic, expected=n, timeout=120)[:50]
    for msg in sample:
        headers = dict(msg.headers() or [])
        assert headers["streamline.ingest.file"] == str(source).encode()
        assert headers["streamline.ingest.sha256"] == digest.encode()
    lines = {int(dict(m.headers() or [])["streamline.ingest.line"]) for m in sample}
    assert lines <= set(range(1, n + 1))

    log = [m for m in read_all(kafka, INGEST_TOPIC) if m.key() == run_key(topic, digest)]
    assert len(log) == 1
    run = IngestRun.decode(log[0].value())
    assert (run.records, run.invalid, run.sha256, run.topic) == (n, 0, digest, topic)
    assert sum(last - first + 1 for first, last in run.offsets.values()) == n

    again = run_cli(
        "produce", topic, "--schema", "test.parquet.Reading", "-f", str(source), *schemas
    )
    assert again.returncode == 2
    assert f"was produced to {topic} at {run.at}: {n} records" in again.stderr
    assert "--force" in again.stderr
