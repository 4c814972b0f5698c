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
from collections.abc import Iterator
from dataclasses import dataclass, field, replace
from itertools import groupby
from operator import attrgetter
from pathlib import Path
from typing import Any, cast

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

from streamline.errors import StreamlineError
from streamline.kafka.admin import delete_all_records
from streamline.kafka.connection import Connection
from streamline.kafka.consumers import ChangelogReader, restore_consumer
from streamline.observability.heartbeats import HEARTBEATS_TOPIC, heartbeat, partition_freshness
from streamline.observability.lineage import LINEAGE_TOPIC, run_event
from streamline.observability.metrics import Metrics
from streamline.reliability.dead_letter import LATE, MAP, Failure, failure_headers
from streamline.runtime.pipeline import Pipeline
from streamline.runtime.record import ORIGINAL_HEADER, Record
from streamline.runtime.stages import Map
from streamline.runtime.watermark import NO_WATERMARK
from streamline.runtime.windowed import (
    MARKER_HEADER,
    SourceWatermarks,
    WindowSettings,
    WindowTask,
    decode_marker,
    encode_marker,
    encode_repartitioned,
    record_from_repartition,
    restore_task,
)
from streamline.state import WINDOW_STORE
from streamline.state.generation import commit_metadata, generation_of

log = logging.getLogger("streamline.runtime")

TP = tuple[str, int]
RETRY_PASSES = "streamline.retry.topic_attempts"


_partition_of = attrgetter("topic", "partition")


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
    state_dir: Path = Path(".streamline/state")
    # /healthz answers 503 once the loop has made no progress for this long (0: never)
    stall_timeout_s: float = 120.0


@dataclass
class _Transaction:
    """What the open transaction holds, applied to metrics only after it commits."""

    started: float = field(default_factory=time.monotonic)
    records: int = 0
    outputs: int = 0
    event_times: list[int] = field(default_factory=list)
    late: int = 0
    retries: int = 0
    dead_letters: dict[tuple[str, str], int] = field(default_factory=dict)
    consumed: dict[TP, int] = field(default_factory=dict)
    inputs: dict[TP, list[int]] = field(default_factory=dict)
    produced: dict[TP, list[int]] = field(default_factory=dict)


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
        # when the loop last showed progress: a step, a restored chunk, a retried commit
        self._progress_at = time.monotonic()
        self._maps = [stage for stage in pipeline.stages if isinstance(stage, Map)]
        self._stall_reported = False
        self.consumer: Consumer | None = None
        self.producer: Producer | None = None
        # the window stage: a task per window-input partition, and the source watermarks
        # that travel to the repartition partitions as markers
        self.windows = (
            WindowSettings.of(pipeline.topology, options.state_dir) if pipeline.windowed else None
        )
        self.tasks: dict[int, WindowTask] = {}
        self._restore_consumer: Consumer | None = None
        self.source_watermarks = SourceWatermarks(
            pipeline.topology.source.watermark.max_out_of_orderness,
            pipeline.topology.source.watermark.idle_timeout,
        )
        self.source_partitions: list[tuple[str, int]] = []
        self._changelog_offsets: dict[int, int] = {}
        self._repartition_partitions: int | None = None
        # the state generation (from committed offsets' metadata); partitions to start at an offset
        self.generation = 0
        self._skip_to: dict[tuple[str, int], int] = {}
        self.restoring = False
        self.joined = False
        self._heartbeat_at = 0.0
        self._paused: dict[tuple[str, int], float] = {}
        topology = pipeline.topology
        self._lineage_outputs = {
            topology.sink.topic,
            topology.dead_letter_topic,
            topology.late_topic,
            topology.retry_topic,
            topology.repartition_topic,
        }
        self._heartbeat_interval_s = pipeline.topology.freshness.heartbeat_interval / 1000
        self._heartbeats = False
        self._heartbeat_producer: Producer | None = None
        self._denied: StreamlineError | None = None  # a write the broker's ACLs refused
        self._undelivered: KafkaError | None = None  # an output of the open batch that failed
        # markers go out when a source watermark or idleness changes, and as a keepalive
        self._markers_sent: dict[tuple[str, int], tuple[int, bool]] = {}
        self._markers_sent_at = 0
        self._marker_keepalive_ms = max(
            pipeline.commit_interval_ms, pipeline.topology.source.watermark.idle_timeout // 2
        )

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
                # a member notices a rebalance at its next heartbeat: within half a second
                "heartbeat.interval.ms": max(100, min(500, self.options.session_timeout_ms // 10)),
                "enable.partition.eof": False,
                "fetch.wait.max.ms": 50,
                # partition n of every input topic to the same instance: a window task reads
                # its source partition and the retry partition of the same number
                "partition.assignment.strategy": "range",
            },
            log_level=3,
        )
        return Consumer(conf, logger=log)

    @property
    def repartition_partitions(self) -> int:
        if self._repartition_partitions is None:
            assert self.consumer is not None
            topic = self.pipeline.window_input_topic
            metadata = self.consumer.list_topics(topic, timeout=30)
            self._repartition_partitions = len(metadata.topics[topic].partitions)
        return self._repartition_partitions

    def _make_producer(self) -> Producer:
        conf: dict[str, Any] = {
            "on_delivery": self._delivered,
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
            try:
                producer.init_transactions(60)
            except KafkaException as exc:
                tid = conf["transactional.id"]
                denied = self.connection.access_error(exc.args[0], transactional_id=tid)
                if denied is None:
                    raise
                raise denied from None
        return producer

    # --- main loop -----------------------------------------------------------------------

    def run(self, stop: threading.Event) -> None:
        """Consumes, processes and commits until `stop` is set; then commits and leaves the group."""
        self.producer = self._make_producer()
        self.consumer = self._make_consumer()
        topics = list(self.pipeline.source_topics)
        if self.pipeline.retrying:
            topics.append(self.pipeline.topology.retry_topic)
        if self.pipeline.repartition:
            topics.append(self.pipeline.window_input_topic)
            self.source_partitions = self._source_partitions()
        self.consumer.subscribe(
            topics,
            on_assign=self._on_assign,
            on_revoke=self._on_revoke,
            on_lost=self._on_lost,
        )
        self._heartbeats = HEARTBEATS_TOPIC in self.consumer.list_topics(timeout=30).topics
        if not self._heartbeats:
            log.warning(
                "heartbeats are off: topic %s does not exist (streamline topics create "
                "TOPOLOGY creates it)",
                HEARTBEATS_TOPIC,
            )
        self._progress_at = time.monotonic()
        self.alive = True
        self.metrics.set_ready(self.ready)  # true once the group has assigned and restored
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
            if self._heartbeat_producer is not None:
                self._heartbeat_producer.flush(5)
            for task in self.tasks.values():
                task.close()
            self.tasks.clear()
            if self._restore_consumer is not None:
                self._restore_consumer.close()
                self._restore_consumer = None

    def _source_partitions(self) -> list[tuple[str, int]]:
        assert self.consumer is not None
        metadata = self.consumer.list_topics(timeout=30)
        return [(t, p) for t in self.pipeline.source_topics for p in metadata.topics[t].partitions]

    def _step(self) -> None:
        assert self.consumer is not None
        self._progress_at = time.monotonic()
        messages = self._next_messages(self.consumer)
        self._resume_due()
        if messages:
            batch = self._hold_until_due(self._accept(messages))
            if batch:
                try:
                    self._process(batch)
                except TransactionAborted:
                    return
        if self.tasks:
            try:
                self._fire_windows()
            except TransactionAborted:
                return
        if self.txn is None and self._markers_due():
            self._begin()  # a transaction just for the markers: their commit writes them
        if self.txn is not None and self._commit_due():
            self._commit_or_abort()
        self._update_lag()
        if time.monotonic() - self._heartbeat_at >= self._heartbeat_interval_s:
            self._heartbeat()

    def _next_messages(self, consumer: Consumer) -> list[Message]:
        """The next batch: at once when records arrive, never waiting past a commit that is due.

        consume() waits for a full batch or its timeout. Without an open transaction
        the first record starts one (its commit follows within commit_interval), so
        that record is taken as soon as it arrives, with whatever else is queued.
        """
        batch_size = self.options.batch_size
        if self.txn is None:
            first = consumer.poll(0.1)
            if first is None:
                return []
            return [first, *consumer.consume(batch_size - 1, timeout=0)]
        due = self.txn.started + self.pipeline.commit_interval_ms / 1000 - time.monotonic()
        return consumer.consume(batch_size, timeout=min(0.1, max(due, 0.0)))

    def _accept(self, messages: list[Message]) -> list[Record]:
        """Records of the messages that belong to the current assignment, in order."""
        batch: list[Record] = []
        append = batch.append
        assignment = self.assignment
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

    def _commit_due(self) -> bool:
        txn = self.txn
        assert txn is not None
        return (
            (time.monotonic() - txn.started) * 1000 >= self.pipeline.commit_interval_ms
            or txn.records >= self.options.max_records_per_transaction
        )

    # --- processing ----------------------------------------------------------------------

    def _process(self, batch: list[Record]) -> None:
        if self.txn is None:
            self._begin()
        txn = self.txn
        assert txn is not None
        failures: list[tuple[Record, Failure]] = []
        try:
            if self.windows is None:
                outputs = self.pipeline.process(batch, failures, self.metrics)
                self._observe(r for r, _ in outputs)
                self._emit(outputs)
            else:
                self._process_windowed(batch, failures)
            for record, failure in failures:
                if failure.error_type == MAP and self.pipeline.retrying:
                    self._retry_or_dead_letter(record, failure)
                else:
                    self._dead_letter(record, failure)
        except KafkaException as exc:
            self._handle_kafka_error(exc)
            raise TransactionAborted() from exc
        txn.records += len(batch)
        # Runs of one partition: the consumer hands out messages partition by partition.
        for tp, run in groupby(batch, _partition_of):
            records = list(run)
            first, last = records[0].offset, records[-1].offset
            self.positions[tp] = last + 1
            txn.consumed[tp] = txn.consumed.get(tp, 0) + len(records)
            span = txn.inputs.get(tp)
            if span is None:
                txn.inputs[tp] = [first, last]
            else:
                span[1] = last

    def _emit(self, outputs: list[tuple[Record, bytes]]) -> None:
        """Produces sink records into the open transaction."""
        assert self.producer is not None and self.txn is not None
        produce = self.producer.produce
        sink = self.pipeline.sink_topic
        header = self.pipeline.header_topology
        event_times = self.txn.event_times
        for record, value in outputs:
            headers: list[tuple[str, str | bytes | None]] = [
                ("streamline.topology", header),
                ("streamline.source", record.source_range()),
                ("streamline.event_time", str(record.event_time).encode()),
            ]
            try:  # per output record: the common case without _produce's call
                produce(sink, value=value, key=record.out_key, headers=headers)
            except BufferError:
                self._produce(produce, sink, record.out_key, value, headers)
            event_times.append(record.event_time)
        self.txn.outputs += len(outputs)

    def _dead_letter(
        self,
        record: Record,
        failure: Failure,
        topic: str | None = None,
        extra: list[tuple[str, bytes]] | None = None,
        to_partition: int = -1,
    ) -> None:
        assert self.producer is not None and self.txn is not None
        source_topic, partition, offset = record.origin()
        own = (
            record.headers
            if (source_topic, partition, offset) == (record.topic, record.partition, record.offset)
            else None
        )
        headers = failure_headers(failure, source_topic, partition, offset, own)
        if extra:
            headers += extra
        key, raw = record.original()
        self._produce(
            self.producer.produce,
            topic or self.pipeline.dead_letter_topic,
            key,
            raw,
            headers,
            to_partition,
        )
        slot = (failure.error_type, failure.stage)
        if topic is None:
            self.txn.dead_letters[slot] = self.txn.dead_letters.get(slot, 0) + 1

    # --- the retry topic -----------------------------------------------------------------

    def _retry_or_dead_letter(self, record: Record, failure: Failure) -> None:
        """A map failure goes to the retry topic, with a not-before time, until its passes run out."""
        passes = int(record.header(RETRY_PASSES) or b"0")
        total = int(record.header("streamline.attempts") or b"0") + failure.attempts
        counted = replace(failure, attempts=total)
        retry = self.pipeline.topology.retry
        if passes >= retry.topic_attempts:
            self._dead_letter(record, counted)
            return
        policy = self.pipeline.retry_policy
        not_before = int(
            time.time() * 1000 + policy.backoff_ms(total)
        )  # the backoff goes on growing
        # Windows kept per source partition: the retry goes to the same partition number,
        # which the range assignment gives to the instance holding that partition's state.
        colocated = self.windows is not None and not self.pipeline.repartition
        self._dead_letter(
            record,
            counted,
            topic=self.pipeline.topology.retry_topic,
            extra=[
                (RETRY_PASSES, str(passes + 1).encode()),
                ("streamline.retry.not_before", str(not_before).encode()),
            ],
            to_partition=record.origin()[1] if colocated else -1,
        )
        assert self.txn is not None
        self.txn.retries += 1

    def _hold_until_due(self, batch: list[Record]) -> list[Record]:
        """Drops retry records not due yet (and what follows them); their partition waits paused."""
        if not self.pipeline.retrying:
            return batch
        assert self.consumer is not None
        topic = self.pipeline.topology.retry_topic
        now = time.time() * 1000
        held: set[int] = set()
        out = []
        for record in batch:
            if record.topic != topic:
                out.append(record)
                continue
            if record.partition in held:
                continue
            due = int(record.header("streamline.retry.not_before") or b"0")
            if due > now:
                held.add(record.partition)
                tp = TopicPartition(topic, record.partition, record.offset)
                self.consumer.pause([tp])
                self.consumer.seek(tp)
                self._paused[(topic, record.partition)] = due
                continue
            out.append(record)
        return out

    def _resume_due(self) -> None:
        if not self._paused:
            return
        assert self.consumer is not None
        now = time.time() * 1000
        for (topic, partition), due in list(self._paused.items()):
            if due <= now:
                del self._paused[(topic, partition)]
                if (topic, partition) in self.assignment:
                    self.consumer.resume([TopicPartition(topic, partition)])

    # --- the window stage ----------------------------------------------------------------

    def _process_windowed(
        self, batch: list[Record], failures: list[tuple[Record, Failure]]
    ) -> None:
        assert self.windows is not None and self.producer is not None
        window_topic = self.pipeline.window_input_topic
        sources = [r for r in batch if r.topic != window_topic or not self.pipeline.repartition]
        keyed = self.pipeline.run_stages(sources, failures, self.metrics) if sources else []
        wall_ms = int(time.time() * 1000)
        if not self.pipeline.repartition:
            self._observe(keyed)
        if self.pipeline.repartition:
            self._repartition(keyed, wall_ms)
            window_input = [r for r in batch if r.topic == window_topic]
        else:
            window_input = keyed
        key_name = self.windows.key_name
        retry_topic = self.pipeline.topology.retry_topic
        for record in window_input:
            partition, seq = record.partition, record.offset
            if record.topic == retry_topic:  # back from the retry topic: its source's window state
                _, partition, seq = record.origin()
            task = self.tasks.get(partition)
            if task is None:  # never with range assignment and co-partitioned topics; not silent
                failures.append(
                    (
                        record,
                        Failure(
                            "aggregate",
                            f"the window state of partition {partition} is not on this instance",
                            self._window_stage_name(),
                        ),
                    )
                )
                continue
            if self.pipeline.repartition:
                headers = dict(record.headers or [])
                marker = headers.get(MARKER_HEADER)
                if marker is not None:
                    task.marker(*decode_marker(marker), wall_ms)
                    continue
                record.value, record.event_time, _original = record_from_repartition(record)
            key = (
                record.value.get(key_name)
                if self.pipeline.repartition
                else (record.out_key.decode() if record.out_key is not None else None)
            )
            try:
                result, watermark = task.add(
                    str(key), record.value, record.event_time, seq, wall_ms
                )
            except (KeyError, TypeError, ValueError) as exc:
                failures.append(
                    (
                        record,
                        Failure(
                            "aggregate", f"cannot aggregate: {exc!r}", self._window_stage_name()
                        ),
                    )
                )
                continue
            if result.late_reason is not None:
                self._late(record, result.late_reason, watermark)
            elif result.updates:
                self._emit_results(task, result.updates, failures)
        self._fire_windows(failures)

    def _observe(self, records: Any) -> None:
        """Source partitions' event-time progress (for heartbeats and markers)."""
        wall_ms = int(time.time() * 1000)
        observe = self.source_watermarks.observe
        for record in records:
            observe((record.topic, record.partition), record.event_time, wall_ms)

    def _window_stage_name(self) -> str:
        return f"stages[{len(self.pipeline.topology.stages) - 1}].window"

    def _repartition(self, records: list[Record], wall_ms: int) -> None:
        """Writes keyed records to `<name>.repartition`, carrying event time and the original bytes."""
        assert self.producer is not None
        produce = self.producer.produce
        topic = self.pipeline.window_input_topic
        key_name = self.windows.key_name if self.windows else ""
        for record in records:
            self.source_watermarks.observe(
                (record.topic, record.partition), record.event_time, wall_ms
            )
            value = dict(record.value)
            value[key_name] = record.out_key.decode() if record.out_key is not None else None
            headers = [
                ("streamline.event_time", str(record.event_time).encode()),
                (ORIGINAL_HEADER, record.raw or b""),
                ("streamline.source.topic", record.topic.encode()),
                ("streamline.source.partition", str(record.partition).encode()),
                ("streamline.source.offset", str(record.offset).encode()),
            ]
            if record.key is not None:
                headers.append(("streamline.source.key", record.key))
            self._produce(produce, topic, record.out_key, encode_repartitioned(value), headers)

    def _late(self, record: Record, reason: str, watermark: int) -> None:
        assert self.txn is not None
        failure = Failure(LATE, reason, self._window_stage_name())
        self._dead_letter(
            record,
            failure,
            topic=self.pipeline.topology.late_topic,
            extra=[("streamline.watermark", str(watermark).encode())],
        )
        self.txn.late += 1

    def _fire_windows(self, failures: list[tuple[Record, Failure]] | None = None) -> None:
        """Emits the windows the watermark has passed, in the open transaction."""
        wall_ms = int(time.time() * 1000)
        own = failures if failures is not None else []
        for task in self.tasks.values():
            results = task.fire(wall_ms)
            if results:
                if self.txn is None:
                    self._begin()
                try:
                    self._emit_results(task, results, own)
                except KafkaException as exc:
                    self._handle_kafka_error(exc)
                    raise TransactionAborted() from exc
        if failures is None:
            for record, failure in own:
                self._dead_letter(record, failure)

    def _emit_results(
        self, task: WindowTask, results: Any, failures: list[tuple[Record, Failure]]
    ) -> None:
        assert self.windows is not None
        records = []
        for result in results:
            record = Record(task.topic, task.partition, result.min_seq, None, None, None)
            record.last_offset = result.max_seq
            record.value = self.windows.result_value(result)
            record.event_time = result.max_event_time
            record.out_key = result.key.encode()
            records.append(record)
        self._emit(self.pipeline.encode_records(records, failures, self.metrics))

    def _produce(
        self,
        produce: Any,
        topic: str,
        key: bytes | None,
        value: bytes | None,
        headers: Any,
        partition: int = -1,
    ) -> None:
        while True:
            try:
                produce(topic, value=value, key=key, headers=headers, partition=partition)
                return
            except BufferError:  # the local queue is full: let deliveries drain
                assert self.producer is not None
                self.producer.poll(0.05)

    # --- the commit cycle ----------------------------------------------------------------

    def _begin(self) -> None:
        assert self.producer is not None
        self._undelivered = None
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
        self._write_markers()
        self._write_changelog()
        if self.pipeline.topology.lineage and (txn.inputs or txn.outputs):
            self._write_lineage(txn)
        metadata = commit_metadata(self.generation)
        offsets = [
            TopicPartition(t, p, off, metadata=metadata)
            for (t, p), off in self.positions.items()
            if (t, p) in self.assignment
        ]
        if self.exactly_once:
            self.producer.send_offsets_to_transaction(
                offsets, self.consumer.consumer_group_metadata(), 30
            )
            producer = self.producer
            self._retrying(lambda: producer.commit_transaction(30))
        else:
            remaining = self.producer.flush(60)
            if remaining:
                raise KafkaException(
                    KafkaError(KafkaError._MSG_TIMED_OUT, "outputs not delivered", retriable=True)
                )
            if self._undelivered is not None:  # committing would lose it: rewind and redo
                raise KafkaException(self._undelivered)
            if offsets:
                self.consumer.commit(offsets=offsets, asynchronous=False)
        self.txn = None
        self.committed.update(self.positions)
        self._apply_state()
        self._committed_metrics(txn, time.monotonic() - started)

    def _write_lineage(self, txn: _Transaction) -> None:
        """The transaction's RunEvent: delivered output ranges are known after a flush."""
        assert self.producer is not None
        if self.producer.flush(60):
            raise KafkaException(KafkaError(KafkaError._MSG_TIMED_OUT, "outputs not delivered"))
        topology = self.pipeline.topology
        event = run_event(
            topology.name,
            topology.version,
            topology.fingerprint,
            self.pipeline.transactional_id(self.options.instance_id),
            self.connection.bootstrap_servers,
            {tp: (a, b) for tp, (a, b) in txn.inputs.items()},
            {tp: (a, b) for tp, (a, b) in txn.produced.items()},
        )
        self._produce(self.producer.produce, LINEAGE_TOPIC, topology.name.encode(), event, [])

    def _delivered(self, err: KafkaError | None, msg: Message) -> None:
        """Delivery report of an output: widens the open transaction's produced range."""
        txn = self.txn
        if err is not None:
            self._note_denied(err, msg)
            return
        if txn is None or msg.topic() not in self._lineage_outputs:
            return
        offset = msg.offset()
        if offset is None:
            return
        tp = (cast(str, msg.topic()), cast(int, msg.partition()))
        span = txn.produced.get(tp)
        if span is None:
            txn.produced[tp] = [offset, offset]
        else:
            span[0] = min(span[0], offset)
            span[1] = max(span[1], offset)

    def _markers_due(self) -> bool:
        """Whether a source partition's watermark or idleness changed, or a keepalive is due."""
        if not self.pipeline.repartition or not self.source_watermarks.trackers:
            return False
        wall_ms = int(time.time() * 1000)
        if wall_ms - self._markers_sent_at >= self._marker_keepalive_ms:
            return True
        return any(
            self._markers_sent.get(tp) != (w, idle)
            for tp, w, idle in self.source_watermarks.markers(wall_ms, self._caught_up)
        )

    def _caught_up(self, tp: tuple[str, int]) -> bool:
        """Whether this process has read everything the partition holds (no backlog)."""
        assert self.consumer is not None
        try:
            _low, high = self.consumer.get_watermark_offsets(TopicPartition(*tp), cached=True)
        except KafkaException:
            return False
        position = self.positions.get(tp, self.committed.get(tp))
        return high >= 0 and position is not None and position >= high

    def _write_markers(self) -> None:
        """Every assigned source partition's watermark, to every repartition partition."""
        if not self.pipeline.repartition or not self.source_watermarks.trackers:
            return
        assert self.producer is not None
        topic = self.pipeline.window_input_topic
        wall_ms = int(time.time() * 1000)
        self._markers_sent_at = wall_ms
        for source, watermark, idle in self.source_watermarks.markers(wall_ms, self._caught_up):
            self._markers_sent[source] = (watermark, idle)
            marker = [(MARKER_HEADER, encode_marker(source, watermark, idle))]
            for partition in range(self.repartition_partitions):
                self._produce(self.producer.produce, topic, None, None, marker, partition)

    def _write_changelog(self) -> None:
        """The state changes of the open transaction, to the compacted changelog."""
        assert self.producer is not None
        topic = self.pipeline.changelog_topic
        for partition, task in self.tasks.items():
            changes = task.store.pending_changes()
            if not changes:
                continue
            delivered = self._changelog_delivered(partition)
            for key, value in changes:
                while True:
                    try:
                        self.producer.produce(
                            topic, value=value, key=key, partition=partition, on_delivery=delivered
                        )
                        break
                    except BufferError:
                        self.producer.poll(0.05)

    def _changelog_delivered(self, partition: int) -> Any:
        offsets = self._changelog_offsets

        def delivered(err: KafkaError | None, msg: Message) -> None:
            if err is None:
                offset = msg.offset()
                if offset is not None and offset + 1 > offsets.get(partition, 0):
                    offsets[partition] = offset + 1
            else:
                self._note_denied(err, msg)

        return delivered

    def _note_denied(self, err: KafkaError, msg: Message) -> None:
        """Remembers a failed write (with at_least_once its commit must not happen) and
        a write the ACLs refused: the transaction fails with it, naming the topic."""
        if self._undelivered is None:
            self._undelivered = err
        if self._denied is None:
            self._denied = self.connection.access_error(err, topic=msg.topic(), operation="WRITE")

    def _apply_state(self) -> None:
        """After a commit: the stores apply their changes and record the changelog position.

        The position is the highest delivered changelog offset seen so far; when the
        delivery reports of this transaction have not been served yet, it lags behind,
        and a restore replays a little more than needed, which whole-value records allow.
        """
        if not self.tasks:
            return
        assert self.producer is not None
        self.producer.poll(0)  # serve the changelog delivery reports that are ready
        for partition, task in self.tasks.items():
            if not task.store.pending_count:
                continue
            checkpoint = task.store.checkpoint()
            known = checkpoint.changelog_offset if checkpoint is not None else 0
            task.store.commit(max(known, self._changelog_offsets.get(partition, 0)))

    def _reset_state(self) -> None:
        """After an abort: drop uncommitted state and watermarks moved by the aborted records."""
        wall_ms = int(time.time() * 1000)
        for task in self.tasks.values():
            task.store.rollback()
            task.reset_watermark(wall_ms)
        for tp in list(self.source_watermarks.trackers):
            self.source_watermarks.assign(tp, wall_ms)

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
                self._progress_at = time.monotonic()

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
        if txn.late:
            m.late(self.pipeline.topology.late_topic, txn.late)
        if txn.retries:
            m.retry("map", txn.retries)
        for (topic, partition), offset in self.committed.items():
            m.set_committed_offset(topic, partition, offset)

    def _handle_kafka_error(self, exc: KafkaException) -> None:
        """Abort and rewind on an abortable error; re-create the producer on a fatal one."""
        error: KafkaError = exc.args[0]
        if self.producer is not None:
            self.producer.poll(0)  # failed deliveries may say why: a write the ACLs refuse
            if self.exactly_once and error.code() == KafkaError._STATE:
                try:  # the transaction failed earlier: a commit fails at once, saying why
                    self.producer.commit_transaction(5)
                except KafkaException as failed:
                    error = failed.args[0]
        denied = self._denied or self.connection.access_error(
            error,
            group=self.pipeline.group_id,
            transactional_id=self.pipeline.transactional_id(self.options.instance_id),
            writes=self.pipeline.owned_topics,
        )
        if denied is not None:  # retrying cannot help: stop with what to grant
            self.txn = None  # left to the broker to abort, so leaving the group commits nothing
            raise denied
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
        if self.producer is not None:
            self.producer.poll(0)  # delivery reports of the aborted transaction go nowhere
        self._reset_state()
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
        unknown = [
            TopicPartition(t, p) for (t, p) in self.assignment if (t, p) not in self.committed
        ]
        targets = {tp: off for tp, off in self.committed.items() if tp in self.assignment}
        if unknown:
            for tp in self.consumer.committed(unknown, timeout=30):
                targets[(tp.topic, tp.partition)] = (
                    tp.offset if tp.offset >= 0 else OFFSET_BEGINNING
                )
        for (topic, partition), offset in targets.items():
            try:
                self.consumer.seek(TopicPartition(topic, partition, offset))
            except KafkaException as exc:
                log.warning("seek %s/%s failed: %s", topic, partition, exc)

    # --- rebalances ----------------------------------------------------------------------

    def _on_assign(self, consumer: Consumer, partitions: list[TopicPartition]) -> None:
        self.metrics.rebalance("assigned")
        self.restoring = True
        self.metrics.set_ready(False)
        for tp in partitions:
            key = (tp.topic, tp.partition)
            self.assignment.add(key)
            self.committed.pop(key, None)
            self.positions.pop(key, None)
        committed = consumer.committed(partitions, timeout=30) if partitions else []
        rewound: list[tuple[str, int]] = []
        for tp in committed:
            if tp.offset != OFFSET_INVALID and tp.offset >= 0:
                self.committed[(tp.topic, tp.partition)] = tp.offset
                self.positions[(tp.topic, tp.partition)] = tp.offset
                generation = generation_of(tp.metadata)
                if generation is None:
                    rewound.append((tp.topic, tp.partition))
                else:
                    self.generation = max(self.generation, generation)
        self.metrics.set_assigned_partitions(len(self.assignment))
        log.info("assigned %s", sorted(f"{t}/{p}" for t, p in self.assignment))
        if self.windows is not None:
            self._assign_windows(partitions, rewound)
        wall_ms = int(time.time() * 1000)  # idleness counts from when processing can start
        for tp in partitions:
            if tp.topic in self.pipeline.source_topics:
                self.source_watermarks.assign((tp.topic, tp.partition), wall_ms)
        self.joined = True
        self.restoring = False
        self.metrics.set_ready(True)

    def healthy(self) -> bool:
        """Whether the loop runs and has made progress within the stall timeout (/healthz).

        Progress is a step of the loop, a record through a map (user code may be slow),
        a chunk of a restore or a retried commit; a loop stuck in user code or a hung call
        shows none, and a liveness probe then restarts the process.
        """
        if not self.alive:
            return False
        timeout = self.options.stall_timeout_s
        if timeout <= 0:
            return True
        last = max([self._progress_at, *(m.progressed_at for m in self._maps)])
        stalled = time.monotonic() - last
        if stalled < timeout:
            self._stall_reported = False
            return True
        if not self._stall_reported:  # said once per stall, from the probe's thread
            self._stall_reported = True
            log.error(
                "no progress for %.0f s (stall timeout %.0f s): the processing loop is stuck, "
                "/healthz answers 503",
                stalled,
                timeout,
            )
        return False

    @property
    def ready(self) -> bool:
        """Running, with the state of every assigned partition restored."""
        return self.alive and self.joined and not self.restoring

    def _assign_windows(
        self, partitions: list[TopicPartition], rewound: list[tuple[str, int]]
    ) -> None:
        """Opens and restores the window tasks; rebuilds state whose input was rewound elsewhere."""
        assert self.windows is not None and self.consumer is not None
        rebuild = self._rebuild_after_rewind(rewound) if rewound else set()
        if self.windows.generation != self.generation:
            self.windows = replace(self.windows, generation=self.generation)
        for tp in partitions:
            if tp.topic == self.pipeline.window_input_topic:
                self._open_task(tp.topic, tp.partition, wipe=tp.partition in rebuild)
        skipped = [tp for tp in partitions if (tp.topic, tp.partition) in self._skip_to]
        if skipped:  # start the skipped partitions at their end instead of the committed offset
            for tp in partitions:
                tp.offset = self._skip_to.get((tp.topic, tp.partition), OFFSET_INVALID)
            self.consumer.assign(partitions)
        self._skip_to.clear()

    def _rebuild_after_rewind(self, rewound: list[tuple[str, int]]) -> set[int]:
        """Offsets reset by another tool: drops the state built from the input read again.

        Returns the window partitions whose state is rebuilt. Without repartitioning,
        those are the rewound partitions; with it, every window partition (the input
        feeds them all): their unread repartition backlog is skipped, and a new
        generation makes other instances drop their local copies.
        """
        assert self.consumer is not None
        topic = self.pipeline.window_input_topic
        if self.pipeline.repartition:
            if not any(t in self.pipeline.source_topics for t, _ in rewound):
                return set()
            partitions = set(range(self.repartition_partitions))
            self.generation += 1
            for p in partitions:
                _low, high = self.consumer.get_watermark_offsets(
                    TopicPartition(topic, p), timeout=30
                )
                self._skip_to[(topic, p)] = high
                if (topic, p) in self.assignment:
                    self.committed[(topic, p)] = self.positions[(topic, p)] = high
        else:
            partitions = {p for t, p in rewound if t == topic}
        delete_all_records(self.connection, self.pipeline.changelog_topic, sorted(partitions))
        log.warning(
            "offsets of %s were reset outside streamline: window state of partitions %s is "
            "rebuilt from the input read again, so nothing is counted twice",
            ", ".join(f"{t}/{p}" for t, p in rewound),
            sorted(partitions),
        )
        return partitions

    def _on_revoke(self, consumer: Consumer, partitions: list[TopicPartition]) -> None:
        self.metrics.rebalance("revoked")
        log.info("revoked %s", sorted(f"{tp.topic}/{tp.partition}" for tp in partitions))
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
            self._reset_state()
            self.metrics.transaction_aborted("partitions_lost")
        self._forget(partitions)

    def _forget(self, partitions: list[TopicPartition]) -> None:
        for tp in partitions:
            key = (tp.topic, tp.partition)
            self.assignment.discard(key)
            self.positions.pop(key, None)
            self.committed.pop(key, None)
            self.metrics.remove_partition(tp.topic, tp.partition)
            self.source_watermarks.revoke(key)
            if tp.topic == self.pipeline.window_input_topic and tp.partition in self.tasks:
                self.tasks.pop(tp.partition).close()
                self.metrics.remove_store_partition(WINDOW_STORE, tp.partition)
        self.metrics.set_assigned_partitions(len(self.assignment))

    def _open_task(self, topic: str, partition: int, wipe: bool = False) -> None:
        """Opens the partition's store and restores it from the changelog before processing."""
        assert self.windows is not None
        if partition in self.tasks:
            return
        sources = self.source_partitions if self.pipeline.repartition else None
        task = WindowTask(self.windows, topic, partition, sources, int(time.time() * 1000))
        if wipe:
            task.store.wipe()
        if self._restore_consumer is None:  # one for every restore of this process
            self._restore_consumer = restore_consumer(self.connection)
        reader = ChangelogReader(
            self.connection, self.pipeline.changelog_topic, partition, self._restore_consumer
        )
        high = reader.high_watermark()

        def read(start: int) -> Iterator[list[tuple[bytes, bytes | None]]]:
            # restore progress on /metrics while the restore blocks the loop
            self.metrics.set_restore_remaining(WINDOW_STORE, partition, max(0, high - start))
            for chunk in reader.read(start):
                self._progress_at = time.monotonic()
                yield chunk
                remaining = max(0, high - reader.end)
                self.metrics.set_restore_remaining(WINDOW_STORE, partition, remaining)

        replayed = restore_task(task, high, read, lambda: reader.end)
        self.metrics.set_restore_remaining(WINDOW_STORE, partition, 0)
        task.started(int(time.time() * 1000))  # idleness counts from when processing can start
        self.metrics.restored(WINDOW_STORE, partition, replayed)
        self.tasks[partition] = task

    # --- freshness -----------------------------------------------------------------------

    def _heartbeat(self) -> None:
        """Publishes this instance's freshness (outside transactions) and the matching gauges."""
        self._heartbeat_at = time.monotonic()
        assert self.consumer is not None
        topology = self.pipeline.topology
        freshness = topology.freshness
        wall_ms = int(time.time() * 1000)
        partitions = []
        for (topic, partition), tracker in sorted(self.source_watermarks.trackers.items()):
            try:
                _low, high = self.consumer.get_watermark_offsets(
                    TopicPartition(topic, partition), cached=True
                )
            except KafkaException:
                high = -1
            known = tracker.max_event_time_ms != NO_WATERMARK
            state = partition_freshness(
                topic,
                partition,
                tracker.watermark if known else None,
                tracker.max_event_time_ms if known else None,
                self.committed.get((topic, partition)),
                high,
                wall_ms,
                freshness.max_staleness,
                freshness.breach_after,
            )
            partitions.append(state)
            if state.watermark is not None and state.staleness_ms is not None:
                self.metrics.set_watermark(topic, partition, state.watermark)
                self.metrics.set_watermark_lag(topic, partition, state.staleness_ms / 1000)
                self.metrics.set_staleness(topic, partition, state.staleness_ms / 1000)
            self.metrics.set_sla_status(topic, partition, state.status)
        for partition, task in self.tasks.items():
            self.metrics.set_state_keys(WINDOW_STORE, partition, task.store.approx_keys())
        if not self._heartbeats:
            return
        if self._heartbeat_producer is None:
            self._heartbeat_producer = Producer(self.connection.config(log_level=3), logger=log)
        document = heartbeat(
            topology.name,
            topology.version,
            topology.fingerprint,
            self.options.instance_id,
            wall_ms,
            partitions,
        )
        try:
            self._heartbeat_producer.produce(
                HEARTBEATS_TOPIC, key=topology.name.encode(), value=document
            )
            self._heartbeat_producer.poll(0)
        except (BufferError, KafkaException) as exc:
            log.warning("heartbeat not sent: %s", exc)

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
