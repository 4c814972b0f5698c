"""The processing loop: poll, hand the records on, commit when the commit cycle says so.

`Processor.run` makes the consumer and wires the loop's objects, each owning its part:
the record collector (every write, `collector.py`), the commit cycle (the transaction,
`commit.py`), the task manager and its tasks (rebalances and state, `task_manager.py`,
`task.py`), the retry gate (`retry_gate.py`), the repartitioner (`repartition.py`) and
health (`health.py`). A batch runs through the stateless stages as a whole; its records
of the stateful input then go to the task of their partition, run by run.
"""

from __future__ import annotations

import logging
import threading
import time
from dataclasses import dataclass
from functools import partial
from pathlib import Path
from typing import cast

from confluent_kafka import Consumer, KafkaError, KafkaException, Message, TopicPartition

from streamline.errors import StreamlineError
from streamline.kafka.connection import Connection
from streamline.kafka.consumers import group_consumer
from streamline.observability.metrics import Metrics
from streamline.reliability.dead_letter import Failure
from streamline.runtime.batch import process_batch
from streamline.runtime.bounded import UntilCaughtUp
from streamline.runtime.collector import RecordCollector
from streamline.runtime.commit import CommitCycle, TransactionAborted
from streamline.runtime.failures import FailedRecords
from streamline.runtime.health import Heartbeats, Liveness, caught_up
from streamline.runtime.offsets import Offsets
from streamline.runtime.pipeline import Pipeline
from streamline.runtime.producers import TransactionalProducers
from streamline.runtime.record import Record
from streamline.runtime.repartition import RepartitionEncoder, Repartitioner
from streamline.runtime.retry_gate import RetryGate
from streamline.runtime.stages import Map
from streamline.runtime.task import TaskOutputs
from streamline.runtime.task_manager import TaskManager
from streamline.runtime.windowed import SourceWatermarks

log = logging.getLogger("streamline.runtime")


@dataclass
class RunOptions:
    """How one process runs a topology."""

    instance_id: str
    batch_size: int = 2000
    max_records_per_transaction: int = 20000
    session_timeout_ms: int = 10000
    static_membership: bool = False  # group.instance.id = instance_id (run --static-membership)
    transaction_timeout_ms: int = 30000
    state_dir: Path = Path(".streamline/state")
    # /healthz answers 503 once the loop has made no progress for this long (0: never)
    stall_timeout_s: float = 120.0
    until_caught_up: bool = False  # stop once the end offsets seen at start are processed
    max_wait_s: float | None = None


class Processor:
    """Runs one topology in this process until `stop` is set."""

    def __init__(
        self, pipeline: Pipeline, connection: Connection, options: RunOptions, metrics: Metrics
    ) -> None:
        self.pipeline = pipeline
        self.connection = connection
        self.options = options
        self.metrics = metrics
        maps = [stage for stage in pipeline.stages if isinstance(stage, Map)]
        self.liveness = Liveness(options.stall_timeout_s, lambda: [m.progressed_at for m in maps])
        self.bound: UntilCaughtUp | None = None  # made when the run starts

    def healthy(self) -> bool:
        """Whether the loop runs and has made progress within the stall timeout (/healthz)."""
        return self.liveness.healthy()

    @property
    def ready(self) -> bool:
        """Running, with the state of every assigned partition restored (/readyz)."""
        return self.liveness.ready

    def run(self, stop: threading.Event) -> None:
        """Consumes, processes and commits until `stop` is set; then commits and closes the consumer."""
        if self.options.until_caught_up:
            self.bound = UntilCaughtUp(self.pipeline, self.connection, self.options.max_wait_s)
        _Loop(self).run(stop)


def _wall_ms() -> int:
    return int(time.time() * 1000)


class _Loop:
    """One run: the clients and the objects wired around them."""

    def __init__(self, processor: Processor) -> None:
        self.bound = processor.bound  # `run --until-caught-up`: when the run is done
        self.pipeline = pipeline = processor.pipeline
        self.connection = connection = processor.connection
        self.options = options = processor.options
        self.metrics = metrics = processor.metrics
        self.liveness = liveness = processor.liveness
        topology = pipeline.topology
        self.producers = producers = TransactionalProducers(pipeline, connection, options)
        self.collector = collector = RecordCollector(
            producers,
            lambda err, topic: connection.access_error(err, topic=topic, operation="WRITE"),
            pipeline.lineage_outputs,
            sink_checksum=pipeline.sink_checksum,
            warnings=pipeline.warns,
        )
        self.consumer = consumer = group_consumer(
            connection, pipeline.group_id, options.instance_id, options.session_timeout_ms,
            options.static_membership)  # fmt: skip
        self.offsets = offsets = Offsets()
        watermark = topology.source.watermark
        self.source_watermarks = SourceWatermarks(
            watermark.max_out_of_orderness, watermark.idle_timeout
        )
        self.repartitioner: Repartitioner | None = None
        sources = None
        if pipeline.repartition:
            assert topology.key_by is not None
            stateful = pipeline.window_input_topic
            topics = consumer.list_topics(timeout=30).topics
            partitions = len(topics[stateful].partitions)
            sources = [(t, p) for t in pipeline.source_topics for p in topics[t].partitions]
            self.repartitioner = Repartitioner(
                collector, self.source_watermarks, stateful, partitions, RepartitionEncoder.of(topology),
                max(pipeline.commit_interval_ms, watermark.idle_timeout // 2),
                partial(caught_up, consumer, offsets),
            )  # fmt: skip
        self.failed = FailedRecords(collector, pipeline)
        outputs = TaskOutputs(
            collector, self.failed,
            lambda records, failures: pipeline.encode_records(records, failures, metrics),
            pipeline.sink_topic, pipeline.header_topology,
        )  # fmt: skip
        self.tasks = TaskManager(
            pipeline, options.state_dir, connection, consumer, offsets,
            self.source_watermarks, liveness, metrics, outputs, sources, options.instance_id,
            producers.wait,
        )  # fmt: skip
        self.commit = CommitCycle(
            pipeline, options.instance_id, options.max_records_per_transaction, connection,
            consumer, collector, offsets, self.tasks, self.repartitioner,
            self.source_watermarks, metrics, liveness.progressed,
        )  # fmt: skip
        self.gate = (
            RetryGate(consumer, topology.retry_topic, offsets.assignment, TopicPartition)
            if pipeline.retrying
            else None
        )

    def run(self, stop: threading.Event) -> None:
        pipeline = self.pipeline
        topics = list(pipeline.source_topics)
        if pipeline.retrying:
            topics.append(pipeline.topology.retry_topic)
        if pipeline.repartition:
            topics.append(pipeline.window_input_topic)
        self.consumer.subscribe(
            topics, on_assign=self._on_assign, on_revoke=self._on_revoke, on_lost=self._on_lost
        )
        heartbeats = Heartbeats(
            pipeline.topology, self.options.instance_id, self.connection, self.consumer,
            self.offsets, self.source_watermarks, self.tasks.stores, self.metrics,
            pipeline.fingerprint,
        )  # fmt: skip
        self.liveness.progressed()
        self.liveness.alive = True
        self.metrics.set_ready(self.liveness.ready)  # true once assigned and restored
        try:
            while not stop.is_set():
                self._step(heartbeats)
                if self.bound is not None and self.bound.reached(self.commit.txn is not None):
                    stop.set()
            self.commit.commit_or_abort()
        finally:
            self.liveness.alive = False
            self.metrics.set_ready(False)
            self.consumer.close()  # a dynamic member leaves the group; no transaction is open
            self.producers.flush(self.collector, 10)  # unless it never initialised
            heartbeats.close()
            self.tasks.close()

    def _step(self, heartbeats: Heartbeats) -> None:
        self.liveness.progressed()
        messages = self._next_messages()
        if self.gate is not None:
            self.gate.resume_due()
        try:
            batch = self._accept(messages) if messages else []
            if batch and self.gate is not None:
                batch = self.gate.hold(batch)
            if batch or self.pipeline.holds:  # a map's calls of earlier batches complete too
                self._process(batch)
            self._punctuate()  # windows due by time; tables followed while no batch comes
        except TransactionAborted:
            return
        commit = self.commit
        if commit.txn is None and self.repartitioner and self.repartitioner.markers_due():
            commit.begin()  # a transaction just for the markers: their commit writes them
        if commit.due():
            commit.commit_or_abort()
        heartbeats.update_lag()
        if heartbeats.due():
            heartbeats.beat()

    def _next_messages(self) -> list[Message]:
        """The next batch, never waiting past a commit that is due.

        Within an exactly-once transaction, consume() waits for a full batch or a slice of
        the commit interval (batch_wait): outputs are read only after the commit anyway.
        Otherwise (the first record of a transaction, or at-least-once, whose outputs are
        read as soon as they are delivered) a record is taken as soon as it arrives, with
        whatever is queued.
        """
        consumer, commit = self.consumer, self.commit
        if commit.txn is not None and commit.fills_batches:
            return consumer.consume(self.options.batch_size, timeout=commit.batch_wait())
        first = consumer.poll(0.1 if commit.txn is None else commit.batch_wait())
        if first is None:
            return []
        return [first, *consumer.consume(self.options.batch_size - 1, timeout=0)]

    def _accept(self, messages: list[Message]) -> list[Record]:
        """Records of the messages that belong to the current assignment, in order."""
        batch: list[Record] = []
        append = batch.append
        assignment = self.offsets.assignment
        for msg in messages:
            if msg.error() is not None:
                self._consumer_error(cast(KafkaError, msg.error()), msg.topic())
                continue
            topic, partition = msg.topic(), msg.partition()
            if (topic, partition) not in assignment:
                continue
            append(Record(topic, partition, msg.offset(), msg.key(), msg.value(), msg.headers()))  # type: ignore[arg-type]
        return batch

    def _consumer_error(self, error: KafkaError, topic: str | None = None) -> None:
        denied = self.connection.access_error(
            error, topic=topic, operation="READ", group=self.pipeline.group_id
        )
        if denied is not None:
            raise denied
        if error.fatal():
            raise StreamlineError(f"consumer failed: {error.str()}")
        log.warning("consumer: %s", error.str())

    def _process(self, batch: list[Record]) -> None:
        """Runs the batch through the stateless stages, then its stateful input through the tasks."""
        txn = self.commit.open()
        pipeline, metrics = self.pipeline, self.metrics
        failures: list[tuple[Record, Failure]] = []
        try:
            process_batch(
                pipeline, batch, txn, failures, metrics, self.collector, self.source_watermarks,
                self.repartitioner, self.tasks, self.commit.open, _wall_ms,
            )  # fmt: skip
            self.failed.send(failures, txn)
        except KafkaException as exc:
            self.commit.abort(exc)
            raise TransactionAborted() from exc
        self.commit.processed(txn, batch)

    def _punctuate(self) -> None:
        """Emits what the tasks have due by time (windows the watermark has passed)."""
        failures: list[tuple[Record, Failure]] = []
        try:
            self.tasks.punctuate(_wall_ms(), self.commit.open, failures)
            if failures:
                self.failed.send(failures, self.commit.open())
        except KafkaException as exc:
            self.commit.abort(exc)
            raise TransactionAborted() from exc

    # --- rebalances: the task manager's, with the commit cycle's part ------------------

    def _on_assign(self, _consumer: Consumer, partitions: list[TopicPartition]) -> None:
        self.tasks.assign(partitions)

    def _on_revoke(self, _consumer: Consumer, partitions: list[TopicPartition]) -> None:
        self.metrics.rebalance("revoked")
        log.info("revoked %s", sorted(f"{tp.topic}/{tp.partition}" for tp in partitions))
        self.commit.commit_or_abort()  # finish the open transaction while the generation is valid
        self.commit.revoked([(tp.topic, tp.partition) for tp in partitions])
        self.tasks.revoke(partitions)

    def _on_lost(self, _consumer: Consumer, partitions: list[TopicPartition]) -> None:
        self.metrics.rebalance("lost")
        self.commit.lost()
        self.tasks.revoke(partitions, clean=False)
