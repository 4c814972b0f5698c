"""A task's lifecycle over fake operators and stores, and window state in a task
(streamline.runtime.task, streamline.runtime.windowed)."""

from __future__ import annotations

from pathlib import Path
from types import SimpleNamespace
from typing import Any

from streamline import headers as h
from streamline.reliability.dead_letter import Failure
from streamline.runtime.operators import OperatorOutput, OperatorStore, StoreSpec
from streamline.runtime.record import Record
from streamline.runtime.task import Task, TaskOutputs
from streamline.runtime.transaction import Transaction
from streamline.runtime.windowed import DirectWindowStage, RepartitionedWindowStage, WindowSettings
from streamline.topology.model import Topology


class FakeStore:
    def __init__(self, changes: list[tuple[bytes, bytes | None]] | None = None) -> None:
        self.changes = changes or []
        self.committed_at: list[int] = []
        self.rolled_back = 0
        self.closed = False
        self.checkpoint_offset: int | None = None

    def pending_changes(self) -> list[tuple[bytes, bytes | None]]:
        return list(self.changes)

    @property
    def pending_count(self) -> int:
        return len(self.changes)

    def checkpoint(self) -> Any:
        if self.checkpoint_offset is None:
            return None
        return SimpleNamespace(changelog_offset=self.checkpoint_offset)

    def commit(self, offset: int) -> None:
        self.committed_at.append(offset)
        self.changes = []

    def rollback(self) -> None:
        self.rolled_back += 1
        self.changes = []

    def close(self) -> None:
        self.closed = True


class Doubler:
    """A stateful operator that emits each record twice and counts in its stores."""

    stage = "stages[0].double"

    def __init__(self, *stores: OperatorStore) -> None:
        self.stores = list(stores)
        self.started_at: list[int] = []
        self.due: list[Record] = []

    def process(self, records: list[Record], wall_ms: int, out: OperatorOutput) -> None:
        for record in records:
            if record.value.get("late"):
                out.late(record, "too late", 42)
            elif record.value.get("bad"):
                out.fail(record, Failure("aggregate", "bad", self.stage))
            else:
                out.emit([record, record])

    def punctuate(self, wall_ms: int) -> list[Record]:
        due, self.due = self.due, []
        return due

    def started(self, wall_ms: int) -> None:
        self.started_at.append(wall_ms)


class FakeCollector:
    def __init__(self) -> None:
        self.outputs: list[tuple[Record, bytes]] = []

    def send_outputs(
        self, outputs: list[tuple[Record, bytes]], sink: str, topology: bytes, times: list[int]
    ) -> None:
        self.outputs += outputs
        times += [r.event_time for r, _ in outputs]


class FakeFailed:
    def __init__(self) -> None:
        self.late: list[tuple[Record, str, int, str]] = []

    def late_record(
        self, record: Record, reason: str, watermark: int, stage: str, txn: Any
    ) -> None:
        self.late.append((record, reason, watermark, stage))
        txn.late += 1


def record(offset: int, **value: Any) -> Record:
    r = Record("in", 3, offset, b"k", b"", None)
    r.value = dict(value)
    return r


def task(*operators: Any, partition: int = 3) -> tuple[Task, FakeCollector, FakeFailed]:
    collector, failed = FakeCollector(), FakeFailed()
    failed_records: Any = SimpleNamespace(late=failed.late_record)
    outputs = TaskOutputs(
        collector,  # type: ignore[arg-type]
        failed_records,
        lambda records, failures: [(r, b"x") for r in records],
        "out",
        b"t",
    )
    return Task("in", partition, list(operators), outputs), collector, failed


def bound(name: str, store: FakeStore, changelog: bool = True) -> OperatorStore:
    return OperatorStore(StoreSpec(name, f"{name}.changelog", changelog), store)  # type: ignore[arg-type]


def test_what_the_last_operator_emits_goes_to_the_sink_and_is_counted() -> None:
    t, collector, _ = task(Doubler())
    txn = Transaction()
    t.process([record(1), record(2)], 0, txn, [])
    assert [r.offset for r, _ in collector.outputs] == [1, 1, 2, 2]
    assert txn.outputs == 4


def test_a_chain_feeds_each_operators_results_to_the_next() -> None:
    t, collector, _ = task(Doubler(), Doubler())
    t.process([record(1)], 0, Transaction(), [])
    assert len(collector.outputs) == 4


def test_late_and_failed_records_go_where_failures_go_named_by_their_operator() -> None:
    t, collector, failed = task(Doubler())
    txn, failures = Transaction(), []  # type: ignore[var-annotated]
    late, bad = record(1, late=True), record(2, bad=True)
    t.process([late, bad], 0, txn, failures)
    assert failed.late == [(late, "too late", 42, "stages[0].double")]
    assert txn.late == 1
    assert [(r, f.error_type) for r, f in failures] == [(bad, "aggregate")]
    assert collector.outputs == []


def test_punctuate_opens_a_transaction_only_when_something_is_due() -> None:
    op = Doubler()
    t, _, _ = task(op)
    opened: list[Transaction] = []

    def open_txn() -> Transaction:
        opened.append(Transaction())
        return opened[-1]

    t.punctuate(0, open_txn, [])
    assert opened == []
    op.due = [record(9)]
    t.punctuate(0, open_txn, [])
    assert len(opened) == 1 and opened[0].outputs == 1


def test_prepare_commit_gives_the_changes_of_changelog_stores_only() -> None:
    logged, table, clean = FakeStore([(b"a", b"1")]), FakeStore([(b"b", b"2")]), FakeStore()
    t, _, _ = task(Doubler(bound("w", logged), bound("table", table, changelog=False)))
    t.operators[0].stores.append(bound("empty", clean))
    t.stores.append(bound("empty", clean))
    assert t.prepare_commit() == [("w.changelog", 3, [(b"a", b"1")])]


def test_post_commit_checkpoints_each_changed_store_at_its_topics_offset() -> None:
    changed, unchanged = FakeStore([(b"a", b"1")]), FakeStore()
    behind = FakeStore([(b"c", b"3")])
    behind.checkpoint_offset = 50
    t, _, _ = task(Doubler(bound("w", changed), bound("u", unchanged), bound("b", behind)))
    t.post_commit({("w.changelog", 3): 17, ("b.changelog", 3): 40})
    assert changed.committed_at == [17]
    assert unchanged.committed_at == []
    assert behind.committed_at == [50]  # never behind its own checkpoint


def test_abort_rolls_every_store_back_and_starts_the_operators_over() -> None:
    a, b = FakeStore([(b"a", b"1")]), FakeStore()
    op = Doubler(bound("a", a), bound("b", b))
    t, _, _ = task(op)
    t.abort(1234)
    assert (a.rolled_back, b.rolled_back) == (1, 1)
    assert a.pending_count == 0
    assert op.started_at == [1234]


def test_close_closes_every_store_and_a_dirty_close_drops_the_changes_first() -> None:
    a = FakeStore([(b"a", b"1")])
    t, _, _ = task(Doubler(bound("a", a)))
    t.close(clean=False)
    assert a.closed and a.rolled_back == 1


# --- window state in a task ------------------------------------------------------------


def window_topology(emit: str = "final") -> Topology:
    return Topology.model_validate(
        {
            "apiVersion": "streamline/v1",
            "name": "w",
            "version": "1",
            "sources": [
                {
                    "name": "s",
                    "topic": "in",
                    "schema": "x.In",
                    "event_time": "t",
                    "partitioned_by": "k",
                    "watermark": {"max_out_of_orderness": "0s"},
                }
            ],
            "stages": [
                {"key_by": "k"},
                {
                    "window": {
                        "tumbling": "10s",
                        "aggregate": {"n": "count()"},
                        "emit": emit,
                    }
                },
            ],
            "sink": {"topic": "out", "schema": "x.Out"},
        }
    )


def keyed(offset: int, key: str, t: int) -> Record:
    r = Record("in", 0, offset, key.encode(), b"", None)
    r.value = {"k": key}
    r.event_time = t
    return r


def test_a_window_stage_emits_a_window_once_the_watermark_passes_it(tmp_path: Path) -> None:
    settings = WindowSettings.of(window_topology(), tmp_path, repartitioned=False)
    stage = DirectWindowStage(settings, 0, 0, 0)
    stage.started(0)
    t, collector, failed = task(stage, partition=0)
    txn = Transaction()
    t.process([keyed(1, "a", 1_000), keyed(2, "a", 2_000), keyed(3, "b", 12_000)], 0, txn, [])
    assert collector.outputs == []
    t.punctuate(0, lambda: txn, [])
    ((result, _),) = collector.outputs
    assert result.value == {"k": "a", "window_start": 0, "window_end": 10_000, "n": 2}
    assert (result.topic, result.partition, result.offset, result.last_offset) == ("in", 0, 1, 2)
    assert result.out_key == b"a"
    late = keyed(4, "a", 3_000)
    t.process([late], 0, txn, [])
    assert failed.late[0][0] is late
    assert failed.late[0][3] == "stages[1].window"
    (change,) = t.prepare_commit()
    assert change[:2] == ("w.windows.changelog", 0)
    t.close()


def test_a_window_stage_reads_markers_and_keyed_records_from_the_repartition_topic(
    tmp_path: Path,
) -> None:
    settings = WindowSettings.of(window_topology(), tmp_path, repartitioned=True)
    stage = RepartitionedWindowStage(settings, 0, 0, [("in", 0)], 0)
    t, collector, _ = task(stage, partition=0)
    txn = Transaction()
    value = Record("w.repartition", 0, 5, b"a", b'{"k":"a"}', [(h.EVENT_TIME, b"1000")])
    marker = Record("w.repartition", 0, 6, None, None, [(h.WATERMARK_MARKER, b"in|0|20000|0")])
    t.process([value, marker], 1, txn, [])
    t.punctuate(1, lambda: txn, [])
    ((result, _),) = collector.outputs
    assert result.value["n"] == 1 and result.value["window_end"] == 10_000
    t.close()
