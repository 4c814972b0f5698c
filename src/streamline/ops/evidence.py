"""`streamline evidence export`: a topology's record of a time range, as files an auditor can keep.

Four tables, each streamed from its topic to one file (Parquet, CSV or JSON lines) in
batches, so memory holds one batch whatever the range:

- `lineage`: one row per committed transaction (its lineage event), with the input and
  output offset ranges and what it did with its inputs;
- `dead_letters`: one row per dead letter, decoded, with the reason and attempts;
- `sla_history`: one row per heartbeat and source partition (watermark, staleness, lag,
  SLA status);
- `audit`: one row per audit event (replays, dead-letter replays, ACL changes).

`manifest.json` lists each file with its sha256 and row count, the range, the topology's
name, version and fingerprint, and the fingerprints of its schemas.
"""

from __future__ import annotations

import hashlib
import json
from collections.abc import Callable, Iterable, Iterator
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import Any, Literal

import streamline
from streamline.kafka.connection import Connection
from streamline.kafka.scan import scan_consumer, scan_since
from streamline.observability.lineage import COUNTS_FACET, LINEAGE_TOPIC, ranges_of
from streamline.ops.audit import read_audit_events
from streamline.ops.consume import RecordPrinter
from streamline.ops.dlq import DeadLetter
from streamline.ops.evidence_files import BATCH_ROWS, Column, open_table
from streamline.serde import SchemaStore
from streamline.topology import CheckedTopology
from streamline.topology.resources import HEARTBEATS_TOPIC

Format = Literal["parquet", "csv", "jsonl"]
FORMATS: tuple[Format, ...] = ("parquet", "csv", "jsonl")
Row = dict[str, Any]

LINEAGE_COLUMNS = [
    Column("event_time", "string"),
    Column("run_id", "string"),
    Column("transactional_id", "string"),
    Column("version", "string"),
    Column("fingerprint", "string"),
    Column("inputs", "string"),  # JSON: [{topic, partition, first, last}]
    Column("outputs", "string"),
    Column("records", "int64"),
    Column("outputs_written", "int64"),
    Column("late", "int64"),
    Column("retries", "int64"),
    Column("drops", "string"),  # JSON: reason -> count
    Column("dead_letters", "string"),  # JSON: error type -> count
]
DEAD_LETTER_COLUMNS = [
    Column("partition", "int64"),
    Column("offset", "int64"),
    Column("failed_at", "int64"),
    Column("error_type", "string"),
    Column("stage", "string"),
    Column("rule", "string"),
    Column("reason", "string"),
    Column("attempts", "int64"),
    Column("source_topic", "string"),
    Column("source_partition", "int64"),
    Column("source_offset", "int64"),
    Column("key", "string"),
    Column("schema", "string"),
    Column("value", "string"),  # JSON of the decoded value, else null
    Column("value_base64", "string"),  # the bytes, when they do not decode
]
SLA_COLUMNS = [
    Column("time", "int64"),
    Column("instance", "string"),
    Column("version", "string"),
    Column("fingerprint", "string"),
    Column("topic", "string"),
    Column("partition", "int64"),
    Column("watermark", "int64"),
    Column("last_event_time", "int64"),
    Column("committed_offset", "int64"),
    Column("end_offset", "int64"),
    Column("lag", "int64"),
    Column("staleness_ms", "int64"),
    Column("status", "string"),
]
AUDIT_COLUMNS = [
    Column("id", "string"),
    Column("time", "string"),
    Column("action", "string"),
    Column("os_user", "string"),
    Column("host", "string"),
    Column("principal", "string"),
    Column("command", "string"),
    Column("fingerprint", "string"),
    Column("plan", "string"),  # JSON
    Column("status", "string"),
    Column("detail", "string"),  # JSON
]


@dataclass
class ExportedFile:
    table: str
    path: Path
    rows: int
    sha256: str


Progress = Callable[[str, int], None]
"""Called with a table's name and the rows written since the last call."""


def _json(value: Any) -> str:
    return json.dumps(value, separators=(",", ":"), sort_keys=True)


def _ranges(datasets: Iterable[dict[str, Any]]) -> str:
    return _json(
        [
            {"topic": t, "partition": p, "first": first, "last": last}
            for (t, p), (first, last) in sorted(ranges_of(datasets).items())
        ]
    )


def lineage_rows(connection: Connection, name: str, since_ms: int, until_ms: int) -> Iterator[Row]:
    consumer = scan_consumer(connection, "streamline-evidence")
    try:
        for msg in scan_since(consumer, LINEAGE_TOPIC, since_ms):
            if msg.key() != name.encode():
                continue
            doc = json.loads(msg.value() or b"{}")
            job = doc.get("job", {})
            if job.get("name") != name:
                continue
            at = int(datetime.fromisoformat(doc["eventTime"]).timestamp() * 1000)
            if not since_ms <= at <= until_ms:
                continue
            facets = doc.get("run", {}).get("facets", {})
            counts = facets.get(COUNTS_FACET, {})
            topology = job.get("facets", {}).get("streamline_topology", {})
            yield {
                "event_time": doc["eventTime"],
                "run_id": doc.get("run", {}).get("runId"),
                "transactional_id": facets.get("streamline_transaction", {}).get(
                    "transactional_id"
                ),
                "version": topology.get("version"),
                "fingerprint": topology.get("fingerprint"),
                "inputs": _ranges(doc.get("inputs", [])),
                "outputs": _ranges(doc.get("outputs", [])),
                "records": counts.get("records"),
                "outputs_written": counts.get("outputs"),
                "late": counts.get("late"),
                "retries": counts.get("retries"),
                "drops": _json(counts.get("drops", {})),
                "dead_letters": _json(counts.get("dead_letters", {})),
            }
    finally:
        consumer.close()


def dead_letter_rows(
    connection: Connection, topic: str, store: SchemaStore, since_ms: int, until_ms: int
) -> Iterator[Row]:
    printer = RecordPrinter(store)
    consumer = scan_consumer(connection, "streamline-evidence")
    try:
        for msg in scan_since(consumer, topic, since_ms):
            letter = DeadLetter(msg)
            if not since_ms <= letter.failed_at <= until_ms:
                continue
            described = letter.describe(printer)
            value = described.get("value")
            yield {
                "partition": letter.partition,
                "offset": letter.offset,
                "failed_at": letter.failed_at,
                "error_type": letter.error_type,
                "stage": letter.stage,
                "rule": letter.rule,
                "reason": described["error"]["message"],
                "attempts": described["attempts"],
                "source_topic": described["source"]["topic"],
                "source_partition": described["source"]["partition"],
                "source_offset": described["source"]["offset"],
                "key": described["key"],
                "schema": described.get("schema"),
                "value": None if value is None else _json(value),
                "value_base64": described.get("value_base64"),
            }
    finally:
        consumer.close()


def sla_rows(connection: Connection, name: str, since_ms: int, until_ms: int) -> Iterator[Row]:
    consumer = scan_consumer(connection, "streamline-evidence", isolation="read_uncommitted")
    try:
        for msg in scan_since(consumer, HEARTBEATS_TOPIC, since_ms):
            doc = json.loads(msg.value() or b"{}")
            if doc.get("topology") != name or not since_ms <= int(doc["time"]) <= until_ms:
                continue
            for p in doc.get("partitions", []):
                yield {
                    "time": doc["time"],
                    "instance": doc.get("instance"),
                    "version": doc.get("version"),
                    "fingerprint": doc.get("fingerprint"),
                    **{c.name: p.get(c.name) for c in SLA_COLUMNS[4:]},
                }
    finally:
        consumer.close()


def audit_rows(connection: Connection, name: str, since_ms: int, until_ms: int) -> Iterator[Row]:
    for event in read_audit_events(connection, name, since_ms):
        if int(event.get("time_ms", 0)) > until_ms:
            continue
        who = event.get("who", {})
        result = event.get("result", {})
        yield {
            "id": event.get("id"),
            "time": event.get("time"),
            "action": event.get("action"),
            "os_user": who.get("os_user"),
            "host": who.get("host"),
            "principal": who.get("principal"),
            "command": event.get("command"),
            "fingerprint": event.get("fingerprint"),
            "plan": _json(event.get("plan")),
            "status": result.get("status"),
            "detail": _json(result.get("detail")),
        }


def _batches(rows: Iterator[Row]) -> Iterator[list[Row]]:
    batch: list[Row] = []
    for row in rows:
        batch.append(row)
        if len(batch) >= BATCH_ROWS:
            yield batch
            batch = []
    if batch:
        yield batch


def sha256_of(path: Path) -> str:
    digest = hashlib.sha256()
    with path.open("rb") as f:
        for chunk in iter(lambda: f.read(1 << 20), b""):
            digest.update(chunk)
    return digest.hexdigest()


def export_evidence(
    connection: Connection,
    checked: CheckedTopology,
    store: SchemaStore,
    out_dir: Path,
    fmt: Format,
    since_ms: int,
    until_ms: int,
    progress: Progress | None = None,
) -> dict[str, Any]:
    """Writes the four tables and `manifest.json` to `out_dir`; returns the manifest."""
    topology = checked.topology
    name = topology.name
    out_dir.mkdir(parents=True, exist_ok=True)
    tables: list[tuple[str, list[Column], Iterator[Row]]] = [
        ("lineage", LINEAGE_COLUMNS, lineage_rows(connection, name, since_ms, until_ms)),
        (
            "dead_letters",
            DEAD_LETTER_COLUMNS,
            dead_letter_rows(connection, topology.dead_letter_topic, store, since_ms, until_ms),
        ),
        ("sla_history", SLA_COLUMNS, sla_rows(connection, name, since_ms, until_ms)),
        ("audit", AUDIT_COLUMNS, audit_rows(connection, name, since_ms, until_ms)),
    ]
    files: list[ExportedFile] = []
    for table, columns, rows in tables:
        path = out_dir / f"{table}.{fmt}"
        count = 0
        with open_table(path, fmt, columns) as writer:
            for batch in _batches(rows):
                writer.write(batch)
                count += len(batch)
                if progress is not None:
                    progress(table, len(batch))
        files.append(ExportedFile(table, path, count, sha256_of(path)))
    manifest = {
        "topology": name,
        "version": topology.version,
        "fingerprint": checked.fingerprint,
        "definition_fingerprint": topology.fingerprint,
        "schemas": _schema_fingerprints(checked, store),
        "since": _iso(since_ms),
        "until": _iso(until_ms),
        "format": fmt,
        "exported_at": datetime.now(UTC).isoformat(timespec="seconds"),
        "streamline_version": streamline.__version__,
        "files": {
            f.path.name: {"table": f.table, "rows": f.rows, "sha256": f.sha256} for f in files
        },
    }
    (out_dir / "manifest.json").write_text(json.dumps(manifest, indent=2) + "\n")
    return manifest


def _schema_fingerprints(checked: CheckedTopology, store: SchemaStore) -> dict[str, str]:
    """Schema full name -> CRC-64-AVRO fingerprint (hex) of every schema the topology names."""
    names = [s.schema_name for s in checked.topology.sources] + [checked.sink_schema.name]
    return {n: store.get(n).fingerprint_hex for n in sorted(set(names))}


def _iso(ms: int) -> str:
    return datetime.fromtimestamp(ms / 1000, UTC).isoformat(timespec="seconds")
