"""`streamline dlq`: a topology's dead letters, counted, shown, and replayed to its source topic.

Every read is read_committed and stops at the end offsets taken when it began (for a
read_committed client these are the last stable offsets), so a running topology never
keeps a command waiting.

Replay re-produces a dead letter's original key and value bytes, with the record's own
headers, to the source partition it came from, adding `streamline.replay.from`
(`dlq-topic/partition/offset`), `streamline.replay.at` (ms) and the original
`streamline.error.type`.

Replay position: earlier replays are remembered as consumer-group offsets on the
dead-letter topic, committed in the same Kafka transaction as the replayed records, so a
replay that fails half-way leaves no record it does not also remember. Group
`<topology>.dlq-replay` marks where a replay of every error type stopped; group
`<topology>.dlq-replay.<type>` where a `--error-type <type>` replay stopped (one group per
type, so replaying `map` neither skips the `decode` dead letters before it nor is replayed
again by a later replay of everything). A dead letter counts as replayed when its offset
is below either position; a replay reads the whole topic, as `dlq list` does, so it can say
what earlier replays already took. Resetting a group's offsets (or deleting the group)
makes its dead letters replayable again.
"""

from __future__ import annotations

import contextlib
import time
import uuid
from collections import Counter, defaultdict
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from typing import Any

from confluent_kafka import (
    Consumer,
    KafkaError,
    KafkaException,
    Message,
    Producer,
    TopicPartition,
)

from streamline import headers
from streamline.errors import StreamlineError
from streamline.kafka.admin import require_topics
from streamline.kafka.connection import Connection
from streamline.ops.consume import RecordPrinter
from streamline.reliability.dead_letter import FAILURE_HEADER_KEYS
from streamline.runtime.table_operator import TABLE_DECODE
from streamline.topology import Topology
from streamline.topology.resources import resources_of

READ_TIMEOUT_S = 30.0
REPLAY_BATCH = 500  # records per replay transaction
SAMPLE_SIZE = 5
# headers streamline adds while a record moves through a topology: not the record's own
INTERNAL_HEADER_PREFIXES = (
    headers.ERROR_PREFIX,
    headers.SOURCE_PREFIX,
    headers.RETRY_PREFIX,
    headers.REPLAY_PREFIX,
)
INTERNAL_HEADERS = FAILURE_HEADER_KEYS | {headers.ORIGINAL, headers.WATERMARK}
UNKNOWN = "unknown"


class DeadLetter:
    """One record of a dead-letter topic and what its `streamline.*` headers say."""

    def __init__(self, message: Message) -> None:
        self.message = message
        raw = message.headers() or []
        pairs = raw.items() if isinstance(raw, dict) else raw
        self.headers: list[tuple[str, bytes | None]] = [
            (k, v.encode() if isinstance(v, str) else v) for k, v in pairs
        ]
        self._named = dict(self.headers)

    def header(self, name: str) -> str | None:
        value = self._named.get(name)
        return None if value is None else value.decode("utf-8", "replace")

    def _int_header(self, name: str) -> int | None:
        text = self.header(name)
        return int(text) if text is not None and text.lstrip("-").isdigit() else None

    @property
    def partition(self) -> int:
        return self.message.partition() or 0

    @property
    def offset(self) -> int:
        return self.message.offset() or 0

    @property
    def address(self) -> str:
        """`dlq-topic/partition/offset`: how replayed records name the dead letter they came from."""
        return f"{self.message.topic()}/{self.partition}/{self.offset}"

    @property
    def error_type(self) -> str:
        return self.header(headers.ERROR_TYPE) or UNKNOWN

    @property
    def stage(self) -> str | None:
        return self.header(headers.ERROR_STAGE)

    @property
    def rule(self) -> str | None:
        return self.header(headers.ERROR_RULE)

    @property
    def source_topic(self) -> str | None:
        return self.header(headers.SOURCE_TOPIC)

    @property
    def source_partition(self) -> int | None:
        return self._int_header(headers.SOURCE_PARTITION)

    @property
    def failed_at(self) -> int:
        """When the record failed (ms); the dead letter's timestamp when the header is missing."""
        at = self._int_header(headers.FAILED_AT)
        return at if at is not None else int(self.message.timestamp()[1])

    def describe(self, printer: RecordPrinter) -> dict[str, Any]:
        """The JSON object `dlq show` prints: where it failed, why, and the decoded value."""
        shown = printer.to_json(self.message)
        described: dict[str, Any] = {
            "partition": self.partition,
            "offset": self.offset,
            "key": shown["key"],
            "source": {
                "topic": self.source_topic,
                "partition": self.source_partition,
                "offset": self._int_header(headers.SOURCE_OFFSET),
            },
            "error": {
                "type": self.error_type,
                "stage": self.stage,
                "rule": self.rule,
                "message": self.header(headers.ERROR_MESSAGE),
            },
            "attempts": self._int_header(headers.ATTEMPTS),
            "failed_at": self.failed_at,
        }
        for name in ("schema", "value", "value_base64", "note"):
            if name in shown:
                described[name] = shown[name]
        return described


class DeadLetterReader:
    """Reads a dead-letter topic, read_committed, up to the end offsets taken when it opened."""

    def __init__(self, connection: Connection, topic: str, timeout: float = READ_TIMEOUT_S) -> None:
        partitions = require_topics(connection, [topic])[topic]
        self.topic = topic
        self.timeout = timeout
        self.consumer = Consumer(
            connection.config(
                **{
                    "group.id": f"streamline-dlq-{uuid.uuid4().hex[:8]}",
                    "enable.auto.commit": False,
                    "isolation.level": "read_committed",
                    "enable.partition.eof": True,
                    "auto.offset.reset": "earliest",
                },
                log_level=0,
            )
        )
        self.bounds: dict[int, tuple[int, int]] = {}
        for p in range(partitions):
            try:
                low, end = self.consumer.get_watermark_offsets(
                    TopicPartition(topic, p), timeout=timeout, cached=False
                )
            except KafkaException as exc:
                self.close()
                raise StreamlineError(
                    f"cannot read the offsets of {topic}/{p}: {exc.args[0].str()}"
                ) from None
            self.bounds[p] = (low, end)
        # after read(): per partition, the offset below which everything has been read
        self.positions: dict[int, int] = {}

    def read(self, starts: dict[int, int] | None = None) -> Iterator[DeadLetter]:
        """Dead letters from `starts` (partition -> offset; default: every partition from its
        beginning) up to the end offsets, in offset order within a partition."""
        if starts is None:
            starts = {p: low for p, (low, _end) in self.bounds.items()}
        self.positions = {p: max(start, self.bounds[p][0]) for p, start in starts.items()}
        pending = {p for p, at in self.positions.items() if at < self.bounds[p][1]}
        self.consumer.assign(
            [TopicPartition(self.topic, p, self.positions[p]) for p in sorted(pending)]
        )
        last_progress, last_error = time.monotonic(), ""
        while pending:
            batch = self.consumer.consume(500, timeout=0.2)
            for msg in batch:
                p, offset, error = msg.partition(), msg.offset(), msg.error()
                if p is None or offset is None or p not in pending:
                    continue
                end = self.bounds[p][1]
                if error is not None:
                    if error.code() == KafkaError._PARTITION_EOF:
                        self.positions[p] = end
                        pending.discard(p)
                    else:
                        last_error = error.str()
                    continue
                if offset >= end:
                    self.positions[p] = end
                    pending.discard(p)
                    continue
                self.positions[p] = offset + 1
                if self.positions[p] >= end:
                    pending.discard(p)
                yield DeadLetter(msg)
            if batch:
                last_progress = time.monotonic()
            elif time.monotonic() - last_progress > self.timeout:
                detail = f" ({last_error})" if last_error else ""
                raise StreamlineError(
                    f"could not read {self.topic} to its end within {self.timeout:.0f}s{detail}"
                )

    def close(self) -> None:
        self.consumer.close()

    def __enter__(self) -> DeadLetterReader:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()


# --- list ---------------------------------------------------------------------------------

Kind = tuple[str, str, str]  # (error type, stage, rule)


def count_dead_letters(connection: Connection, topic: str) -> Counter[Kind]:
    """Dead letters by error type, stage and rule ("" when a header is absent)."""
    with DeadLetterReader(connection, topic) as reader:
        return Counter((d.error_type, d.stage or "", d.rule or "") for d in reader.read())


# --- show ---------------------------------------------------------------------------------


def newest_dead_letters(connection: Connection, topic: str, limit: int) -> list[DeadLetter]:
    """The `limit` most recent dead letters, oldest first.

    Reads only the tail of each partition, widening it while a partition yields fewer than
    `limit` (transaction markers and aborted records take offsets too).
    """
    found: dict[int, list[DeadLetter]] = {}
    with DeadLetterReader(connection, topic) as reader:
        spans = {p: 2 * limit for p in reader.bounds}
        pending = [p for p, (low, end) in reader.bounds.items() if end > low]
        while pending:
            starts = {p: max(reader.bounds[p][0], reader.bounds[p][1] - spans[p]) for p in pending}
            by_partition: dict[int, list[DeadLetter]] = defaultdict(list)
            for letter in reader.read(starts):
                by_partition[letter.partition].append(letter)
            widen = []
            for p in pending:
                found[p] = by_partition[p]
                if len(found[p]) < limit and starts[p] > reader.bounds[p][0]:
                    spans[p] *= 4
                    widen.append(p)
            pending = widen
    letters = [d for per_partition in found.values() for d in per_partition[-limit:]]
    letters.sort(key=lambda d: (d.failed_at, d.partition, d.offset))
    return letters[-limit:]


# --- replay -------------------------------------------------------------------------------


def replay_group(topology: Topology, error_type: str | None) -> str:
    """The consumer group whose offsets on the dead-letter topic say how far replays got."""
    purpose = "dlq-replay" if error_type is None else f"dlq-replay.{error_type}"
    return resources_of(topology).side_group(purpose)


class ReplayPositions:
    """Where earlier replays stopped, per consumer group (see the module docstring)."""

    def __init__(self, connection: Connection, topology: Topology, partitions: list[int]) -> None:
        self.connection = connection
        self.topology = topology
        self.topic = topology.dead_letter_topic
        self.partitions = partitions
        self._consumers: dict[str, Consumer] = {}
        self._committed: dict[str, dict[int, int]] = {}

    def consumer(self, group: str) -> Consumer:
        if group not in self._consumers:
            # read_committed makes offset fetches wait for pending transactional commits
            self._consumers[group] = Consumer(
                self.connection.config(
                    **{
                        "group.id": group,
                        "enable.auto.commit": False,
                        "isolation.level": "read_committed",
                    },
                    log_level=0,
                )
            )
        return self._consumers[group]

    def committed(self, error_type: str | None) -> dict[int, int]:
        """Partition -> offset below which the group's dead letters were replayed (0: none)."""
        group = replay_group(self.topology, error_type)
        if group not in self._committed:
            asked = [TopicPartition(self.topic, p) for p in self.partitions]
            try:
                answers = self.consumer(group).committed(asked, timeout=READ_TIMEOUT_S)
            except KafkaException as exc:
                raise StreamlineError(
                    f"cannot read the replay position (consumer group {group}): {exc.args[0].str()}"
                ) from None
            self._committed[group] = {tp.partition: max(tp.offset, 0) for tp in answers}
        return self._committed[group]

    def advanced(self, error_type: str | None, read_to: dict[int, int]) -> bool:
        """Whether reading up to `read_to` moves the position of `error_type` (None: all)."""
        committed = self.committed(error_type)
        return any(at > committed[p] for p, at in read_to.items())

    def replayed(self, letter: DeadLetter) -> bool:
        p = letter.partition
        return letter.offset < max(self.committed(None)[p], self.committed(letter.error_type)[p])

    def close(self) -> None:
        for consumer in self._consumers.values():
            consumer.close()


@dataclass
class ReplayReport:
    """What a replay sent (or, dry, would send) and what it left alone, by error type."""

    dry_run: bool
    sent: Counter[str] = field(default_factory=Counter)
    targets: Counter[str] = field(default_factory=Counter)
    skipped: Counter[str] = field(default_factory=Counter)
    other_types: Counter[str] = field(default_factory=Counter)
    sample: list[dict[str, Any]] = field(default_factory=list)
    position_groups: list[str] = field(default_factory=list)  # what said "already replayed"


def replay_headers(letter: DeadLetter, now_ms: int) -> list[tuple[str, str | bytes | None]]:
    """The record's own headers, then the ones recording this replay."""
    own = [
        (k, v)
        for k, v in letter.headers
        if k not in INTERNAL_HEADERS and not k.startswith(INTERNAL_HEADER_PREFIXES)
    ]
    return [
        *own,
        (headers.REPLAY_FROM, letter.address.encode()),
        (headers.REPLAY_AT, str(now_ms).encode()),
        (headers.ERROR_TYPE, letter.error_type.encode()),
    ]


class _Replayer:
    """Produces replayed records and commits them with the replay position, one transaction per batch."""

    def __init__(self, connection: Connection, topology: Topology) -> None:
        self.topic = topology.dead_letter_topic
        self.producer = Producer(
            connection.config(
                **{
                    "transactional.id": f"{topology.name}.dlq-replay",
                    "enable.idempotence": True,
                    "linger.ms": 5,
                    "partitioner": "murmur2_random",
                },
                log_level=0,
            )
        )
        # also fences (and aborts) a replay of this topology still running elsewhere
        self._call(lambda: self.producer.init_transactions(READ_TIMEOUT_S))
        self.open = False

    def _call(self, action: Callable[[], object]) -> None:
        try:
            action()
        except KafkaException as exc:
            raise StreamlineError(
                f"replay failed: {exc.args[0].str()}; the dead letters of the failed batch were "
                "not replayed and a rerun takes them up again"
            ) from None

    def produce(self, topic: str, partition: int | None, letter: DeadLetter, now_ms: int) -> None:
        """`partition` None: the partitioner picks one from the key."""
        if not self.open:
            self._call(self.producer.begin_transaction)
            self.open = True
        msg = letter.message
        self._call(
            lambda: self.producer.produce(
                topic,
                key=msg.key(),
                value=msg.value(),
                headers=replay_headers(letter, now_ms),
                partition=-1 if partition is None else partition,
            )
        )

    def commit(self, positions: dict[int, int], metadata: Any) -> None:
        """Commits the produced records together with the new replay position."""
        if not self.open:
            self._call(self.producer.begin_transaction)
        offsets = [TopicPartition(self.topic, p, at) for p, at in sorted(positions.items())]
        self._call(
            lambda: self.producer.send_offsets_to_transaction(offsets, metadata, READ_TIMEOUT_S)
        )
        self._call(lambda: self.producer.commit_transaction(READ_TIMEOUT_S))
        self.open = False

    def close(self) -> None:
        if self.open:
            # when the abort fails the transaction times out on the broker; none of it shows
            with contextlib.suppress(KafkaException):
                self.producer.abort_transaction(READ_TIMEOUT_S)
        self.producer.flush(0)


def replay_dead_letters(
    connection: Connection,
    topology: Topology,
    error_type: str | None = None,
    dry_run: bool = False,
) -> ReplayReport:
    """Re-produces the not yet replayed dead letters of `error_type` (None: all) to the source.

    `table_decode` dead letters are never replayed: they came from a table's topic, and
    are fixed by writing the row there again.
    """
    if error_type == TABLE_DECODE:
        raise StreamlineError(
            "table_decode dead letters came from a table's topic, not a source: write the row "
            "to the table's topic again (fixed) instead of replaying it"
        )
    dlq = topology.dead_letter_topic
    source_topics = [s.topic for s in topology.sources]
    counts = require_topics(connection, [dlq, *source_topics])
    group = replay_group(topology, error_type)
    report = ReplayReport(dry_run=dry_run)
    now_ms = int(time.time() * 1000)
    keys = RecordPrinter(None)
    with DeadLetterReader(connection, dlq) as reader:
        positions = ReplayPositions(connection, topology, sorted(reader.bounds))
        # the producer first: its init aborts a concurrent replay's open transaction, whose
        # offsets the positions read below must not miss
        replayer = None if dry_run else _Replayer(connection, topology)
        try:
            batch = 0
            # from the beginning, to report what earlier replays took
            for letter in reader.read():
                kind = letter.error_type
                if (error_type is not None and kind != error_type) or kind == TABLE_DECODE:
                    # a table's bad record belongs to the table's topic, not a source
                    report.other_types[kind] += 1
                    continue
                if positions.replayed(letter):
                    report.skipped[kind] += 1
                    continue
                topic = (
                    letter.source_topic
                    if letter.source_topic in source_topics
                    else source_topics[0]
                )
                partition = letter.source_partition
                if partition is None or not 0 <= partition < counts[topic]:
                    partition = None
                if replayer is not None:
                    replayer.produce(topic, partition, letter, now_ms)
                    batch += 1
                    if batch >= REPLAY_BATCH:
                        replayer.commit(
                            reader.positions, positions.consumer(group).consumer_group_metadata()
                        )
                        batch = 0
                report.sent[kind] += 1
                report.targets[topic] += 1
                if len(report.sample) < SAMPLE_SIZE:
                    report.sample.append(
                        {
                            "from": letter.address,
                            "to": topic if partition is None else f"{topic}/{partition}",
                            "error_type": kind,
                            "key": keys.to_json(letter.message)["key"],
                        }
                    )
            if replayer is not None and positions.advanced(error_type, reader.positions):
                replayer.commit(
                    reader.positions, positions.consumer(group).consumer_group_metadata()
                )
            report.position_groups = sorted(
                {replay_group(topology, None)} | {replay_group(topology, t) for t in report.skipped}
            )
        finally:
            if replayer is not None:
                replayer.close()
            positions.close()
    return report
