"""The processing loop: one consumer, one transactional producer, the commit cycle.

Exactly-once (EOS v2, KIP-447): `transactional.id = <topology>-<instance>`, the consumer
reads `read_committed` with manual commits, and each transaction carries the outputs,
the dead letters and the consumed offsets (`send_offsets_to_transaction` with the group
metadata, so a zombie whose group generation is stale cannot commit). On an abortable
error the transaction is aborted and the consumer rewound to the last committed offsets;
a fatal producer error re-creates the producer. With `at_least_once`, outputs are
flushed before the offsets are committed.
"""

from __future__ import annotations

import logging
import threading
import time
from dataclasses import dataclass, field
from typing import Any

from confluent_kafka import (
    OFFSET_BEGINNING,
    OFFSET_INVALID,
    Consumer,
    KafkaError,
    KafkaException,
    Message,
    Producer,
    TopicPartition,
)

from streamline.connection import Connection
from streamline.errors import StreamlineError
from streamline.observability.metrics import Metrics
from streamline.reliability.dead_letter import Failure, failure_headers
from streamline.runtime.pipeline import Pipeline
from streamline.runtime.record import Record

log = logging.getLogger("streamline.runtime")

TP = tuple[str, int]


class TransactionAborted(Exception):
    """The open transaction was aborted; the consumer must rewind."""


@dataclass
class RunOptions:
    """How one process runs a topology."""

    instance_id: str
    batch_size: int = 2000
    max_records_per_transaction: int = 20000
    session_timeout_ms: int = 10000
    transaction_timeout_ms: int = 30000


@dataclass
class _Transaction:
    """What the open transaction holds, applied to metrics only after it commits."""

    started: float = field(default_factory=time.monotonic)
    records: int = 0
    outputs: int = 0
    event_times: list[int] = field(default_factory=list)
    dead_letters: dict[tuple[str, str], int] = field(default_factory=dict)
    consumed: dict[TP, int] = field(default_factory=dict)


class Processor:
    """Runs one topology in this process until `stop` is set."""

    def __init__(
        self,
        pipeline: Pipeline,
        connection: Connection,
        options: RunOptions,
        metrics: Metrics,
    ) -> None:
        self.pipeline = pipeline
        self.connection = connection
        self.options = options
        self.metrics = metrics
        self.exactly_once = pipeline.exactly_once
        self.assignment: set[TP] = set()
        # next offset to read per partition, as processed (in the open transaction)
        self.positions: dict[TP, int] = {}
        # next offset per partition as last committed; where an abort rewinds to
        self.committed: dict[TP, int] = {}
        self.txn: _Transaction | None = None
        self.alive = False
        self.consumer: Consumer | None = None
        self.producer: Producer | None = None

    # --- clients -------------------------------------------------------------------------

    def _make_consumer(self) -> Consumer:
        conf = self.connection.config(
            **{
                "group.id": self.pipeline.group_id,
                "client.id": f"{self.pipeline.group_id}-{self.options.instance_id}",
                "isolation.level": "read_committed",
                "enable.auto.commit": False,
                "enable.auto.offset.store": False,
                "auto.offset.reset": "earliest",
                "session.timeout.ms": self.options.session_timeout_ms,
                "heartbeat.interval.ms": max(500, self.options.session_timeout_ms // 5),
                "enable.partition.eof": False,
                "fetch.wait.max.ms": 50,
            },
            log_level=3,
        )
        return Consumer(conf, logger=log)

    def _make_producer(self) -> Producer:
        conf: dict[str, Any] = {
            "client.id": f"{self.pipeline.group_id}-{self.options.instance_id}",
            "enable.idempotence": True,
            "linger.ms": 5,
            "partitioner": "murmur2_random",
            "compression.type": "lz4",
            "queue.buffering.max.messages": 500000,
        }
        if self.exactly_once:
            conf["transactional.id"] = self.pipeline.transactional_id(self.options.instance_id)
            conf["transaction.timeout.ms"] = self.options.transaction_timeout_ms
        producer = Producer(self.connection.config(**conf, log_level=3), logger=log)
        if self.exactly_once:
            producer.init_transactions(60)
        return producer

    # --- main loop -----------------------------------------------------------------------

    def run(self, stop: threading.Event) -> None:
        """Consumes, processes and commits until `stop` is set; then commits and leaves the group."""
        self.producer = self._make_producer()
        self.consumer = self._make_consumer()
        self.consumer.subscribe(
            self.pipeline.source_topics,
            on_assign=self._on_assign,
            on_revoke=self._on_revoke,
            on_lost=self._on_lost,
        )
        self.alive = True
        self.metrics.set_ready(True)
        try:
            while not stop.is_set():
                self._step()
            self._commit_or_abort()
        finally:
            self.alive = False
            self.metrics.set_ready(False)
            self.consumer.close()  # leaves the group; the revoke callback sees no open transaction
            if self.producer is not None:
                self.producer.flush(10)

    def _step(self) -> None:
        assert self.consumer is not None
        messages = self.consumer.consume(self.options.batch_size, timeout=0.1)
        if messages:
            batch = self._accept(messages)
            if batch:
                try:
                    self._process(batch)
                except TransactionAborted:
                    return
        if self.txn is not None and self._commit_due():
            self._commit_or_abort()
        self._update_lag()

    def _accept(self, messages: list[Message]) -> list[Record]:
        """Records of the messages that belong to the current assignment, in order."""
        batch = []
        for msg in messages:
            error = msg.error()
            if error is not None:
                self._consumer_error(error)
                continue
            tp = (msg.topic(), msg.partition())
            if tp not in self.assignment:
                continue
            batch.append(Record(tp[0], tp[1], msg.offset(), msg.key(), msg.value(), msg.headers()))
        return batch

    def _consumer_error(self, error: KafkaError) -> None:
        if error.fatal():
            raise StreamlineError(f"consumer failed: {error.str()}")
        log.warning("consumer: %s", error.str())

    def _commit_due(self) -> bool:
        txn = self.txn
        assert txn is not None
        return (
            (time.monotonic() - txn.started) * 1000 >= self.pipeline.commit_interval_ms
            or txn.records >= self.options.max_records_per_transaction
        )

    # --- processing ----------------------------------------------------------------------

    def _process(self, batch: list[Record]) -> None:
        assert self.producer is not None
        if self.txn is None:
            self._begin()
        txn = self.txn
        assert txn is not None
        failures: list[tuple[Record, Failure]] = []
        outputs = self.pipeline.process(batch, failures, self.metrics)
        produce = self.producer.produce
        sink = self.pipeline.sink_topic
        header = self.pipeline.header_topology
        try:
            for record, value in outputs:
                headers = [
                    ("streamline.topology", header),
                    ("streamline.source", f"{record.topic}/{record.partition}/{record.offset}-{record.offset}".encode()),
                    ("streamline.event_time", str(record.event_time).encode()),
                ]
                self._produce(produce, sink, record.out_key, value, headers)
                txn.event_times.append(record.event_time)
            for record, failure in failures:
                headers = failure_headers(failure, record.topic, record.partition, record.offset, record.headers)
                self._produce(produce, self.pipeline.dead_letter_topic, record.key, record.raw, headers)
                slot = (failure.error_type, failure.stage)
                txn.dead_letters[slot] = txn.dead_letters.get(slot, 0) + 1
        except KafkaException as exc:
            self._handle_kafka_error(exc)
            raise TransactionAborted() from exc
        txn.outputs += len(outputs)
        txn.records += len(batch)
        for record in batch:
            tp = (record.topic, record.partition)
            self.positions[tp] = record.offset + 1
            txn.consumed[tp] = txn.consumed.get(tp, 0) + 1

    def _produce(self, produce: Any, topic: str, key: bytes | None, value: bytes | None,
                 headers: list[tuple[str, bytes]]) -> None:
        while True:
            try:
                produce(topic, value=value, key=key, headers=headers)
                return
            except BufferError:  # the local queue is full: let deliveries drain
                assert self.producer is not None
                self.producer.poll(0.05)

    # --- the commit cycle ----------------------------------------------------------------

    def _begin(self) -> None:
        assert self.producer is not None
        if self.exactly_once:
            self.producer.begin_transaction()
        self.txn = _Transaction()

    def _commit_or_abort(self) -> None:
        """Commits the open transaction; on failure aborts it and rewinds the consumer."""
        if self.txn is None:
            return
        try:
            self._commit()
        except KafkaException as exc:
            self._handle_kafka_error(exc)

    def _commit(self) -> None:
        assert self.producer is not None and self.consumer is not None and self.txn is not None
        txn = self.txn
        started = time.monotonic()
        offsets = [TopicPartition(t, p, off) for (t, p), off in self.positions.items()
                   if (t, p) in self.assignment]
        if self.exactly_once:
            self.producer.send_offsets_to_transaction(
                offsets, self.consumer.consumer_group_metadata(), 30
            )
            self._retrying(lambda: self.producer.commit_transaction(30))  # type: ignore[union-attr]
        else:
            remaining = self.producer.flush(60)
            if remaining:
                raise KafkaException(KafkaError(KafkaError._MSG_TIMED_OUT, "outputs not delivered", retriable=True))
            if offsets:
                self.consumer.commit(offsets=offsets, asynchronous=False)
        self.txn = None
        self.committed.update(self.positions)
        self._committed_metrics(txn, time.monotonic() - started)

    def _retrying(self, call: Any) -> None:
        """Retries a transactional call while librdkafka says the error is retriable."""
        deadline = time.monotonic() + 60
        while True:
            try:
                call()
                return
            except KafkaException as exc:
                error = exc.args[0]
                if not error.retriable() or time.monotonic() > deadline:
                    raise
                time.sleep(0.1)

    def _committed_metrics(self, txn: _Transaction, seconds: float) -> None:
        m = self.metrics
        m.transaction_committed(seconds)
        for (topic, partition), n in txn.consumed.items():
            m.records_in(topic, partition, n)
        if txn.outputs:
            m.records_out(self.pipeline.sink_topic, txn.outputs)
            now_ms = time.time() * 1000
            m.observe_latency([(now_ms - t) / 1000.0 for t in txn.event_times])
        for (error_type, stage), n in txn.dead_letters.items():
            m.dead_letter(error_type, stage, n)
        for (topic, partition), offset in self.committed.items():
            m.set_committed_offset(topic, partition, offset)

    def _handle_kafka_error(self, exc: KafkaException) -> None:
        """Abort and rewind on an abortable error; re-create the producer on a fatal one."""
        error: KafkaError = exc.args[0]
        log.warning("transaction failed: %s", error.str())
        if error.fatal() or not self.exactly_once:
            self.metrics.transaction_aborted("fatal" if error.fatal() else "error")
            self._recreate_producer()
        else:
            self.metrics.transaction_aborted("abortable" if error.txn_requires_abort() else "error")
            try:
                assert self.producer is not None
                self.producer.abort_transaction(30)
            except KafkaException as abort_exc:
                log.warning("abort failed (%s); re-creating the producer", abort_exc.args[0].str())
                self._recreate_producer()
        self.txn = None
        self._rewind()

    def _recreate_producer(self) -> None:
        if self.producer is not None:
            self.producer.purge()
            self.producer.flush(0)
        self.producer = self._make_producer()

    def _rewind(self) -> None:
        """Seeks every assigned partition back to its last committed offset."""
        assert self.consumer is not None
        self.positions = dict(self.committed)
        unknown = [TopicPartition(t, p) for (t, p) in self.assignment if (t, p) not in self.committed]
        targets = {tp: off for tp, off in self.committed.items() if tp in self.assignment}
        if unknown:
            for tp in self.consumer.committed(unknown, timeout=30):
                targets[(tp.topic, tp.partition)] = tp.offset if tp.offset >= 0 else OFFSET_BEGINNING
        for (topic, partition), offset in targets.items():
            try:
                self.consumer.seek(TopicPartition(topic, partition, offset))
            except KafkaException as exc:
                log.warning("seek %s/%s failed: %s", topic, partition, exc)

    # --- rebalances ----------------------------------------------------------------------

    def _on_assign(self, consumer: Consumer, partitions: list[TopicPartition]) -> None:
        self.metrics.rebalance("assigned")
        for tp in partitions:
            key = (tp.topic, tp.partition)
            self.assignment.add(key)
            self.committed.pop(key, None)
            self.positions.pop(key, None)
        committed = consumer.committed(partitions, timeout=30) if partitions else []
        for tp in committed:
            if tp.offset != OFFSET_INVALID and tp.offset >= 0:
                self.committed[(tp.topic, tp.partition)] = tp.offset
                self.positions[(tp.topic, tp.partition)] = tp.offset
        self.metrics.set_assigned_partitions(len(self.assignment))
        log.info("assigned %s", sorted(f"{t}/{p}" for t, p in self.assignment))

    def _on_revoke(self, consumer: Consumer, partitions: list[TopicPartition]) -> None:
        self.metrics.rebalance("revoked")
        self._commit_or_abort()  # finish the open transaction while the generation is valid
        self._forget(partitions)

    def _on_lost(self, consumer: Consumer, partitions: list[TopicPartition]) -> None:
        self.metrics.rebalance("lost")
        if self.txn is not None and self.exactly_once and self.producer is not None:
            try:
                self.producer.abort_transaction(30)
            except KafkaException:
                self._recreate_producer()
            self.txn = None
            self.metrics.transaction_aborted("partitions_lost")
        self._forget(partitions)

    def _forget(self, partitions: list[TopicPartition]) -> None:
        for tp in partitions:
            key = (tp.topic, tp.partition)
            self.assignment.discard(key)
            self.positions.pop(key, None)
            self.committed.pop(key, None)
            self.metrics.remove_partition(tp.topic, tp.partition)
        self.metrics.set_assigned_partitions(len(self.assignment))

    # --- lag -----------------------------------------------------------------------------

    def _update_lag(self) -> None:
        assert self.consumer is not None
        for topic, partition in self.assignment:
            try:
                _low, high = self.consumer.get_watermark_offsets(
                    TopicPartition(topic, partition), cached=True
                )
            except KafkaException:
                continue
            if high < 0:
                continue
            position = self.committed.get((topic, partition))
            if position is None:
                continue
            self.metrics.set_lag(topic, partition, max(0, high - position))
