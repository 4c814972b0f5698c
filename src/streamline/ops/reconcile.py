"""`streamline reconcile`: proof from lineage that every input of a time range is accounted for.

The lineage events of the range (one per committed transaction) name the source offsets
each transaction read, the output offsets it wrote and, in their `streamline_counts`
facet, the records it dropped on purpose by reason. Reconcile reads those source offsets
and every committed record of the output ranges (sink, dead letters, late, retry) and
checks, per source partition:

- every committed source record in the span is inside exactly one transaction's inputs
  (none skipped, none read by two committed transactions);
- each input record is named by at most one output or dead letter (`streamline.source`,
  `streamline.source.*` headers), or waits in the retry topic;
- per transaction, the input records no output names are exactly as many as its counted
  drops (records cannot name a drop, so the drops explain that many records);
- every committed output range is still readable (nothing deleted from an output log).

Memory is one byte per source offset in the range's span plus the lineage events; the
records themselves are streamed. A windowed topology's outputs stand for many inputs:
`reconcile_windows.py` says how its inputs are accounted for instead (eight more bytes per
offset, for the event times).
"""

from __future__ import annotations

import json
import time
from collections.abc import Iterator
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any, cast

from confluent_kafka import Consumer, KafkaError, Message, TopicPartition

from streamline import headers as h
from streamline.errors import StreamlineError, UsageError
from streamline.kafka.connection import Connection
from streamline.observability.lineage import COUNTS_FACET, LINEAGE_TOPIC, ranges_of
from streamline.ops.reconcile_windows import WindowCoverage, WindowReaders, window_shape
from streamline.topology.durations import parse_duration
from streamline.topology.model import Sink, Topology, stream_join_of

TP = tuple[str, int]

# one byte per source offset
REAL = 1  # a committed record of the source
READ = 2  # inside a committed transaction's input range
READ_TWICE = 4  # inside two committed transactions' input ranges
DONE = 8  # named by an output, a dead letter or a late record
DONE_TWICE = 16  # named by two of them
RETRY = 32  # named by a record in the retry topic

SHOWN = 20
"""Unexplained offsets listed per partition (all are counted)."""


@dataclass
class PartitionBalance:
    """How one source partition's inputs of the range were accounted for."""

    topic: str
    partition: int
    first: int = 0
    last: int = -1
    inputs: int = 0
    outputs: int = 0
    dead_letters: dict[str, int] = field(default_factory=dict)
    late: int = 0
    retry_waiting: int = 0
    dropped: int = 0
    unexplained: int = 0
    unexplained_offsets: list[int] = field(default_factory=list)
    problems: list[str] = field(default_factory=list)
    in_windows: int = 0  # windowed: inside a fired window's range
    open_windows: int = 0  # windowed: in a window that has not fired yet

    @property
    def balanced(self) -> bool:
        return not self.unexplained and not self.problems

    def as_dict(self) -> dict[str, Any]:
        return {
            "topic": self.topic,
            "partition": self.partition,
            "first": self.first,
            "last": self.last,
            "inputs": self.inputs,
            "outputs": self.outputs,
            "dead_letters": dict(sorted(self.dead_letters.items())),
            "late": self.late,
            "retry_waiting": self.retry_waiting,
            "dropped": self.dropped,
            "in_windows": self.in_windows,
            "open_windows": self.open_windows,
            "unexplained": self.unexplained,
            "unexplained_offsets": self.unexplained_offsets,
            "problems": self.problems,
            "balanced": self.balanced,
        }


@dataclass
class Reconciliation:
    """The result: one balance per source partition, and problems with the outputs."""

    topology: str
    since_ms: int
    until_ms: int
    transactions: int
    partitions: list[PartitionBalance]
    output_problems: list[str] = field(default_factory=list)
    drops_by_reason: dict[str, int] = field(default_factory=dict)
    windowed: bool = False
    """Outputs are window results: inputs = in windows + open windows + dead letters + late
    + dropped + in retry + unexplained."""

    @property
    def balanced(self) -> bool:
        return not self.output_problems and all(p.balanced for p in self.partitions)

    def totals(self) -> dict[str, int]:
        keys = (
            "inputs", "outputs", "late", "retry_waiting", "dropped", "unexplained",
            "in_windows", "open_windows",
        )  # fmt: skip
        out = {k: sum(getattr(p, k) for p in self.partitions) for k in keys}
        out["dead_letters"] = sum(sum(p.dead_letters.values()) for p in self.partitions)
        return out

    def as_dict(self) -> dict[str, Any]:
        return {
            "topology": self.topology,
            "windowed": self.windowed,
            "since": _iso(self.since_ms),
            "until": _iso(self.until_ms),
            "transactions": self.transactions,
            "balanced": self.balanced,
            "totals": self.totals(),
            "drops_by_reason": dict(sorted(self.drops_by_reason.items())),
            "output_problems": self.output_problems,
            "partitions": [p.as_dict() for p in self.partitions],
        }


@dataclass
class _Event:
    inputs: dict[TP, tuple[int, int]]
    outputs: dict[TP, tuple[int, int]]
    drops: int
    drops_by_reason: dict[str, int]


def parse_time(text: str, now_ms: int) -> int:
    """Epoch ms of `--since`/`--until`: a duration back from now (`1h`) or an ISO-8601 time."""
    try:
        return now_ms - parse_duration(text)
    except ValueError:
        pass
    try:
        at = datetime.fromisoformat(text)
    except ValueError:
        raise UsageError(
            f"invalid time {text!r}: expected a duration back from now (30m, 1h, 2d) "
            "or an ISO-8601 time (2026-01-01T12:00:00Z)"
        ) from None
    if at.tzinfo is None:
        at = at.replace(tzinfo=UTC)
    return int(at.timestamp() * 1000)


def reconcile(
    connection: Connection,
    topology: Topology,
    since_ms: int,
    until_ms: int,
    readers: WindowReaders | None = None,
) -> Reconciliation:
    """Balances the inputs of `topology`'s transactions committed in [since, until].

    A windowed topology needs `readers` (`reconcile_windows.window_readers`).
    """
    shape = window_shape(topology) if topology.window is not None else None
    if stream_join_of(topology) is not None:  # an output stands for one or two inputs
        raise UsageError(
            f"reconcile of {topology.name} is not supported yet: it has a stream-stream join"
        )
    if until_ms < since_ms:
        raise UsageError("--until is before --since")
    connection.check_reachable()
    events = _read_events(connection, topology.name, since_ms, until_ms)
    sources = {s.topic for s in topology.sources}
    result = Reconciliation(
        topology.name, since_ms, until_ms, len(events), [], windowed=shape is not None
    )
    for event in events:
        for reason, n in event.drops_by_reason.items():
            result.drops_by_reason[reason] = result.drops_by_reason.get(reason, 0) + n

    spans: dict[TP, list[int]] = {}
    for event in events:
        for tp, (first, last) in event.inputs.items():
            if tp[0] in sources:
                span = spans.setdefault(tp, [first, last])
                span[0], span[1] = min(span[0], first), max(span[1], last)
    balances = {tp: PartitionBalance(tp[0], tp[1], a, b) for tp, (a, b) in sorted(spans.items())}
    flags = {tp: bytearray(b - a + 1) for tp, (a, b) in spans.items()}
    windows = None
    if shape is not None:
        assert readers is not None, "a windowed topology needs its window readers"
        windows = WindowCoverage(shape, readers, spans)

    consumer = _consumer(connection)
    try:
        for tp, (first, last) in spans.items():  # which offsets hold committed records
            marks = flags[tp]
            for msg in _read(consumer, tp, first, last):
                marks[cast(int, msg.offset()) - first] |= REAL
                if windows is not None:
                    windows.saw(tp, cast(int, msg.offset()), msg.value())
        for event in events:  # which were read by a committed transaction, and how often
            for tp, (first, last) in event.inputs.items():
                if tp not in flags:
                    continue
                marks, base = flags[tp], spans[tp][0]
                for i in range(first - base, last - base + 1):
                    marks[i] |= READ_TWICE if marks[i] & READ else READ
        kinds = {
            **{s.topic: "output" for s in topology.outputs.values() if isinstance(s, Sink)},
            topology.dead_letter_topic: "dead_letter",
            topology.late_topic: "late",
            topology.retry_topic: "retry",
        }
        if windows is not None and topology.sink is not None:  # a window has one topic sink
            kinds[topology.sink.topic] = "window"
        out_spans: dict[TP, list[int]] = {}
        for event in events:
            for tp, (first, last) in event.outputs.items():
                if tp[0] in kinds:
                    span = out_spans.setdefault(tp, [first, last])
                    span[0], span[1] = min(span[0], first), max(span[1], last)
        retried: dict[tuple[str, int, int], tuple[TP, int]] = {}
        # the retry topic first: an output of a retried record names its retry record
        for tp, (first, last) in sorted(out_spans.items(), key=lambda i: kinds[i[0][0]] != "retry"):
            low, _high = consumer.get_watermark_offsets(TopicPartition(*tp), timeout=15)
            if low > first:
                result.output_problems.append(
                    f"{tp[0]}/{tp[1]}: committed offsets {first}-{min(low, last + 1) - 1} are "
                    f"gone (the log now starts at {low})"
                )
            kind = kinds[tp[0]]
            for msg in _read(consumer, tp, max(first, low), last):
                if windows is not None and kind == "window":
                    _mark_window(msg, windows, balances)
                else:
                    _mark(msg, kind, spans, flags, balances, retried)
    finally:
        consumer.close()

    if windows is not None:
        covered = {tp: windows.covered(tp) for tp in spans}
        for event in events:
            _balance_windowed_event(event, flags, balances, windows, covered)
    else:
        for event in events:
            _balance_event(event, spans, flags, balances)
    for tp, balance in balances.items():
        marks = flags[tp]
        base = spans[tp][0]
        skipped = [base + i for i, m in enumerate(marks) if m & REAL and not m & READ]
        twice = [base + i for i, m in enumerate(marks) if m & REAL and m & READ_TWICE]
        named_twice = [base + i for i, m in enumerate(marks) if m & DONE_TWICE]
        balance.inputs = sum(1 for m in marks if m & REAL and m & READ)
        balance.retry_waiting = sum(
            1 for m in marks if m & REAL and m & READ and m & RETRY and not m & DONE
        )
        for offsets, what in (
            (skipped, "read by no committed transaction"),
            (twice, "read by two committed transactions"),
            (named_twice, "named by two outputs or dead letters"),
        ):
            if offsets:
                balance.problems.append(f"{len(offsets)} records {what}: {_offsets(offsets)}")
        balance.unexplained_offsets = balance.unexplained_offsets[:SHOWN]
    result.partitions = list(balances.values())
    return result


def _balance_event(
    event: _Event,
    spans: dict[TP, list[int]],
    flags: dict[TP, bytearray],
    balances: dict[TP, PartitionBalance],
) -> None:
    """The event's input records that nothing names must be exactly its counted drops."""
    unnamed: dict[TP, list[int]] = {}
    for tp, (first, last) in event.inputs.items():
        if tp not in flags:
            continue
        marks, base = flags[tp], spans[tp][0]
        unnamed[tp] = [
            base + i
            for i in range(first - base, last - base + 1)
            if marks[i] & REAL and not marks[i] & (DONE | RETRY)
        ]
    total = sum(len(v) for v in unnamed.values())
    for tp, offsets in unnamed.items():
        balance = balances[tp]
        if total == event.drops:
            balance.dropped += len(offsets)
        else:
            balance.unexplained += len(offsets)
            balance.unexplained_offsets.extend(offsets[: SHOWN - len(balance.unexplained_offsets)])


def _mark_window(
    msg: Message, windows: WindowCoverage, balances: dict[TP, PartitionBalance]
) -> None:
    """Records the input range a window result names."""
    headers = dict(cast(list[tuple[str, bytes]], msg.headers() or []))
    source = headers.get(h.SOURCE)
    if source is None:
        return
    topic, partition, span = source.decode().rsplit("/", 2)
    first, last = (int(x) for x in span.split("-"))
    tp = (topic, int(partition))
    if windows.add(tp, first, last, msg.value()):
        balances[tp].outputs += 1


def _balance_windowed_event(
    event: _Event,
    flags: dict[TP, bytearray],
    balances: dict[TP, PartitionBalance],
    windows: WindowCoverage,
    covered: dict[TP, bytearray],
) -> None:
    """The event's inputs nothing names: in a fired window's range, in a window not fired
    yet, or else at most as many as its counted drops (a drop may lie inside a range)."""
    outside: dict[TP, list[int]] = {}
    for tp, (first, last) in event.inputs.items():
        if tp not in flags:
            continue
        marks, base, inside = flags[tp], windows.spans[tp][0], covered[tp]
        balance = balances[tp]
        rest = outside.setdefault(tp, [])
        for i in range(first - base, last - base + 1):
            if not marks[i] & REAL or marks[i] & (DONE | RETRY):
                continue
            if windows.open(tp, base + i):  # no fired window can hold it, range or not
                balance.open_windows += 1
            elif inside[i]:
                balance.in_windows += 1
            else:
                rest.append(base + i)
    total = sum(len(v) for v in outside.values())
    for tp, offsets in outside.items():
        balance = balances[tp]
        if total <= event.drops:
            balance.dropped += len(offsets)
        else:
            balance.unexplained += len(offsets)
            balance.unexplained_offsets.extend(offsets[: SHOWN - len(balance.unexplained_offsets)])


def _mark(
    msg: Message,
    kind: str,
    spans: dict[TP, list[int]],
    flags: dict[TP, bytearray],
    balances: dict[TP, PartitionBalance],
    retried: dict[tuple[str, int, int], tuple[TP, int]],
) -> None:
    """Marks the source offsets one output, dead letter, late or retry record names.

    Retry records are remembered in `retried`: an output made from one names it (its
    `streamline.source` is the retry topic's offset), and is traced through it.
    """
    headers = dict(cast(list[tuple[str, bytes]], msg.headers() or []))
    if kind == "output":
        source = headers.get(h.SOURCE)
        if source is None:
            return
        topic, partition, span = source.decode().rsplit("/", 2)
        first, last = (int(x) for x in span.split("-"))
    else:
        topic_b = headers.get(h.SOURCE_TOPIC)
        if topic_b is None:
            return
        topic = topic_b.decode()
        partition = headers.get(h.SOURCE_PARTITION, b"0").decode()
        first = last = int(headers.get(h.SOURCE_OFFSET, b"-1"))
    tp = (topic, int(partition))
    if kind == "retry":
        retried[(msg.topic(), msg.partition(), msg.offset())] = (tp, first)  # type: ignore[index]
    elif (topic, int(partition), first) in retried:
        tp, first = retried[(topic, int(partition), first)]
        last = first
    marks = flags.get(tp)
    if marks is None:
        return
    base = spans[tp][0]
    balance = balances[tp]
    for offset in range(first, last + 1):
        i = offset - base
        if not 0 <= i < len(marks) or not marks[i] & READ:
            continue  # read by a transaction outside the range
        if kind == "retry":
            marks[i] |= RETRY
            continue
        marks[i] |= DONE_TWICE if marks[i] & DONE else DONE
        if kind == "output":
            balance.outputs += 1
        elif kind == "late":
            balance.late += 1
        else:
            error_type = headers.get(h.ERROR_TYPE, b"?").decode()
            balance.dead_letters[error_type] = balance.dead_letters.get(error_type, 0) + 1


def _read_events(connection: Connection, name: str, since_ms: int, until_ms: int) -> list[_Event]:
    consumer = _consumer(connection)
    try:
        metadata = consumer.list_topics(LINEAGE_TOPIC, timeout=15).topics.get(LINEAGE_TOPIC)
        if metadata is None or metadata.error is not None:
            raise StreamlineError(f"topic {LINEAGE_TOPIC} does not exist: no lineage was recorded")
        events: list[_Event] = []
        # an event's record is written just before its transaction commits, after its
        # eventTime: start a minute before `since` to be safe, by the records' timestamps
        starts = consumer.offsets_for_times(
            [
                TopicPartition(LINEAGE_TOPIC, p, max(since_ms - 60_000, 0))
                for p in metadata.partitions
            ],
            timeout=15,
        )
        for start in starts:
            if start.offset < 0:  # no record at or after that time
                continue
            for msg in _read(consumer, (LINEAGE_TOPIC, start.partition), start.offset, None):
                if msg.key() != name.encode():
                    continue
                doc = json.loads(msg.value() or b"{}")
                if doc.get("job", {}).get("name") != name:
                    continue
                at = int(datetime.fromisoformat(doc["eventTime"]).timestamp() * 1000)
                if not since_ms <= at <= until_ms:
                    continue
                counts = doc.get("run", {}).get("facets", {}).get(COUNTS_FACET)
                if counts is None:
                    raise StreamlineError(
                        f"a lineage event of {name} at {doc['eventTime']} has no drop counts: "
                        "it was written by an older streamline; reconcile a later range"
                    )
                drops = {str(k): int(v) for k, v in counts.get("drops", {}).items()}
                events.append(
                    _Event(
                        ranges_of(doc.get("inputs", [])),
                        ranges_of(doc.get("outputs", [])),
                        sum(drops.values()),
                        drops,
                    )
                )
        return events
    finally:
        consumer.close()


def _consumer(connection: Connection) -> Consumer:
    return Consumer(
        connection.config(
            **{
                "group.id": "streamline-reconcile",
                "enable.auto.commit": False,
                "isolation.level": "read_committed",
                "enable.partition.eof": True,
                # records are streamed: keep librdkafka's fetch buffers small
                "queued.max.messages.kbytes": 16384,
                "fetch.max.bytes": 8 * 1024 * 1024,
                "max.partition.fetch.bytes": 2 * 1024 * 1024,
            },
            log_level=0,
        )
    )


def _read(consumer: Consumer, tp: TP, first: int, last: int | None) -> Iterator[Message]:
    """Committed records of `tp` from `first` to `last` (None: to the end)."""
    low, high = consumer.get_watermark_offsets(TopicPartition(*tp), timeout=15)
    end = high if last is None else min(last + 1, high)
    start = max(first, low)
    if start >= end:
        return
    consumer.assign([TopicPartition(tp[0], tp[1], start)])
    deadline = time.monotonic() + 30
    try:
        while True:
            messages = consumer.consume(10000, timeout=1.0)
            if not messages and time.monotonic() > deadline:
                raise StreamlineError(f"could not read {tp[0]}/{tp[1]} up to {end} within 30s")
            for msg in messages:
                error = msg.error()
                if error is not None:
                    if error.code() == KafkaError._PARTITION_EOF:
                        return
                    raise StreamlineError(f"reading {tp[0]}/{tp[1]}: {error.str()}")
                deadline = time.monotonic() + 30
                offset = cast(int, msg.offset())
                if offset >= end:
                    return
                yield msg
                if offset + 1 >= end:
                    return
    finally:
        consumer.unassign()


def _offsets(offsets: list[int]) -> str:
    shown = ", ".join(str(o) for o in offsets[:SHOWN])
    return shown + (f" (and {len(offsets) - SHOWN} more)" if len(offsets) > SHOWN else "")


def _iso(ms: int) -> str:
    return datetime.fromtimestamp(ms / 1000, UTC).isoformat(timespec="seconds")
