"""A task: one partition of the stateful input, with its operator chain and their stores.

Like Kafka Streams' `StreamTask`, a task owns the lifecycle of its state:

- `process` runs a batch's records of the partition through the chain; what the last
  operator emits goes to the sink, late and failed records go where failures go;
- `prepare_commit()` gives the stores' changes for their changelogs, which the commit
  cycle writes into the open transaction;
- `post_commit(offsets)` commits the stores once the transaction has, checkpointing
  each at the offset its history has reached;
- `abort()` rolls the stores back and starts in-memory progress over;
- `close(clean)` closes the stores (uncommitted changes are dropped either way).
"""

from __future__ import annotations

from collections.abc import Callable, Iterator, Mapping
from dataclasses import dataclass
from typing import Any

from streamline.reliability.dead_letter import Failure
from streamline.runtime.collector import RecordCollector
from streamline.runtime.failures import FailedRecords
from streamline.runtime.operators import Changes, OperatorStore, StatefulOperator
from streamline.runtime.record import Record
from streamline.runtime.transaction import Transaction

TP = tuple[str, int]
Failures = list[tuple[Record, Failure]]


@dataclass(frozen=True)
class TaskOutputs:
    """Where every task sends what it makes: one of these is shared by the tasks."""

    collector: RecordCollector[Any]
    failed: FailedRecords
    encode: Callable[[list[Record], Failures], list[tuple[Record, bytes]]]
    """Sink bytes of result records; a record that does not fit the sink schema fails."""
    sink_topic: str
    topology_header: bytes


class Task:
    """The operators and stores of one partition, and their commit lifecycle."""

    def __init__(
        self,
        topic: str,
        partition: int,
        operators: list[StatefulOperator],
        outputs: TaskOutputs,
    ) -> None:
        self.topic = topic
        self.partition = partition
        self.operators = operators
        self.stores: list[OperatorStore] = [s for op in operators for s in op.stores]
        self._outputs = outputs

    def process(
        self, records: list[Record], wall_ms: int, txn: Transaction, failures: Failures
    ) -> None:
        """Runs a run of the partition's records (in offset order) through the chain."""
        self._forward(0, records, wall_ms, txn, failures)

    def punctuate(
        self, wall_ms: int, open_txn: Callable[[], Transaction], failures: Failures
    ) -> None:
        """Emits what each operator has due by time (opening a transaction for it)."""
        for index, operator in enumerate(self.operators):
            records = operator.punctuate(wall_ms)
            if records:
                self._forward(index + 1, records, wall_ms, open_txn(), failures)

    def _forward(
        self, index: int, records: list[Record], wall_ms: int, txn: Transaction, failures: Failures
    ) -> None:
        if index < len(self.operators):
            out = _Output(self, index, wall_ms, txn, failures)
            self.operators[index].process(records, wall_ms, out)
            return
        outputs = self._outputs
        encoded = outputs.encode(records, failures)
        outputs.collector.send_outputs(
            encoded, outputs.sink_topic, outputs.topology_header, txn.event_times
        )
        txn.outputs += len(encoded)

    # --- the commit lifecycle ----------------------------------------------------------

    def prepare_commit(self) -> list[tuple[str, int, Changes]]:
        """(changelog topic, partition, changes) of every store changed in the transaction."""
        changed = []
        for bound in self.stores:
            if bound.spec.changelog:
                changes = bound.store.pending_changes()
                if changes:
                    changed.append((bound.spec.topic, self.partition, changes))
        return changed

    def post_commit(self, offsets: Mapping[TP, int]) -> None:
        """The transaction committed: each store commits, checkpointed at its topic's offset.

        `offsets` holds the next offset of every changelog partition written and of every
        input partition committed. A changelog offset is the highest delivered one seen
        so far; when this transaction's delivery reports have not been served yet it lags
        behind, and a restore replays a little more than needed, which whole-value
        records allow.
        """
        for bound in self.stores:
            store = bound.store
            if not store.pending_count:
                continue
            checkpoint = store.checkpoint()
            known = checkpoint.changelog_offset if checkpoint is not None else 0
            store.commit(max(known, offsets.get((bound.spec.topic, self.partition), 0)))

    def abort(self, wall_ms: int) -> None:
        """The transaction aborted: drop the stores' changes and the progress made with them."""
        for bound in self.stores:
            bound.store.rollback()
        for operator in self.operators:
            operator.started(wall_ms)

    def close(self, clean: bool = True) -> None:
        """Closes the stores; without a clean commit before, their changes are dropped."""
        for bound in self.stores:
            if not clean:
                bound.store.rollback()
            bound.store.close()


def partition_runs(records: list[Record], retry_topic: str) -> Iterator[tuple[int, list[Record]]]:
    """(partition, run) of each run of consecutive records of one stateful partition.

    A record back from the retry topic belongs to its source partition's task.
    """
    run: list[Record] = []
    run_partition = -1
    for record in records:
        partition = record.partition
        if record.topic == retry_topic:
            partition = record.origin()[1]
        if partition != run_partition:
            if run:
                yield run_partition, run
            run = []
            run_partition = partition
        run.append(record)
    if run:
        yield run_partition, run


class _Output:
    """What operator `index` of a task emits during one call: to the next, or to the sink."""

    __slots__ = ("_failures", "_index", "_task", "_txn", "_wall_ms")

    def __init__(
        self, task: Task, index: int, wall_ms: int, txn: Transaction, failures: Failures
    ) -> None:
        self._task = task
        self._index = index
        self._wall_ms = wall_ms
        self._txn = txn
        self._failures = failures

    def emit(self, records: list[Record]) -> None:
        self._task._forward(self._index + 1, records, self._wall_ms, self._txn, self._failures)

    def late(self, record: Record, reason: str, watermark: int) -> None:
        stage = self._task.operators[self._index].stage
        self._task._outputs.failed.late(record, reason, watermark, stage, self._txn)

    def fail(self, record: Record, failure: Failure) -> None:
        self._failures.append((record, failure))
