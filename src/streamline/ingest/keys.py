"""The Idempotency-Key store: which keys were committed, kept in a compacted Kafka topic.

The writer produces each key's record in the same transaction as the request's records,
so a key is in the topic exactly when its records are. At start the index is read back
from the topic (read_committed) up to its end; a thread then keeps tailing it, so keys
committed by other ingest instances are seen too. Entries older than the window are
forgotten, and the topic's retention drops them.
"""

from __future__ import annotations

import json
import threading
import time
from dataclasses import dataclass
from typing import Any

from confluent_kafka import OFFSET_BEGINNING, Consumer, KafkaError, TopicPartition

from streamline.kafka.admin import create_topics
from streamline.kafka.connection import Connection

KEYS_TOPIC = "streamline.ingest.keys"
DEFAULT_WINDOW_MS = 24 * 3_600_000


@dataclass(frozen=True)
class KeyEntry:
    """What a committed request did: when, how many records, and a digest of its body."""

    at_ms: int
    records: int
    body_sha256: str

    def encode(self) -> bytes:
        return json.dumps(
            {"at": self.at_ms, "records": self.records, "body_sha256": self.body_sha256}
        ).encode()

    @classmethod
    def decode(cls, data: bytes) -> KeyEntry:
        doc = json.loads(data)
        return cls(int(doc["at"]), int(doc["records"]), str(doc["body_sha256"]))


def key_bytes(topic: str, idempotency_key: str) -> bytes:
    """The store's record key: keys are scoped by target topic."""
    return f"{topic}\n{idempotency_key}".encode()


class KeyIndex:
    """The committed keys younger than the window, in memory; safe to use from any thread."""

    def __init__(self, window_ms: int = DEFAULT_WINDOW_MS) -> None:
        self.window_ms = window_ms
        self._entries: dict[bytes, KeyEntry] = {}
        self._lock = threading.Lock()
        self._sweep_at = 0.0

    def get(self, key: bytes, now_ms: int | None = None) -> KeyEntry | None:
        now = int(time.time() * 1000) if now_ms is None else now_ms
        with self._lock:
            entry = self._entries.get(key)
        return entry if entry is not None and now - entry.at_ms < self.window_ms else None

    def put(self, key: bytes, entry: KeyEntry) -> None:
        with self._lock:
            self._entries[key] = entry
            if time.monotonic() >= self._sweep_at:  # forget expired keys, once a minute
                self._sweep_at = time.monotonic() + 60
                oldest = int(time.time() * 1000) - self.window_ms
                for k in [k for k, e in self._entries.items() if e.at_ms <= oldest]:
                    del self._entries[k]

    def __len__(self) -> int:
        return len(self._entries)


def ensure_keys_topic(connection: Connection, window_ms: int, partitions: int = 1) -> None:
    """Creates the keys topic when missing: compacted, and deleted after the window."""
    create_topics(
        connection,
        {
            KEYS_TOPIC: (
                partitions,
                {"cleanup.policy": "compact,delete", "retention.ms": str(window_ms)},
            )
        },
    )


class KeyTail:
    """Reads the keys topic into a `KeyIndex`: `load()` up to its end, then a tailing thread."""

    def __init__(self, connection: Connection, index: KeyIndex) -> None:
        self.index = index
        self._consumer = Consumer(
            connection.config(
                **{
                    "group.id": "streamline-ingest-keys",
                    "enable.auto.commit": False,
                    "isolation.level": "read_committed",
                    "enable.partition.eof": True,
                },
                log_level=0,
            )
        )
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None

    def load(self, timeout: float = 60.0) -> int:
        """Reads every committed key up to the topic's end; the number of entries read."""
        metadata = self._consumer.list_topics(KEYS_TOPIC, timeout=timeout)
        partitions = list(metadata.topics[KEYS_TOPIC].partitions)
        self._consumer.assign([TopicPartition(KEYS_TOPIC, p, OFFSET_BEGINNING) for p in partitions])
        at_end: set[int] = set()
        read = 0
        deadline = time.monotonic() + timeout
        while len(at_end) < len(partitions):
            if time.monotonic() > deadline:
                raise TimeoutError(f"could not read {KEYS_TOPIC} to its end within {timeout:.0f}s")
            for msg in self._consumer.consume(1000, timeout=0.5):
                error = msg.error()
                if error is not None:
                    if error.code() == KafkaError._PARTITION_EOF:
                        at_end.add(msg.partition() or 0)
                    continue
                at_end.discard(msg.partition() or 0)
                read += self._apply(msg.key(), msg.value())
        return read

    def start(self) -> None:
        self._thread = threading.Thread(target=self._tail, name="ingest-keys", daemon=True)
        self._thread.start()

    def _tail(self) -> None:
        while not self._stop.is_set():
            for msg in self._consumer.consume(1000, timeout=0.5):
                if not msg.error():
                    self._apply(msg.key(), msg.value())

    def _apply(self, key: Any, value: Any) -> int:
        if key is None or value is None:
            return 0
        try:
            self.index.put(bytes(key), KeyEntry.decode(value))
        except (ValueError, KeyError):
            return 0  # not a record this store wrote
        return 1

    def close(self) -> None:
        self._stop.set()
        if self._thread is not None:
            self._thread.join(5)
        self._consumer.close()
