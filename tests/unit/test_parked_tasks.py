"""Tasks kept open across an eager rebalance: taken back open, closed when they moved away."""

from __future__ import annotations

from pathlib import Path
from typing import Any, cast

from streamline.runtime.operators import OperatorStore, StoreSpec
from streamline.runtime.parked import ParkedTasks
from streamline.runtime.task import Task, TaskOutputs
from streamline.state.store import PartitionStore


class StoreOnly:
    """An operator that only holds a store (the parked tasks never process)."""

    stage = "window"

    def __init__(self, store: PartitionStore) -> None:
        self.stores = [OperatorStore(StoreSpec("windows", "x.changelog"), store)]


def task(tmp: Path, partition: int) -> tuple[Task, PartitionStore]:
    store = PartitionStore(tmp / str(partition), generation=1)
    outputs = cast(TaskOutputs, None)  # never used: nothing is processed
    return Task("orders", partition, [cast(Any, StoreOnly(store))], outputs), store


def is_open(store: PartitionStore) -> bool:
    return not store._closed


def test_a_partition_that_comes_back_gets_its_task_with_the_store_still_open(
    tmp_path: Path,
) -> None:
    parked = ParkedTasks()
    t0, s0 = task(tmp_path, 0)
    s0.put(b"k", b"v")
    s0.commit(1)
    parked.park(t0, generation=1)
    assert parked.take(0, generation=1) is t0
    assert is_open(s0) and s0.get(b"k") == b"v"
    assert parked.take(0, generation=1) is None  # taken once
    s0.close()


def test_tasks_whose_partition_moved_away_or_whose_generation_changed_are_closed(
    tmp_path: Path,
) -> None:
    parked = ParkedTasks()
    (t0, s0), (t1, s1), (t2, s2) = (task(tmp_path, p) for p in range(3))
    for t in (t0, t1, t2):
        parked.park(t, generation=1)
    assert parked.take(1, generation=2) is None  # the state was reset meanwhile
    assert not is_open(s1)
    assert parked.take(0, generation=1) is t0
    parked.close_except({0})  # the assignment is {0}: partition 2 moved away
    assert not is_open(s2) and is_open(s0) and len(parked) == 0
    parked.park(t0, generation=1)
    parked.close()
    assert not is_open(s0)
