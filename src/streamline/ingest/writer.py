"""The transactional writer: requests and their Idempotency-Keys committed together.

One thread owns one transactional producer. Requests queue up (bounded by a record count,
so a slow or stopped broker costs no unbounded memory); the thread takes what has queued,
produces it in one transaction with each request's key record, commits, and only then
answers every request in it. A request is therefore all or nothing, and its key is in the
keys topic exactly when its records are in their topic.

When a transaction fails the thread drops its producer; the next one, with the same
transactional.id, fences the old one and aborts whatever it left open. While the broker is
unreachable `ready` is false and `submit` refuses at once.
"""

from __future__ import annotations

import logging
import threading
import time
from collections import deque
from concurrent.futures import Future
from dataclasses import dataclass, field

from confluent_kafka import KafkaException, Producer

from streamline.headers import CHECKSUM
from streamline.ingest.keys import KEYS_TOPIC, KeyEntry, KeyIndex
from streamline.kafka.connection import Connection
from streamline.reliability.checksum import value_checksum

log = logging.getLogger("streamline.ingest")
COMMIT_TIMEOUT_S = 10.0
INIT_TIMEOUT_S = 5.0
PROBE_INTERVAL_S = 2.0
MAX_TRANSACTION_RECORDS = 20_000


class Unavailable(Exception):
    """The request was not written: the queue is full or the broker cannot be reached."""

    def __init__(self, reason: str, retry_after: int = 1) -> None:
        super().__init__(reason)
        self.retry_after = retry_after


@dataclass
class Written:
    """The answer to a request: how many records it wrote, or that its key was seen before."""

    records: int
    replayed: bool = False
    body_sha256: str = ""


@dataclass
class Pending:
    """One request waiting for its transaction."""

    topic: str
    records: list[tuple[bytes | None, bytes]]
    key: bytes | None  # the Idempotency-Key's store key
    body_sha256: str
    result: Future[Written] = field(default_factory=Future)


class TransactionalWriter:
    """Commits queued requests in transactions; see the module docstring."""

    def __init__(
        self,
        connection: Connection,
        index: KeyIndex,
        transactional_id: str,
        max_pending_records: int = 100_000,
        checksum: bool = False,
    ) -> None:
        self.connection = connection
        self.checksum = checksum  # stamp streamline.checksum on every record
        self.index = index
        self.transactional_id = transactional_id
        self.max_pending_records = max_pending_records
        self._queue: deque[Pending] = deque()
        self._queued_records = 0
        self._lock = threading.Condition()
        self._producer: Producer | None = None
        self._reachable = False
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, name="ingest-writer", daemon=True)

    @property
    def ready(self) -> bool:
        """The producer is initialised and the broker answered its last probe."""
        return self._producer is not None and self._reachable

    def start(self, timeout: float = 60.0) -> None:
        """Initialises the producer (fencing a previous instance's), then starts the thread."""
        deadline = time.monotonic() + timeout
        while not self._init_producer():
            if time.monotonic() > deadline:
                raise TimeoutError(f"could not initialise transactions within {timeout:.0f}s")
            time.sleep(0.5)
        self._thread.start()

    def submit(self, pending: Pending) -> Future[Written]:
        """Queues a request; raises Unavailable when it cannot be written soon."""
        if not self.ready:
            raise Unavailable("the Kafka broker is not reachable", retry_after=5)
        with self._lock:
            if (
                self._queued_records
                and self._queued_records + len(pending.records) > self.max_pending_records
            ):
                raise Unavailable("the ingest queue is full", retry_after=1)
            self._queue.append(pending)
            self._queued_records += len(pending.records)
            self._lock.notify()
        return pending.result

    def close(self) -> None:
        self._stop.set()
        with self._lock:
            self._lock.notify()
        if self._thread.is_alive():
            self._thread.join(COMMIT_TIMEOUT_S + 5)
        self._fail_queued("the ingest server is shutting down")

    def _init_producer(self) -> bool:
        producer = Producer(
            self.connection.config(
                **{
                    "transactional.id": self.transactional_id,
                    "transaction.timeout.ms": 60_000,
                    "linger.ms": 5,
                    "compression.type": "lz4",
                    "queue.buffering.max.messages": 2 * MAX_TRANSACTION_RECORDS + 10_000,
                    "socket.connection.setup.timeout.ms": 5_000,
                },
                log_level=0,
            )
        )
        try:
            producer.init_transactions(INIT_TIMEOUT_S)
        except KafkaException:
            return False
        self._producer = producer
        self._reachable = True
        return True

    def _run(self) -> None:
        next_probe = time.monotonic() + PROBE_INTERVAL_S
        while not self._stop.is_set():
            with self._lock:
                if not self._queue:
                    self._lock.wait(0.2)
                batch = self._take()
            if batch:
                try:
                    self._commit(batch)
                except Exception as exc:  # never leave a request unanswered, nor the thread dead
                    log.exception("ingest transaction failed")
                    if self._producer is not None:
                        self._drop_producer(self._producer)
                    for pending in batch:
                        if not pending.result.done():
                            pending.result.set_exception(Unavailable(f"not written: {exc}", 5))
            elif self._producer is None and not self._init_producer():
                time.sleep(1.0)
            elif time.monotonic() >= next_probe:
                next_probe = time.monotonic() + PROBE_INTERVAL_S
                self._probe()

    def _take(self) -> list[Pending]:
        batch: list[Pending] = []
        count = 0
        while self._queue and (
            not batch or count + len(self._queue[0].records) <= MAX_TRANSACTION_RECORDS
        ):
            pending = self._queue.popleft()
            batch.append(pending)
            count += len(pending.records)
        self._queued_records -= count
        return batch

    def _probe(self) -> None:
        assert self._producer is not None
        try:
            self._producer.list_topics(KEYS_TOPIC, timeout=PROBE_INTERVAL_S)
            self._reachable = True
        except KafkaException:
            self._reachable = False

    def _commit(self, batch: list[Pending]) -> None:
        producer = self._producer
        if producer is None:
            for pending in batch:
                pending.result.set_exception(Unavailable("the Kafka broker is not reachable", 5))
            return
        now_ms = int(time.time() * 1000)
        answers: list[tuple[Pending, Written]] = []
        entries: dict[bytes, KeyEntry] = {}
        try:
            producer.begin_transaction()
            for pending in batch:
                seen = self.index.get(pending.key) if pending.key is not None else None
                if seen is None and pending.key is not None:
                    seen = entries.get(pending.key)
                if seen is not None:  # committed since it was queued
                    answers.append((pending, Written(seen.records, True, seen.body_sha256)))
                    continue
                for key, value in pending.records:
                    headers: list[tuple[str, str | bytes | None]] | None = (
                        [(CHECKSUM, value_checksum(value))] if self.checksum else None
                    )
                    self._produce(producer, pending.topic, key, value, headers)
                if pending.key is not None:
                    entry = KeyEntry(now_ms, len(pending.records), pending.body_sha256)
                    entries[pending.key] = entry
                    self._produce(producer, KEYS_TOPIC, pending.key, entry.encode())
                answers.append((pending, Written(len(pending.records))))
            producer.commit_transaction(COMMIT_TIMEOUT_S)
        except KafkaException as exc:
            self._drop_producer(producer)
            reason = f"the records could not be committed: {exc.args[0].str() if exc.args else exc}"
            for pending in batch:
                pending.result.set_exception(Unavailable(reason, 5))
            return
        for key, entry in entries.items():
            self.index.put(key, entry)
        for pending, written in answers:
            pending.result.set_result(written)

    @staticmethod
    def _produce(
        producer: Producer,
        topic: str,
        key: bytes | None,
        value: bytes,
        headers: list[tuple[str, str | bytes | None]] | None = None,
    ) -> None:
        while True:
            try:
                producer.produce(topic, value=value, key=key, headers=headers)
                return
            except BufferError:  # local queue full: let deliveries drain it
                producer.poll(0.05)

    def _drop_producer(self, producer: Producer) -> None:
        """Forgets a producer whose transaction failed; the next one fences it."""
        try:
            producer.abort_transaction(2.0)
            self._producer = producer  # aborted cleanly: keep using it
            return
        except KafkaException:
            pass
        producer.purge()
        self._producer = None
        self._reachable = False

    def _fail_queued(self, reason: str) -> None:
        with self._lock:
            while self._queue:
                self._queue.popleft().result.set_exception(Unavailable(reason))
            self._queued_records = 0
