"""How the task manager hands records to tasks (streamline.runtime.task_manager)."""

from __future__ import annotations

from pathlib import Path
from types import SimpleNamespace
from typing import Any

from streamline import headers as h
from streamline.reliability.dead_letter import Failure
from streamline.runtime.offsets import Offsets
from streamline.runtime.record import Record
from streamline.runtime.table_operator import TableState
from streamline.runtime.task_manager import TaskManager
from streamline.runtime.transaction import Transaction
from streamline.runtime.windowed import SourceWatermarks


class FakeTask:
    def __init__(self, log: list[tuple[int, list[int]]], partition: int) -> None:
        self.log, self.partition = log, partition

    def process(self, records: list[Record], wall_ms: int, txn: Any, failures: Any) -> None:
        self.log.append((self.partition, [r.offset for r in records]))


def manager(*partitions: int) -> tuple[TaskManager, list[tuple[int, list[int]]]]:
    pipeline: Any = SimpleNamespace(
        topology=SimpleNamespace(retry_topic="t.retry"),
        windowed=False,
        repartition=False,
        files=None,
        tables=TableState([]),
    )
    m = TaskManager(
        pipeline, Path("."), None, None, Offsets(), SourceWatermarks(0, 0),  # type: ignore[arg-type]
        None, None, None, None,  # type: ignore[arg-type]
    )  # fmt: skip
    log: list[tuple[int, list[int]]] = []
    m.tasks = {p: FakeTask(log, p) for p in partitions}  # type: ignore[misc]
    return m, log


def record(partition: int, offset: int, topic: str = "in", source: int | None = None) -> Record:
    headers = (
        None
        if source is None
        else [(h.SOURCE_TOPIC, b"in"), (h.SOURCE_PARTITION, str(source).encode())]
    )
    return Record(topic, partition, offset, None, b"", headers)


def test_each_run_of_one_partition_goes_to_its_task_in_order() -> None:
    m, log = manager(0, 1)
    batch = [record(0, 1), record(0, 2), record(1, 5), record(0, 3)]
    m.process(batch, 0, Transaction(), [])
    assert log == [(0, [1, 2]), (1, [5]), (0, [3])]


def test_a_retried_record_goes_to_the_task_of_its_source_partition() -> None:
    m, log = manager(0, 1)
    m.process([record(0, 1), record(0, 7, topic="t.retry", source=1)], 0, Transaction(), [])
    assert log == [(0, [1]), (1, [7])]


def test_records_of_a_partition_without_a_task_fail_saying_so() -> None:
    m, log = manager(0)
    failures: list[tuple[Record, Failure]] = []
    stray = record(4, 9)
    m.process([stray], 0, Transaction(), failures)
    assert log == []
    ((failed, failure),) = failures
    assert failed is stray
    assert failure.error_type == "aggregate"
    assert "partition 4 is not on this instance" in failure.message
