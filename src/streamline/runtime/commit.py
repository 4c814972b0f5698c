"""The commit cycle: one transaction from its first record to its commit, abort or rewind.

Exactly-once (EOS v2, KIP-447): `transactional.id = <topology>-<instance>`, the consumer
reads `read_committed` with manual commits, and each transaction carries the outputs,
the dead letters, the changelog records and the consumed offsets
(`send_offsets_to_transaction` with the group metadata, so a zombie whose group
generation is stale cannot commit). On an abortable error the transaction is aborted,
the stores rolled back and the consumer rewound to the last committed offsets; a fatal
producer error re-creates the producer, except a fenced producer (another process took
over the transactional id), which stops the instance (`ProducerFenced`). With `at_least_once`, outputs are flushed before
the offsets are committed.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Callable, Mapping
from typing import Any, NoReturn, Protocol

from confluent_kafka import (
    OFFSET_BEGINNING,
    Consumer,
    KafkaError,
    KafkaException,
    Producer,
    TopicPartition,
)

from streamline.errors import StreamlineError
from streamline.kafka.connection import Connection
from streamline.observability.lineage import LINEAGE_TOPIC, run_event
from streamline.observability.metrics import Metrics
from streamline.runtime.call_window import pipelined_calls
from streamline.runtime.collector import RecordCollector
from streamline.runtime.offsets import Offsets
from streamline.runtime.pipeline import Pipeline
from streamline.runtime.record import Record
from streamline.runtime.sinks.lineage import sink_datasets
from streamline.runtime.sinks.webhook import WebhookSender
from streamline.runtime.transaction import Transaction
from streamline.runtime.windowed import SourceWatermarks
from streamline.state.generation import commit_metadata

log = logging.getLogger("streamline.runtime")

TP = tuple[str, int]


BATCH_SLICES = 10
"""A batch of the open transaction waits at most this fraction of the commit interval."""
MAX_BATCH_WAIT_S = 0.1

FENCED = frozenset(
    {KafkaError._FENCED, KafkaError.PRODUCER_FENCED, KafkaError.INVALID_PRODUCER_EPOCH}
)
"""A newer producer with the same transactional id took over (it called init_transactions)."""


def fenced(error: KafkaError) -> bool:
    """Whether the producer was fenced for good (not an error the transaction's abort clears)."""
    return error.code() in FENCED and not error.txn_requires_abort()


class ProducerFenced(StreamlineError):
    """The instance stopped: another producer with its transactional id fenced this one."""


class TransactionAborted(Exception):
    """The open transaction was aborted; the consumer has been rewound."""


class StatefulTasks(Protocol):
    """The commit hooks of the tasks (`TaskManager`)."""

    def prepare_commit(self) -> list[tuple[str, int, list[tuple[bytes, bytes | None]]]]: ...
    def post_commit(self, offsets: Mapping[TP, int]) -> None: ...
    def abort(self, wall_ms: int) -> None: ...


class Markers(Protocol):
    """Watermark markers written with each commit (`Repartitioner`)."""

    def write_markers(self) -> None: ...


def lineage_counts(txn: Transaction) -> dict[str, Any]:
    """The transaction's counts for its lineage event (the `streamline_counts` facet)."""
    dead_letters: dict[str, int] = {}
    for (error_type, _stage), n in txn.dead_letters.items():
        dead_letters[error_type] = dead_letters.get(error_type, 0) + n
    return {
        "records": txn.records,
        "outputs": txn.outputs,
        "late": txn.late,
        "retries": txn.retries,
        "drops": dict(txn.drops),
        "dead_letters": dead_letters,
    }


class CommitCycle:
    """Begins, commits and aborts the loop's transactions, and rewinds after an abort."""

    def __init__(
        self,
        pipeline: Pipeline,
        instance_id: str,
        max_records: int,
        connection: Connection,
        consumer: Consumer,
        collector: RecordCollector[Producer],
        offsets: Offsets,
        tasks: StatefulTasks,
        markers: Markers | None,
        source_watermarks: SourceWatermarks,
        metrics: Metrics,
        progressed: Callable[[], None],
    ) -> None:
        self._pipeline = pipeline
        self._exactly_once = pipeline.exactly_once
        self._interval_s = pipeline.commit_interval_ms / 1000
        self._slice_s = min(self._interval_s / BATCH_SLICES, MAX_BATCH_WAIT_S)
        self._max_records = max_records
        self._transactional_id = pipeline.transactional_id(instance_id)
        self._connection = connection
        self._consumer = consumer
        self._collector = collector
        self._offsets = offsets
        self._tasks = tasks
        self._markers = markers
        self._source_watermarks = source_watermarks
        self._metrics = metrics
        self._progressed = progressed
        self.txn: Transaction | None = None
        """The open transaction; `None` between a commit (or abort) and the next record."""
        self._files = pipeline.files  # prepared before each commit, finalized after it
        self._held = pipelined_calls(pipeline)  # maps whose calls run across batches
        router = pipeline.router
        self._webhooks = [
            s.writer
            for s in (router.sinks.values() if router is not None else [])
            if isinstance(s.writer, WebhookSender)
        ]

    # --- the open transaction ----------------------------------------------------------

    def begin(self) -> Transaction:
        self._collector.begin()
        if self._exactly_once:
            try:
                self._collector.producer.begin_transaction()
            except KafkaException as exc:
                if fenced(exc.args[0]):
                    self._fenced(exc.args[0])
                raise
        self.txn = Transaction()
        return self.txn

    def open(self) -> Transaction:
        """The open transaction, begun now if there is none."""
        return self.txn if self.txn is not None else self.begin()

    def due_in(self) -> float:
        """Seconds until the open transaction's commit interval is over (0 when none is open)."""
        if self.txn is None:
            return 0.0
        return max(self.txn.started + self._interval_s - time.monotonic(), 0.0)

    def batch_wait(self) -> float:
        """How long the next batch of the open transaction may wait to fill up: a slice of
        the commit interval, never past the commit.

        The records that come in meanwhile are processed slice by slice, and their
        outputs delivered while the transaction is still open, so what is left for the
        commit is the last slice: its processing and its outputs' delivery, not the whole
        interval's (processing every record at the end of the interval added that much
        to each record's latency).
        """
        return min(self._slice_s, self.due_in())

    @property
    def fills_batches(self) -> bool:
        """Whether a batch of the open transaction waits to fill up (`batch_wait`): with
        exactly-once its outputs are read only after the commit, so waiting costs no
        latency; at-least-once outputs are read once delivered, so a record goes at once."""
        return self._exactly_once

    def due(self) -> bool:
        txn = self.txn
        return txn is not None and (
            self._offsets.just_assigned
            or time.monotonic() - txn.started >= self._interval_s
            or txn.records >= self._max_records
            or (self._files is not None and self._files.due(txn.started))
        )

    def processed(self, txn: Transaction, batch: list[Record]) -> None:
        """The batch went through: its partitions' positions move past it (up to the
        oldest record a map still holds)."""
        if self._held is None:
            txn.read(batch, self._offsets.positions)
        else:
            self._held.read(txn, batch, self._offsets.positions)

    def revoked(self, partitions: list[tuple[str, int]]) -> None:
        """After the commit that ends a generation: what maps hold of `partitions` is dropped."""
        if self._held is not None:
            self._held.drop(partitions)

    # --- commit ------------------------------------------------------------------------

    def commit_or_abort(self) -> None:
        """Commits the open transaction; on failure aborts it and rewinds the consumer."""
        if self.txn is None:
            return
        try:
            self._commit(self.txn)
        except KafkaException as exc:
            self.abort(exc)

    def _commit(self, txn: Transaction) -> None:
        """The numbered steps of one commit.

        1. watermark markers to every repartition partition;
        2. the stores' changes to their changelogs;
        3. the lineage event (after a flush, so the delivered output ranges are known); the
           file sinks' in-progress files (`prepare`);
        4. with `exactly_once`, the consumed offsets into the transaction, while the
           lineage event's partition joins it and the event is delivered; then commit the
           transaction; with `at_least_once`, flush, check every write was delivered, and
           commit the offsets;
        5. the file sinks' files renamed to their final names (`finalize`); the stores commit, checkpointed at their changelogs' delivered offsets;
           the committed offsets and the transaction's counts go to the metrics.
        """
        started = time.monotonic()
        collector = self._collector
        if self._markers is not None:
            self._markers.write_markers()
        for topic, partition, changes in self._tasks.prepare_commit():
            collector.send_changelog(topic, partition, changes)
        lineage = self._pipeline.topology.lineage and txn.describes_data
        offsets = self._offsets
        metadata = commit_metadata(offsets.generation)
        committing = [
            TopicPartition(t, p, off, metadata=metadata)
            for (t, p), off in offsets.positions.items()
            if (t, p) in offsets.assignment
        ]
        if self._exactly_once:
            producer = collector.producer
            # the outputs of all but the last batch were delivered while the transaction
            # was open (batch_wait), so the flush is short; the coordinator's round trips
            # for the offsets then overlap the lineage event's (its partition joining the
            # transaction, its delivery) instead of coming before them
            self._lineage_and_files(txn, lineage)
            producer.send_offsets_to_transaction(
                committing, self._consumer.consumer_group_metadata(), 30
            )
            self._retrying(lambda: producer.commit_transaction(30))
        else:
            self._lineage_and_files(txn, lineage)
            if collector.flush(60):
                raise KafkaException(
                    KafkaError(KafkaError._MSG_TIMED_OUT, "outputs not delivered", retriable=True)
                )
            if collector.first_error is not None:  # committing would lose it: rewind and redo
                raise KafkaException(collector.first_error)
            if committing:
                self._consumer.commit(offsets=committing, asynchronous=False)
        self.txn = None
        collector.end()
        if self._files is not None:
            self._files.finalize()
        offsets.committed.update(offsets.positions)
        offsets.just_assigned = False
        offsets.committed_at_ms = int(time.time() * 1000)
        collector.poll(0)  # serve the changelog delivery reports that are ready
        self._tasks.post_commit({**offsets.committed, **collector.changelog_offsets})
        self._committed_metrics(txn, time.monotonic() - started)

    def _lineage_and_files(self, txn: Transaction, lineage: bool) -> None:
        """The lineage event (it lists the files about to be written), then those files."""
        if lineage:
            self._write_lineage(txn)
        if self._files is not None:
            self._files.prepare()

    def _write_lineage(self, txn: Transaction) -> None:
        """The transaction's RunEvent: delivered output ranges are known after a flush."""
        collector = self._collector
        if collector.flush(60):
            raise KafkaException(KafkaError(KafkaError._MSG_TIMED_OUT, "outputs not delivered"))
        topology = self._pipeline.topology
        event = run_event(
            topology.name,
            topology.version,
            self._pipeline.fingerprint,
            self._transactional_id,
            self._connection.bootstrap_servers,
            {tp: (a, b) for tp, (a, b) in txn.inputs.items()}
            if self._held is None
            else self._held.inputs(self._offsets.positions),  # what this commit covers
            {tp: (a, b) for tp, (a, b) in (collector.produced or {}).items()},
            counts=lineage_counts(txn),
            sink_outputs=sink_datasets(self._files, self._webhooks, txn.outputs_by_topic),
        )
        collector.produce(LINEAGE_TOPIC, topology.name.encode(), event, [])

    def _retrying(self, call: Callable[[], Any]) -> None:
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
                self._progressed()

    def _committed_metrics(self, txn: Transaction, seconds: float) -> None:
        m = self._metrics
        m.transaction_committed(seconds)
        for (topic, partition), n in txn.consumed.items():
            m.records_in(topic, partition, n)
        if txn.outputs:
            for topic, n in (
                txn.outputs_by_topic or {self._pipeline.sink_topic: txn.outputs}
            ).items():
                m.records_out(topic, n)
            now_ms = time.time() * 1000
            m.observe_latency([(now_ms - t) / 1000.0 for t in txn.event_times])
        for (error_type, stage), n in txn.dead_letters.items():
            m.dead_letter(error_type, stage, n)
        if txn.late:
            m.late(self._pipeline.topology.late_topic, txn.late)
        if txn.retries:
            m.retry("map", txn.retries)
        for (topic, partition), offset in self._offsets.committed.items():
            m.partitions.set_committed_offset(topic, partition, offset)

    # --- abort -------------------------------------------------------------------------

    def abort(self, exc: KafkaException) -> None:
        """Abort and rewind on an abortable error; re-create the producer on a fatal one."""
        error: KafkaError = exc.args[0]
        collector = self._collector
        collector.poll(0)  # failed deliveries may say why: a write the ACLs refuse
        if self._exactly_once and error.code() in (KafkaError._STATE, KafkaError._FATAL):
            try:  # the transaction failed earlier: a commit fails at once, saying why
                collector.producer.commit_transaction(5)
            except KafkaException as failed:
                error = failed.args[0]
        if self._exactly_once and fenced(error):
            self._fenced(error)
        denied = collector.denied or self._connection.access_error(
            error,
            group=self._pipeline.group_id,
            transactional_id=self._transactional_id,
            writes=self._pipeline.owned_topics,
        )
        if denied is not None:  # retrying cannot help: stop with what to grant
            self.txn = None  # left to the broker to abort, so leaving the group commits nothing
            raise denied
        log.warning("transaction failed: %s", error.str())
        if error.fatal() or not self._exactly_once:
            self._metrics.transaction_aborted("fatal" if error.fatal() else "error")
            collector.recreate_producer()
        else:
            self._metrics.transaction_aborted(
                "abortable" if error.txn_requires_abort() else "error"
            )
            try:
                collector.producer.abort_transaction(30)
            except KafkaException as abort_exc:
                if fenced(abort_exc.args[0]):
                    self._fenced(abort_exc.args[0])
                log.warning("abort failed (%s); re-creating the producer", abort_exc.args[0].str())
                collector.recreate_producer()
        self.txn = None
        collector.end()
        collector.poll(0)  # delivery reports of the aborted transaction go nowhere
        self._reset_state()
        self._rewind()

    def _fenced(self, error: KafkaError) -> NoReturn:
        """Another producer with this transactional id took over: stop, committing nothing.

        Its `init_transactions` aborted this instance's open transaction, so no write of it
        becomes visible; the stores and the consumer are not rewound, since the process
        stops. A new producer would fence the other one in turn, and the two would take
        turns failing: two instances run with the same instance id.
        """
        self._metrics.transaction_aborted("fenced")
        self.txn = None
        self._collector.producer.purge()  # its queued writes can never be delivered
        self._collector.end()
        raise ProducerFenced(
            f"producer fenced: another process took over transactional.id "
            f"{self._transactional_id} ({error.str()}); this instance stopped without "
            "committing its open transaction. Each running instance needs its own "
            "--instance-id"
        )

    def lost(self) -> None:
        """The partitions were lost: the open transaction can only be aborted."""
        if self._held is not None:  # another instance reads them from the committed offsets
            self._held.drop()
        if self.txn is None or not self._exactly_once:
            return
        try:
            self._collector.producer.abort_transaction(30)
        except KafkaException:
            self._collector.recreate_producer()
        self.txn = None
        self._collector.end()
        self._reset_state()
        self._metrics.transaction_aborted("partitions_lost")

    def _reset_state(self) -> None:
        """After an abort: drop uncommitted state and watermarks moved by the aborted records."""
        if self._files is not None:
            self._files.abort()
        if self._held is not None:
            self._held.drop()
        wall_ms = int(time.time() * 1000)
        self._tasks.abort(wall_ms)
        self._source_watermarks.reset(wall_ms)

    def _rewind(self) -> None:
        """Seeks every assigned partition back to its last committed offset."""
        offsets = self._offsets
        offsets.positions = dict(offsets.committed)
        unknown = [
            TopicPartition(t, p) for (t, p) in offsets.assignment if (t, p) not in offsets.committed
        ]
        targets = {tp: off for tp, off in offsets.committed.items() if tp in offsets.assignment}
        if unknown:
            for tp in self._consumer.committed(unknown, timeout=30):
                targets[(tp.topic, tp.partition)] = (
                    tp.offset if tp.offset >= 0 else OFFSET_BEGINNING
                )
        for (topic, partition), offset in targets.items():
            try:
                self._consumer.seek(TopicPartition(topic, partition, offset))
            except KafkaException as exc:
                log.warning("seek %s/%s failed: %s", topic, partition, exc)
