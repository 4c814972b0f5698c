"""The record collector: every record the loop writes goes out through one producer here.

Sink outputs, dead letters, retry and late records, repartition records, watermark
markers, changelog records and lineage events are all produced by `RecordCollector`
(Kafka Streams' `RecordCollectorImpl`). It owns the producer, waits out a full local
queue (`BufferError`), and reads every delivery report: the first failed write is
latched for the commit cycle (with `at_least_once` a commit must not happen after it,
and a write the ACLs refused names its topic), and the offsets delivered per
topic-partition are kept for lineage and for the changelog checkpoints.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable
from typing import Any, Generic, Protocol, TypeVar

from streamline import headers as h
from streamline.errors import StreamlineError
from streamline.reliability.checksum import value_checksum
from streamline.reliability.dead_letter import Failure, failure_headers
from streamline.runtime.record import Record

TP = tuple[str, int]
OutHeaders = list[tuple[str, str | bytes | None]]


class ProducerLike(Protocol):
    """What the collector uses of `confluent_kafka.Producer` (a fake in the unit tests)."""

    def produce(self, topic: str, *args: Any, **kwargs: Any) -> None: ...
    def poll(self, timeout: float = ...) -> int: ...
    def flush(self, timeout: float = ...) -> int: ...
    def purge(self, *args: Any, **kwargs: Any) -> None: ...


P = TypeVar("P", bound=ProducerLike)

AccessError = Callable[[Any, str | None], StreamlineError | None]
"""(delivery error, topic) -> the access error it is, when the broker's ACLs refused the write."""


class RecordCollector(Generic[P]):
    """Produces every output of the loop and keeps what the delivery reports say."""

    def __init__(
        self,
        new_producer: Callable[[Callable[[Any, Any], None]], P],
        access_error: AccessError,
        lineage_topics: Iterable[str] = (),
        *,
        sink_checksum: bool = False,
        warnings: bool = False,
    ) -> None:
        self._new_producer = new_producer
        self._sink_checksum = sink_checksum
        self._warnings = warnings
        self._stamped = sink_checksum or warnings
        self._access_error = access_error
        self._lineage_topics = frozenset(lineage_topics)
        self.producer = new_producer(self._delivered)
        self.first_error: Any = None
        """The first write of the open batch that failed (a `KafkaError`), if any."""
        self.denied: StreamlineError | None = None
        """A write the broker's ACLs refused, naming the topic and what to grant."""
        self.produced: dict[TP, list[int]] | None = None
        """[first, last] delivered offsets per topic-partition of the open transaction."""
        self.changelog_offsets: dict[TP, int] = {}
        """Next offset after the highest delivered changelog record, per changelog partition."""

    # --- the producer ----------------------------------------------------------------------

    def begin(self) -> None:
        """A new transaction: forget the last one's failed write, record produced offsets."""
        self.first_error = None
        self.produced = {}

    def end(self) -> None:
        """The transaction committed or aborted: later delivery reports widen nothing."""
        self.produced = None

    def recreate_producer(self) -> None:
        """Drops the producer's queued records and starts a new producer."""
        self.producer.purge()
        self.producer.flush(0)
        self.producer = self._new_producer(self._delivered)

    def poll(self, timeout: float = 0) -> None:
        """Serves the delivery reports that are ready."""
        self.producer.poll(timeout)

    def flush(self, timeout: float) -> int:
        """Waits for every queued record's delivery; returns how many are still queued."""
        return self.producer.flush(timeout)

    # --- writes ----------------------------------------------------------------------------

    def produce(
        self,
        topic: str,
        key: bytes | None,
        value: bytes | None,
        headers: Any,
        partition: int = -1,
    ) -> None:
        """Produces one record, waiting while the local queue is full."""
        while True:
            try:
                self.producer.produce(
                    topic, value=value, key=key, headers=headers, partition=partition
                )
                return
            except BufferError:  # the local queue is full: let deliveries drain
                self.producer.poll(0.05)

    def send_outputs(
        self,
        outputs: list[tuple[Record, bytes]],
        sink: str,
        topology: bytes,
        event_times: list[int],
    ) -> None:
        """Produces sink records with their `streamline.*` headers; appends their event times."""
        if self._stamped:
            self._send_stamped(outputs, sink, topology, event_times)
            return
        produce = self.producer.produce
        topology_header, source, event_time = h.TOPOLOGY, h.SOURCE, h.EVENT_TIME
        prefixes: dict[TP, bytes] = {}  # `topic/partition/` of the source header
        for record, value in outputs:
            tp = (record.topic, record.partition)
            prefix = prefixes.get(tp)
            if prefix is None:
                prefix = prefixes[tp] = f"{tp[0]}/{tp[1]}/".encode()
            headers: OutHeaders = [
                (topology_header, topology),
                (source, prefix + b"%d-%d" % (record.offset, record.last_offset)),
                (event_time, b"%d" % record.event_time),
            ]
            try:  # per output record: the common case without produce()'s loop
                produce(sink, value=value, key=record.out_key, headers=headers)
            except BufferError:
                self.produce(sink, record.out_key, value, headers)
        event_times.extend([record.event_time for record, _ in outputs])

    def _send_stamped(
        self,
        outputs: list[tuple[Record, bytes]],
        sink: str,
        topology: bytes,
        event_times: list[int],
    ) -> None:
        """`send_outputs` with a quality-warnings header and/or a checksum, when configured."""
        checksum, warnings = self._sink_checksum, self._warnings
        for record, value in outputs:
            headers: OutHeaders = [
                (h.TOPOLOGY, topology),
                (h.SOURCE, record.source_range()),
                (h.EVENT_TIME, str(record.event_time).encode()),
            ]
            warned = getattr(record, "warnings", None) if warnings else None
            if warned:
                headers.append((h.QUALITY_WARNINGS, ",".join(warned).encode()))
            if checksum:
                headers.append((h.CHECKSUM, value_checksum(value)))
            self.produce(sink, record.out_key, value, headers)
            event_times.append(record.event_time)

    def send_failed(
        self,
        record: Record,
        failure: Failure,
        topic: str,
        extra: list[tuple[str, bytes]] | None = None,
        partition: int = -1,
    ) -> None:
        """Writes a record that failed (a dead letter, a retry or a late record) to `topic`.

        It carries the record's bytes as it entered the topology and the failure headers.
        """
        source_topic, source_partition, offset = record.origin()
        own = (
            record.headers
            if (source_topic, source_partition, offset)
            == (record.topic, record.partition, record.offset)
            else None
        )
        headers = failure_headers(failure, source_topic, source_partition, offset, own)
        if extra:
            headers += extra
        key, raw = record.original()
        self.produce(topic, key, raw, headers, partition)

    def send_changelog(
        self, topic: str, partition: int, changes: list[tuple[bytes, bytes | None]]
    ) -> None:
        """Writes a store's changes to its changelog partition; delivery moves its offset."""
        delivered = self._changelog_delivered((topic, partition))
        for key, value in changes:
            while True:
                try:
                    self.producer.produce(
                        topic, value=value, key=key, partition=partition, on_delivery=delivered
                    )
                    break
                except BufferError:
                    self.producer.poll(0.05)

    # --- delivery reports ------------------------------------------------------------------

    def _delivered(self, err: Any, msg: Any) -> None:
        """Delivery report of an output: widens the open transaction's produced range."""
        if err is not None:
            self._failed(err, msg)
            return
        produced = self.produced
        if produced is None:
            return
        topic = msg.topic()
        if topic not in self._lineage_topics:
            return
        offset = msg.offset()
        if offset is None:
            return
        tp = (topic, msg.partition())
        span = produced.get(tp)
        if span is None:
            produced[tp] = [offset, offset]
        elif offset > span[1]:  # one call per output record: no min()/max() calls
            span[1] = offset
        elif offset < span[0]:
            span[0] = offset

    def _changelog_delivered(self, tp: TP) -> Callable[[Any, Any], None]:
        offsets = self.changelog_offsets

        def delivered(err: Any, msg: Any) -> None:
            if err is None:
                offset = msg.offset()
                if offset is not None and offset + 1 > offsets.get(tp, 0):
                    offsets[tp] = offset + 1
            else:
                self._failed(err, msg)

        return delivered

    def _failed(self, err: Any, msg: Any) -> None:
        """Latches the first failed write, and the first write the ACLs refused."""
        if self.first_error is None:
            self.first_error = err
        if self.denied is None:
            self.denied = self._access_error(err, msg.topic())
