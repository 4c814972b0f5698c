"""Holding retry partitions until their next record is due (streamline.runtime.retry_gate)."""

from __future__ import annotations

from typing import Any

from streamline import headers as h
from streamline.runtime.record import Record
from streamline.runtime.retry_gate import RetryGate

RETRY = "t.retry"
NOW_S = 1_000.0


class FakeConsumer:
    def __init__(self) -> None:
        self.calls: list[tuple[str, Any]] = []

    def pause(self, partitions: list[Any]) -> None:
        self.calls.append(("pause", partitions[0]))

    def resume(self, partitions: list[Any]) -> None:
        self.calls.append(("resume", partitions[0]))

    def seek(self, partition: Any) -> None:
        self.calls.append(("seek", partition))


def tp(topic: str, partition: int, offset: int = -1001) -> tuple[str, int, int]:
    return (topic, partition, offset)


def retry(partition: int, offset: int, due_ms: float) -> Record:
    return Record(
        RETRY, partition, offset, None, b"", [(h.RETRY_NOT_BEFORE, str(int(due_ms)).encode())]
    )


def gate(consumer: FakeConsumer, assignment: set[tuple[str, int]], clock: list[float]) -> RetryGate:
    return RetryGate(consumer, RETRY, assignment, tp, clock=lambda: clock[0])


def test_records_due_and_source_records_pass() -> None:
    consumer = FakeConsumer()
    batch = [Record("src", 0, 1, None, b"", None), retry(0, 5, NOW_S * 1000 - 1)]
    assert gate(consumer, set(), [NOW_S]).hold(batch) == batch
    assert consumer.calls == []


def test_a_record_not_due_pauses_its_partition_at_it_and_drops_what_follows_there() -> None:
    consumer = FakeConsumer()
    g = gate(consumer, {(RETRY, 0), (RETRY, 1)}, [NOW_S])
    later = NOW_S * 1000 + 500
    held, after, other = retry(0, 5, later), retry(0, 6, 0), retry(1, 9, 0)
    assert g.hold([held, after, other]) == [other]
    assert consumer.calls == [("pause", tp(RETRY, 0, 5)), ("seek", tp(RETRY, 0, 5))]
    assert g.paused == {(RETRY, 0): later}


def test_a_held_partition_resumes_once_its_record_is_due() -> None:
    consumer, clock = FakeConsumer(), [NOW_S]
    g = gate(consumer, {(RETRY, 0)}, clock)
    g.hold([retry(0, 5, NOW_S * 1000 + 500)])
    g.resume_due()
    assert g.paused
    clock[0] = NOW_S + 0.5
    g.resume_due()
    assert not g.paused
    assert consumer.calls[-1] == ("resume", tp(RETRY, 0))


def test_a_partition_revoked_meanwhile_is_not_resumed() -> None:
    consumer, clock = FakeConsumer(), [NOW_S]
    assignment = {(RETRY, 0)}
    g = gate(consumer, assignment, clock)
    g.hold([retry(0, 5, NOW_S * 1000 + 500)])
    assignment.clear()
    clock[0] = NOW_S + 1
    g.resume_due()
    assert not g.paused
    assert [c for c, _ in consumer.calls] == ["pause", "seek"]
