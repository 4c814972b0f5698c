"""The commit cycle's steps, in order, against fake clients (streamline.runtime.commit)."""

from __future__ import annotations

from collections.abc import Callable, Mapping
from types import SimpleNamespace
from typing import Any

import pytest
from confluent_kafka import KafkaError, KafkaException

from streamline.runtime.collector import RecordCollector
from streamline.runtime.commit import CommitCycle
from streamline.runtime.offsets import Offsets
from streamline.runtime.record import Record
from streamline.runtime.windowed import SourceWatermarks

Log = list[tuple[Any, ...]]


class FakeProducer:
    def __init__(self, log: Log, on_delivery: Callable[[Any, Any], None]) -> None:
        self.log = log
        self.on_delivery = on_delivery
        self.fail_commit: KafkaException | None = None
        self.delivered: list[tuple[Callable[[Any, Any], None], Any]] = []

    def produce(self, topic: str, **kwargs: Any) -> None:
        self.log.append(("produce", topic, kwargs.get("partition", -1)))
        msg = SimpleNamespace(topic=lambda: topic, partition=lambda: 0, offset=lambda: 9)
        self.delivered.append((kwargs.get("on_delivery") or self.on_delivery, msg))

    def poll(self, timeout: float = 0) -> int:
        for callback, msg in self.delivered:
            callback(None, msg)
        self.delivered.clear()
        return 0

    def flush(self, timeout: float = 0) -> int:
        self.log.append(("flush",))
        self.poll()
        return 0

    def purge(self) -> None:
        self.log.append(("purge",))

    def begin_transaction(self) -> None:
        self.log.append(("begin",))

    def send_offsets_to_transaction(
        self, offsets: list[Any], metadata: Any, timeout: float
    ) -> None:
        self.log.append(("send_offsets", [(tp.topic, tp.partition, tp.offset) for tp in offsets]))

    def commit_transaction(self, timeout: float) -> None:
        if self.fail_commit is not None:
            raise self.fail_commit
        self.log.append(("commit",))

    def abort_transaction(self, timeout: float) -> None:
        self.log.append(("abort",))


class FakeConsumer:
    def __init__(self, log: Log) -> None:
        self.log = log

    def consumer_group_metadata(self) -> str:
        return "group-metadata"

    def commit(self, offsets: list[Any], asynchronous: bool) -> None:
        self.log.append(
            ("consumer_commit", [(tp.topic, tp.partition, tp.offset) for tp in offsets])
        )

    def committed(self, partitions: list[Any], timeout: float) -> list[Any]:
        return partitions

    def seek(self, tp: Any) -> None:
        self.log.append(("seek", tp.topic, tp.partition, tp.offset))


class FakeTasks:
    def __init__(self, log: Log) -> None:
        self.log = log

    def prepare_commit(self) -> list[tuple[str, int, list[tuple[bytes, bytes | None]]]]:
        self.log.append(("prepare_commit",))
        return [("w.changelog", 1, [(b"k", b"v")])]

    def post_commit(self, offsets: Mapping[tuple[str, int], int]) -> None:
        self.log.append(("post_commit", dict(offsets)))

    def abort(self, wall_ms: int) -> None:
        self.log.append(("tasks_abort",))


class FakeMarkers:
    def __init__(self, log: Log) -> None:
        self.log = log

    def write_markers(self) -> None:
        self.log.append(("markers",))


class FakeMetrics:
    def __init__(self, log: Log) -> None:
        self.log = log
        self.partitions = self.stores = self

    def __getattr__(self, name: str) -> Callable[..., None]:
        def record(*args: Any) -> None:
            if name == "transaction_committed":
                self.log.append((name,))
            elif name == "transaction_aborted":
                self.log.append((name, args[0]))

        return record


def cycle(exactly_once: bool = True, lineage: bool = False) -> tuple[CommitCycle, Log, Offsets]:
    log: Log = []
    pipeline: Any = SimpleNamespace(
        exactly_once=exactly_once,
        commit_interval_ms=1000,
        transactional_id=lambda instance: f"t-{instance}",
        topology=SimpleNamespace(lineage=lineage, late_topic="late", name="t", version="1"),
        fingerprint="f",
        group_id="g",
        owned_topics=["out"],
        sink_topic="out",
        files=None,
        windowed=False,
        stages=[],
        router=None,
    )
    connection: Any = SimpleNamespace(
        bootstrap_servers="b:9092", access_error=lambda *args, **kwargs: None
    )
    collector: Any = RecordCollector(
        lambda on_delivery: FakeProducer(log, on_delivery), lambda err, topic: None
    )
    offsets = Offsets()
    offsets.assign(("in", 1))
    offsets.start_at(("in", 1), 100)
    c = CommitCycle(
        pipeline, "i", 10, connection, FakeConsumer(log), collector, offsets,  # type: ignore[arg-type]
        FakeTasks(log), FakeMarkers(log), SourceWatermarks(0, 1000),
        FakeMetrics(log), lambda: None,  # type: ignore[arg-type]
    )  # fmt: skip
    return c, log, offsets


def batch(*offsets: int) -> list[Record]:
    return [Record("in", 1, o, None, b"", None) for o in offsets]


def test_a_commit_runs_its_steps_in_order() -> None:
    c, log, offsets = cycle()
    txn = c.begin()
    c.processed(txn, batch(100, 101, 102))
    c.commit_or_abort()
    steps = [entry[0] for entry in log]
    assert steps == [
        "begin",
        "markers",
        "prepare_commit",
        "produce",
        "send_offsets",
        "commit",
        "post_commit",
        "transaction_committed",
    ]
    assert ("send_offsets", [("in", 1, 103)]) in log
    (post,) = [entry for entry in log if entry[0] == "post_commit"]
    assert post[1] == {("in", 1): 103, ("w.changelog", 1): 10}
    assert offsets.committed == {("in", 1): 103}
    assert c.txn is None


def test_the_lineage_event_goes_out_after_the_flush_and_before_the_offsets() -> None:
    # its partition joins the transaction and the event is delivered while the coordinator
    # takes the offsets, rather than after them
    c, log, _ = cycle(lineage=True)
    txn = c.begin()
    c.processed(txn, batch(100, 101, 102))
    c.commit_or_abort()
    steps = [
        entry[:2] for entry in log if entry[0] in ("flush", "produce", "send_offsets", "commit")
    ]
    assert steps == [
        ("produce", "w.changelog"),
        ("flush",),
        ("produce", "streamline.lineage"),
        ("send_offsets", [("in", 1, 103)]),
        ("commit",),
    ]


def test_at_least_once_flushes_then_commits_the_offsets_with_the_consumer() -> None:
    c, log, _ = cycle(exactly_once=False)
    txn = c.begin()
    c.processed(txn, batch(100))
    c.commit_or_abort()
    steps = [entry[0] for entry in log]
    assert "begin" not in steps and "send_offsets" not in steps
    assert steps.index("produce") < steps.index("consumer_commit") < steps.index("post_commit")


def test_an_abortable_error_aborts_rolls_back_and_rewinds_to_the_committed_offsets() -> None:
    c, log, offsets = cycle()
    txn = c.begin()
    c.processed(txn, batch(100, 101))
    failed = KafkaError(KafkaError._FENCED, "fenced", txn_requires_abort=True)
    c._collector.producer.fail_commit = KafkaException(failed)
    c.commit_or_abort()
    steps = [entry[0] for entry in log]
    assert steps[-4:] == ["transaction_aborted", "abort", "tasks_abort", "seek"]
    assert log[-1] == ("seek", "in", 1, 100)
    assert offsets.positions == {("in", 1): 100}
    assert c.txn is None


def test_a_fenced_producer_stops_without_aborting_rewinding_or_a_new_producer() -> None:
    from streamline.runtime.commit import ProducerFenced

    c, log, offsets = cycle()
    offsets.committed = {("in", 1): 100}
    txn = c.begin()
    c.processed(txn, batch(100, 101))
    fenced = KafkaError(KafkaError._FENCED, "fenced by a newer instance", fatal=True)
    c._collector.producer.fail_commit = KafkaException(fenced)
    with pytest.raises(ProducerFenced) as caught:
        c.commit_or_abort()
    assert str(caught.value) == (
        "producer fenced: another process took over transactional.id t-i (fenced by a newer "
        "instance); this instance stopped without committing its open transaction. Each "
        "running instance needs its own --instance-id"
    )
    assert caught.value.exit_code == 1
    steps = [entry[0] for entry in log]
    assert steps[-2:] == ["transaction_aborted", "purge"] and log[-2][1] == "fenced"
    assert "abort" not in steps and "seek" not in steps and "tasks_abort" not in steps
    assert c.txn is None


def test_a_commit_is_due_after_the_interval_or_the_record_limit() -> None:
    c, _, _ = cycle()
    assert not c.due()
    txn = c.begin()
    assert not c.due()
    txn.records = 10
    assert c.due()
    txn.records = 0
    txn.started -= 2
    assert c.due()
    assert c.due_in() == pytest.approx(0.0)


def test_a_batch_waits_a_tenth_of_the_commit_interval_and_never_past_the_commit() -> None:
    c, _, _ = cycle()  # commit interval 1 s
    txn = c.begin()
    assert c.batch_wait() == pytest.approx(0.1, abs=0.01)
    txn.started -= 0.95  # 50 ms to the commit
    assert c.batch_wait() == pytest.approx(0.05, abs=0.01)
    txn.started -= 1
    assert c.batch_wait() == 0.0


def test_the_first_transaction_after_an_assignment_commits_without_waiting_for_the_interval() -> (
    None
):
    c, log, offsets = cycle()
    offsets.just_assigned = True  # the task manager sets it on each assignment
    assert not c.due()  # nothing to commit yet
    txn = c.begin()
    c.processed(txn, batch(100))
    assert c.due()  # the interval (1 s) has not passed
    c.commit_or_abort()
    assert ("commit",) in log
    assert offsets.just_assigned is False
    txn = c.begin()
    c.processed(txn, batch(101))
    assert not c.due()  # the next one waits for the interval again
