"""The `streamline.ingest` topic: one record per produced file (sha256, count, offsets).

`produce` writes a file's record in the same transaction as the file's records, keyed by
target topic and content hash, so the log says exactly which files reached which topic
and where; `earlier_run` finds the run that produced the same content to a topic before.
"""

from __future__ import annotations

import hashlib
import json
import time
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

from confluent_kafka import OFFSET_BEGINNING, Consumer, KafkaError, TopicPartition

from streamline.kafka.admin import create_topics, existing_topics
from streamline.kafka.connection import Connection

INGEST_TOPIC = "streamline.ingest"
READ_CHUNK = 1 << 20


def file_sha256(path: Path) -> str:
    """The sha256 hex of the file's bytes, read a megabyte at a time."""
    digest = hashlib.sha256()
    with path.open("rb") as f:
        while chunk := f.read(READ_CHUNK):
            digest.update(chunk)
    return digest.hexdigest()


@dataclass
class IngestRun:
    """What one `produce` of a file did."""

    file: str
    sha256: str
    topic: str
    records: int
    invalid: int
    at: str  # ISO-8601 UTC
    offsets: dict[str, list[int]] = field(default_factory=dict)  # partition -> [first, last]

    def key(self) -> bytes:
        return run_key(self.topic, self.sha256)

    def encode(self) -> bytes:
        return json.dumps(asdict(self), sort_keys=True).encode()

    @classmethod
    def decode(cls, data: bytes) -> IngestRun:
        return cls(**json.loads(data))

    def describe(self) -> str:
        where = ", ".join(
            f"partition {p} offsets {first}-{last}"
            for p, (first, last) in sorted(self.offsets.items())
        )
        return (
            f"{self.file} (sha256 {self.sha256[:12]}) was produced to {self.topic} at {self.at}: "
            f"{self.records} records" + (f" ({where})" if where else "")
        )


def run_key(topic: str, sha256: str) -> bytes:
    return f"{topic}\n{sha256}".encode()


def ensure_ingest_topic(connection: Connection) -> None:
    create_topics(connection, {INGEST_TOPIC: (1, {"cleanup.policy": "compact"})})


def earlier_run(
    connection: Connection, topic: str, sha256: str, timeout: float = 30.0
) -> IngestRun | None:
    """The last committed run that produced content `sha256` to `topic`, if any."""
    if INGEST_TOPIC not in existing_topics(connection):
        return None
    wanted = run_key(topic, sha256)
    consumer = Consumer(
        connection.config(
            **{
                "group.id": "streamline-ingest-log",
                "enable.auto.commit": False,
                "isolation.level": "read_committed",
                "enable.partition.eof": True,
            },
            log_level=0,
        )
    )
    found: IngestRun | None = None
    try:
        partitions = (
            consumer.list_topics(INGEST_TOPIC, timeout=timeout).topics[INGEST_TOPIC].partitions
        )
        consumer.assign([TopicPartition(INGEST_TOPIC, p, OFFSET_BEGINNING) for p in partitions])
        at_end: set[int] = set()
        deadline = time.monotonic() + timeout
        while len(at_end) < len(partitions) and time.monotonic() < deadline:
            for msg in consumer.consume(1000, timeout=0.5):
                error = msg.error()
                if error is not None:
                    if error.code() == KafkaError._PARTITION_EOF:
                        at_end.add(msg.partition() or 0)
                    continue
                if msg.key() == wanted and msg.value():
                    found = _decoded(msg.value())
    finally:
        consumer.close()
    return found


def _decoded(value: Any) -> IngestRun | None:
    try:
        return IngestRun.decode(value)
    except (ValueError, TypeError):
        return None
