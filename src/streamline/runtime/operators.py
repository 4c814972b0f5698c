"""The stateful-operator interface: what a task asks of each operator in its chain.

A task (`runtime/task.py`) runs one partition of the stateful input. Each of its
operators keeps state in one or more stores of that partition. Before the task
processes anything, every store is restored: from its own changelog (the compacted
topic its changes are written to, in the transaction that made them) or from a source
topic that is itself the state's history (a table). The task does all the I/O: it
writes the changelogs, commits and rolls back the stores, and sends what operators
emit. Operators are pure: records in, results and late or failed records out.

Window state (`runtime/windowed.py`, `WindowStage`) is one implementation.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from typing import Protocol

from streamline.reliability.dead_letter import Failure
from streamline.runtime.record import Record
from streamline.state.store import PartitionStore

log = logging.getLogger("streamline.runtime")

Changes = list[tuple[bytes, bytes | None]]


@dataclass(frozen=True)
class StoreSpec:
    """One store of an operator: its name, and the topic it is restored from."""

    name: str
    """The store's name: its local directory and its label on /metrics."""
    topic: str
    """The topic whose partition of the task's number holds the store's history."""
    changelog: bool = True
    """True: `topic` is the store's changelog, written at each commit. False: `topic` is a
    source topic read as a table; nothing is written, the committed input offset is its
    position."""


@dataclass(frozen=True)
class OperatorStore:
    """A store of one partition, with what it is."""

    spec: StoreSpec
    store: PartitionStore


class OperatorOutput(Protocol):
    """Where an operator sends what it makes; the task implements it."""

    def emit(self, records: list[Record]) -> None:
        """Results, to the next operator or the sink (`Record.value` is the result value)."""

    def late(self, record: Record, reason: str, watermark: int) -> None:
        """An input record too late to count; it goes to the late topic."""

    def fail(self, record: Record, failure: Failure) -> None:
        """An input record the operator cannot take; it becomes a dead letter."""


class StatefulOperator(Protocol):
    """An operator with state per partition. The task calls, in this order:

    - `stores` once, to restore each store before anything is processed;
    - `started(wall_ms)` after the restore, and again after an abort rolled the stores
      back: in-memory progress (a watermark) starts over from the committed state;
    - `process` with each run of records of the partition, in offset order;
    - `punctuate(wall_ms)` on every step of the loop, for results due by time.

    The stores may change only inside `process` and `punctuate`; the task commits or
    rolls back those changes with the transaction.
    """

    stage: str
    """The operator's path in the topology, as its failures and late records name it."""
    stores: list[OperatorStore]

    def process(self, records: list[Record], wall_ms: int, out: OperatorOutput) -> None:
        """Takes a run of records of the task's partition, in order."""

    def punctuate(self, wall_ms: int) -> list[Record]:
        """Results due by now (windows the watermark has passed)."""

    def started(self, wall_ms: int) -> None:
        """Starts in-memory progress over from the stores' committed state."""


def restore_store(
    store: OperatorStore,
    partition: int,
    high_watermark: int,
    chunks_from: Callable[[int], Iterator[Changes]],
    end_of: Callable[[], int],
) -> int:
    """Replays a store's history into it; returns the number of records replayed.

    Local state with a checkpoint of this generation replays from the checkpoint; other
    local state is wiped and the whole history replayed.
    """
    started = time.monotonic()
    start = store.store.begin_restore(high_watermark)
    replayed = 0
    for chunk in chunks_from(start):
        store.store.restore(chunk)
        replayed += len(chunk)
    store.store.finish_restore(max(start, end_of()))
    log.info(
        "restored %s partition %d: %d changelog records from offset %d in %.2fs (%s)",
        store.spec.name,
        partition,
        replayed,
        start,
        time.monotonic() - started,
        "local checkpoint" if start > 0 else "from the beginning",
    )
    return replayed
