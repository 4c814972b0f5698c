"""The record collector against a fake producer (streamline.runtime.collector)."""

from __future__ import annotations

from collections.abc import Callable
from types import SimpleNamespace
from typing import Any

from streamline import headers as h
from streamline.errors import StreamlineError
from streamline.reliability.dead_letter import Failure
from streamline.runtime.collector import RecordCollector
from streamline.runtime.record import Record

Delivery = Callable[[Any, Any], None]


class FakeMessage:
    def __init__(self, topic: str, partition: int, offset: int | None) -> None:
        self._topic, self._partition, self._offset = topic, partition, offset

    def topic(self) -> str:
        return self._topic

    def partition(self) -> int:
        return self._partition

    def offset(self) -> int | None:
        return self._offset


class FakeProducer:
    """Keeps what is produced; raises BufferError `full` times; delivers on poll/flush."""

    def __init__(self, on_delivery: Delivery, full: int = 0) -> None:
        self.on_delivery = on_delivery
        self.full = full
        self.produced: list[dict[str, Any]] = []
        self.polls: list[float] = []
        self.queued: list[tuple[Delivery, FakeMessage]] = []
        self.purged = False
        self.next_offset: dict[tuple[str, int], int] = {}

    def produce(self, topic: str, **kwargs: Any) -> None:
        if self.full:
            self.full -= 1
            raise BufferError("queue full")
        self.produced.append({"topic": topic, **kwargs})
        partition = kwargs.get("partition", -1)
        partition = 0 if partition == -1 else partition
        offset = self.next_offset.get((topic, partition), 0)
        self.next_offset[(topic, partition)] = offset + 1
        callback = kwargs.get("on_delivery") or self.on_delivery
        self.queued.append((callback, FakeMessage(topic, partition, offset)))

    def poll(self, timeout: float = 0) -> int:
        self.polls.append(timeout)
        return self.deliver()

    def flush(self, timeout: float = 0) -> int:
        self.deliver()
        return 0

    def purge(self, *args: Any) -> None:
        self.purged = True
        self.queued.clear()

    def deliver(self, error: Any = None) -> int:
        queued, self.queued = self.queued, []
        for callback, msg in queued:
            callback(error, msg)
        return len(queued)


def collector(full: int = 0, denied: StreamlineError | None = None) -> RecordCollector[Any]:
    made: list[FakeProducer] = []

    def new_producer(on_delivery: Delivery) -> FakeProducer:
        made.append(FakeProducer(on_delivery, full))
        return made[-1]

    return RecordCollector(new_producer, lambda err, topic: denied, ["out", "dlq"])


def record(topic: str = "in", partition: int = 0, offset: int = 7) -> Record:
    r = Record(topic, partition, offset, b"k", b"raw", [("own", b"1")])
    r.event_time = 1234
    return r


def test_sink_outputs_carry_topology_source_range_and_event_time_headers() -> None:
    c = collector()
    event_times: list[int] = []
    c.send_outputs([(record(), b"v")], "out", b"t@1#abc", event_times)
    (sent,) = c.producer.produced
    assert sent["topic"] == "out" and sent["value"] == b"v" and sent["key"] == b"k"
    assert sent["headers"] == [
        (h.TOPOLOGY, b"t@1#abc"),
        (h.SOURCE, b"in/0/7-7"),
        (h.EVENT_TIME, b"1234"),
    ]
    assert event_times == [1234]


def test_a_full_local_queue_is_waited_out_and_nothing_is_lost() -> None:
    c = collector(full=3)
    c.send_outputs([(record(offset=1), b"a"), (record(offset=2), b"b")], "out", b"t", [])
    assert [p["value"] for p in c.producer.produced] == [b"a", b"b"]
    assert c.producer.polls == [0.05, 0.05]  # the first BufferError hands over to the waiting loop


def test_a_failed_record_keeps_its_original_bytes_and_gets_failure_headers() -> None:
    c = collector()
    c.send_failed(record(), Failure("map", "boom", "stages[0].map"), "dlq", [("x", b"y")], 3)
    (sent,) = c.producer.produced
    assert (sent["topic"], sent["key"], sent["value"], sent["partition"]) == (
        "dlq",
        b"k",
        b"raw",
        3,
    )
    headers = dict(sent["headers"])
    assert headers["own"] == b"1"
    assert headers[h.ERROR_TYPE] == b"map"
    assert headers[h.SOURCE_OFFSET] == b"7"
    assert sent["headers"][-1] == ("x", b"y")


def test_delivered_offsets_per_topic_partition_are_kept_for_lineage_while_a_transaction_is_open() -> (
    None
):
    c = collector()
    c.begin()
    c.send_outputs([(record(), b"a"), (record(), b"b")], "out", b"t", [])
    c.produce("elsewhere", None, b"x", [])
    c.poll()
    assert c.produced == {("out", 0): [0, 1]}
    c.end()
    c.send_outputs([(record(), b"c")], "out", b"t", [])
    c.poll()
    assert c.produced is None


def test_the_first_failed_write_is_latched_until_the_next_transaction() -> None:
    c = collector()
    c.begin()
    c.produce("out", None, b"x", [])
    c.produce("out", None, b"y", [])
    c.producer.deliver(error="first")
    assert c.first_error == "first"
    c.begin()
    assert c.first_error is None


def test_a_write_the_acls_refuse_is_kept_as_the_access_error() -> None:
    refused = StreamlineError("grant WRITE on out")
    c = collector(denied=refused)
    c.produce("out", None, b"x", [])
    c.producer.deliver(error="denied")
    assert c.denied is refused


def test_changelog_writes_move_the_changelog_offset_as_they_are_delivered() -> None:
    c = collector()
    c.send_changelog("cl", 2, [(b"a", b"1"), (b"b", None)])
    assert [(p["key"], p["value"], p["partition"]) for p in c.producer.produced] == [
        (b"a", b"1", 2),
        (b"b", None, 2),
    ]
    assert c.changelog_offsets == {}
    c.poll()
    assert c.changelog_offsets == {("cl", 2): 2}


def test_recreating_the_producer_purges_the_old_one() -> None:
    c = collector()
    old = c.producer
    c.recreate_producer()
    assert old.purged and c.producer is not old


def test_source_headers_name_each_records_own_partition_and_offset_range() -> None:
    c = collector()
    windowed = record("b", 2, 40)
    windowed.last_offset, windowed.event_time = 45, -5
    outputs = [(record("a", 1, 3), b"1"), (windowed, b"2"), (record("a", 0, 9), b"3")]
    outputs.append((record("a", 1, 4), b"4"))
    event_times: list[int] = []
    c.send_outputs(outputs, "out", b"t", event_times)
    assert [dict(p["headers"])[h.SOURCE] for p in c.producer.produced] == [
        b"a/1/3-3",
        b"b/2/40-45",
        b"a/0/9-9",
        b"a/1/4-4",
    ]
    assert [dict(p["headers"])[h.EVENT_TIME] for p in c.producer.produced] == [
        b"1234",
        b"-5",
        b"1234",
        b"1234",
    ]
    assert event_times == [1234, -5, 1234, 1234]


def test_delivered_ranges_widen_both_ways_whatever_order_reports_come_in() -> None:
    c = collector()
    c.begin()
    for offset in (5, 3, 8, 4):
        msg = SimpleNamespace(topic=lambda: "out", partition=lambda: 2, offset=lambda o=offset: o)
        c._delivered(None, msg)
    assert c.produced == {("out", 2): [3, 8]}
