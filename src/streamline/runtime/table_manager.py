"""Loading and following tables: the table partitions of the assigned stream partitions.

On assignment (inside the rebalance callback, before the instance reports ready) each
table partition of the numbers assigned is opened and read from its checkpoint to the
end offset its topic had then: the first lookups never miss because a table was still
loading. While the topology runs, before each batch is joined (the join stage calls
`TableState.sync`, which is `follow`), every table partition is read up
to its topic's current end, so a row written before a record was read is there when
the record is joined; while no batch comes, once a second (`idle`), so a quiet
instance's tables, their lag and row count stay current. One consumer, without a
group, reads every table partition.

Records that do not decode or have no key become `table_decode` dead letters, sent
with the next batch; the table keeps loading. The store of each partition is
checkpointed at least every second (tables are upserts: a crash reads a little again).
"""

from __future__ import annotations

import logging
import time
from collections.abc import Callable, Iterable

from confluent_kafka import Consumer, IsolationLevel, KafkaError, KafkaException, TopicPartition
from confluent_kafka.admin import AdminClient, OffsetSpec  # type: ignore[attr-defined]

from streamline.errors import StreamlineError
from streamline.kafka.connection import Connection
from streamline.observability.metrics import Metrics
from streamline.reliability.dead_letter import Failure
from streamline.runtime.record import Record
from streamline.runtime.table_operator import TablePartition, TableState

log = logging.getLogger("streamline.runtime")

TP = tuple[str, int]
Failures = list[tuple[Record, Failure]]
CHUNK = 5000
RESTORE_TIMEOUT_S = 600.0
FOLLOW_TIMEOUT_S = 10.0
CHECKPOINT_INTERVAL_S = 1.0


def table_consumer(connection: Connection, group: str) -> Consumer:
    """A read_committed reader of assigned table partitions; `group` (no membership) only
    holds the positions it publishes."""
    return Consumer(
        connection.config(
            **{
                "group.id": group,
                "isolation.level": "read_committed",
                "enable.auto.commit": False,
                "enable.partition.eof": True,
                "auto.offset.reset": "earliest",
                "fetch.max.bytes": 52428800,
                "fetch.wait.max.ms": 10,
            },
            log_level=0,
        )
    )


class TableManager:
    """The table partitions of this instance: opened, loaded, followed and closed."""

    def __init__(
        self,
        state: TableState,
        connection: Connection,
        metrics: Metrics,
        progressed: Callable[[], None],
        group: str,
    ) -> None:
        self.state = state
        state.sync = self.follow
        self._group = group
        self._connection = connection
        self._metrics = metrics
        self._progressed = progressed
        self._consumer: Consumer | None = None
        self._admin: AdminClient | None = None
        self._open: dict[TP, TablePartition] = {}  # (table topic, partition) -> partition
        self._positions: dict[TP, int] = {}
        self._pending: Failures = []  # table_decode failures found while loading
        self._checkpointed_at = self._followed_at = time.monotonic()

    def _client(self) -> Consumer:
        if self._consumer is None:
            self._consumer = table_consumer(self._connection, self._group)
        return self._consumer

    # --- rebalances --------------------------------------------------------------------

    def assign(self, numbers: Iterable[int]) -> None:
        """Opens the table partitions of these partition numbers (of a global table: all of
        them) and loads each to its end."""
        opened: list[TP] = []
        wanted = sorted(set(numbers))
        for settings in self.state.settings.values():
            every = self._partitions(settings.topic) if settings.global_ else wanted
            for p in every:
                tp = (settings.topic, p)
                if tp in self._open:
                    continue
                partition = TablePartition(settings, p)
                self._open[tp] = partition
                self.state.of(settings.name)[p] = partition
                opened.append(tp)
        if not opened:
            return
        ends = self._ends(opened)
        for tp in opened:
            self._positions[tp] = self._open[tp].start_offset(ends[tp])
        self._reassign()
        started = time.monotonic()
        loaded = self._catch_up(ends, self._pending, RESTORE_TIMEOUT_S, restoring=True)
        for tp in opened:
            table = self._open[tp]
            table.checkpoint(self._positions[tp])
            self._metrics.stores.restored(table.settings.store_name, tp[1], loaded.get(tp, 0))
        self._commit_positions()
        log.info(
            "loaded tables %s: %d records in %.2fs",
            ", ".join(f"{t}/{p}" for t, p in opened),
            sum(loaded.values()),
            time.monotonic() - started,
        )
        self._report()

    def revoke(self, numbers: Iterable[int]) -> None:
        """Checkpoints and closes the table partitions of these partition numbers."""
        gone = set(numbers)
        closed = [tp for tp, t in self._open.items() if tp[1] in gone and not t.settings.global_]
        self._close(closed)

    def close(self) -> None:
        self._close(list(self._open))
        if self._consumer is not None:
            self._consumer.close()
            self._consumer = None

    def _partitions(self, topic: str) -> list[int]:
        metadata = self._client().list_topics(topic, timeout=30).topics.get(topic)
        if metadata is None or metadata.error is not None or not metadata.partitions:
            raise StreamlineError(f"table topic {topic} does not exist")
        return sorted(metadata.partitions)

    def _close(self, closed: list[TP]) -> None:
        for tp in closed:
            table = self._open.pop(tp)
            table.checkpoint(self._positions.pop(tp))
            table.close()
            self.state.of(table.settings.name).pop(tp[1], None)
            self._metrics.tables.remove_partition(table.settings.name, tp[1])
        if closed and self._consumer is not None:
            self._reassign()

    # --- following ---------------------------------------------------------------------

    def follow(self, failures: Failures) -> None:
        """Reads every table partition up to its topic's current end (before a batch is joined)."""
        if self._pending:
            failures.extend(self._pending)
            self._pending = []
        if not self._open:
            return
        self._followed_at = time.monotonic()
        self._catch_up(self._ends(list(self._open)), failures, FOLLOW_TIMEOUT_S)
        if time.monotonic() - self._checkpointed_at >= CHECKPOINT_INTERVAL_S:
            for tp, table in self._open.items():
                table.checkpoint(self._positions[tp])
            self._checkpointed_at = time.monotonic()
            self._report()
            self._commit_positions()

    def idle(self) -> None:
        """Follows the tables while no batch reads them (at most once a second): their rows,
        lag and row count stay current on an instance whose input is quiet. What fails to
        decode waits for the next batch, whose transaction carries its dead letters."""
        if time.monotonic() - self._followed_at < CHECKPOINT_INTERVAL_S:
            return
        failures: Failures = []
        self.follow(failures)
        self._pending = failures

    def _commit_positions(self) -> None:
        """Publishes how far each table partition is read, for `streamline lag` (not a restore
        point: a restore starts from the local checkpoint)."""
        offsets = [TopicPartition(t, p, self._positions[(t, p)]) for t, p in self._open]
        if offsets:
            try:
                self._client().commit(offsets=offsets, asynchronous=True)
            except KafkaException as exc:
                log.warning("could not publish table positions: %s", exc)

    def _ends(self, partitions: list[TP]) -> dict[TP, int]:
        """The offset up to which each partition can be read (read_committed), in one request."""
        if self._admin is None:
            self._admin = AdminClient(self._connection.config(log_level=0))
        futures = self._admin.list_offsets(
            {TopicPartition(t, p): OffsetSpec.latest() for t, p in partitions},  # type: ignore[no-untyped-call]
            isolation_level=IsolationLevel.READ_COMMITTED,
            request_timeout=30,
        )
        return {(tp.topic, tp.partition): int(f.result().offset) for tp, f in futures.items()}

    def _reassign(self) -> None:
        consumer = self._client()
        consumer.assign([TopicPartition(t, p, self._positions[(t, p)]) for t, p in self._open])

    def _catch_up(
        self, ends: dict[TP, int], failures: Failures, timeout_s: float, restoring: bool = False
    ) -> dict[TP, int]:
        """Applies the table records until each partition reached its end; records applied."""
        positions = self._positions
        pending = {tp for tp, end in ends.items() if positions.get(tp, end) < end}
        applied: dict[TP, int] = {}
        deadline = time.monotonic() + timeout_s
        consumer = self._client()
        while pending:
            runs: dict[TP, list[Record]] = {}
            for msg in consumer.consume(CHUNK, timeout=0.05):
                tp = (msg.topic(), msg.partition())
                if tp not in self._open:
                    continue
                error = msg.error()
                if error is not None:
                    if error.code() == KafkaError._PARTITION_EOF:
                        positions[tp] = max(positions[tp], msg.offset() or 0)
                        pending.discard(tp)  # the end of what read_committed may see
                        continue
                    raise StreamlineError(f"reading table topic {tp[0]}: {error.str()}")
                record = Record(tp[0], tp[1], msg.offset(), msg.key(), msg.value(), None)  # type: ignore[arg-type]
                record.event_time = msg.timestamp()[1]
                runs.setdefault(tp, []).append(record)
                positions[tp] = (msg.offset() or 0) + 1
            for tp, run in runs.items():
                self._open[tp].apply(run, failures)
                applied[tp] = applied.get(tp, 0) + len(run)
            pending = {tp for tp in pending if positions[tp] < ends[tp]}
            self._progressed()
            if restoring:
                for tp in ends:
                    remaining = max(0, ends[tp] - positions[tp])
                    name = self._open[tp].settings.store_name
                    self._metrics.stores.set_restore_remaining(name, tp[1], remaining)
            if pending and time.monotonic() > deadline:
                if restoring:
                    raise StreamlineError(
                        f"loading tables {sorted(pending)} did not finish within {timeout_s:.0f}s"
                    )
                log.warning("tables %s are behind their topics; joining anyway", sorted(pending))
                break
        return applied

    def _report(self) -> None:
        metrics = self._metrics.tables
        ends = self._ends(list(self._open)) if self._open else {}
        counts: dict[str, int] = {name: 0 for name in self.state.settings}
        for tp, table in self._open.items():
            name = table.settings.name
            counts[name] += table.keys()
            metrics.set_lag(name, tp[1], max(0, ends[tp] - self._positions[tp]))
        for name, n in counts.items():
            metrics.set_records(name, n)
