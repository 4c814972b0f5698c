"""Tasks kept open across an eager rebalance, for the partitions that come back.

The classic group protocol revokes every partition at each rebalance, and most come
back to the same instance in the next assignment. Instead of closing their stores
(RocksDB) and opening them again, the task manager parks the tasks it revokes cleanly
and takes them back when their partition is assigned again: the store stays open,
and the restore that follows replays only what the changelog gained meanwhile (nothing,
unless another instance held the partition in between; a restore moves the store's
epoch, so the operator reloads what it keeps in memory).

A parked task is closed when the next assignment does not include its partition, when
the state generation changed meanwhile (its store would trust a checkpoint of an older
generation), and when the instance stops.
"""

from __future__ import annotations

import logging

from streamline.runtime.task import Task

log = logging.getLogger("streamline.runtime")


class ParkedTasks:
    """Cleanly revoked tasks, by partition, with the state generation they were opened in."""

    def __init__(self) -> None:
        self._tasks: dict[int, tuple[Task, int]] = {}

    def __len__(self) -> int:
        return len(self._tasks)

    def park(self, task: Task, generation: int) -> None:
        """Keeps the task's stores open; its last transaction has committed."""
        previous = self._tasks.pop(task.partition, None)
        if previous is not None:
            previous[0].close()
        self._tasks[task.partition] = (task, generation)

    def take(self, partition: int, generation: int) -> Task | None:
        """The partition's parked task, still open, if it was opened in this generation."""
        parked = self._tasks.pop(partition, None)
        if parked is None:
            return None
        task, opened_in = parked
        if opened_in != generation:
            task.close()
            return None
        log.debug("partition %d came back: its stores stayed open", partition)
        return task

    def close_except(self, partitions: set[int]) -> None:
        """Closes the parked tasks of partitions other than `partitions` (moved away)."""
        for partition in [p for p in self._tasks if p not in partitions]:
            self._tasks.pop(partition)[0].close()

    def close(self) -> None:
        self.close_except(set())
