"""The task manager: what a rebalance changes, and the tasks of the assigned partitions.

On assignment it reads the committed offsets (and the state generation in their
metadata), opens a task per assigned partition of the stateful input and restores each
of its stores before the loop processes anything, and rebuilds state whose input was
rewound by another tool. On revocation and loss it forgets the partitions and closes
their tasks. Between rebalances it hands each run of records to the task of its
partition and passes the commit cycle's hooks to every task.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Callable, Iterator, Mapping
from pathlib import Path

from confluent_kafka import OFFSET_INVALID, Consumer, KafkaError, KafkaException, TopicPartition

from streamline.kafka.admin import delete_all_records, topic_end_offsets
from streamline.kafka.connection import Connection
from streamline.kafka.consumers import ChangelogReader, RestoreClients, restore_clients
from streamline.observability.metrics import Metrics
from streamline.reliability.dead_letter import Failure
from streamline.runtime.fencing import UNSTABLE_WAIT_S, LostMembers
from streamline.runtime.health import Liveness
from streamline.runtime.offsets import Offsets
from streamline.runtime.operators import Changes, OperatorStore, StatefulOperator, restore_store
from streamline.runtime.parked import ParkedTasks
from streamline.runtime.pipeline import Pipeline
from streamline.runtime.record import Record
from streamline.runtime.standby import StandbyReplicas
from streamline.runtime.stream_join_stage import StreamJoinSettings, StreamJoinStage
from streamline.runtime.table_manager import TableManager
from streamline.runtime.task import Task, TaskOutputs, partition_runs
from streamline.runtime.transaction import Transaction
from streamline.runtime.windowed import (
    AGGREGATE,
    SourceWatermarks,
    WindowSettings,
    window_stage,
)
from streamline.state.generation import generation_of
from streamline.state.reset import plan_state_reset, reset_topics
from streamline.state.store import PartitionStore

log = logging.getLogger("streamline.runtime")

TP = tuple[str, int]
Settings = WindowSettings | StreamJoinSettings
Failures = list[tuple[Record, Failure]]


class TaskManager:
    """Assignment, revocation and loss; opening, restoring and closing tasks."""

    def __init__(
        self,
        pipeline: Pipeline,
        state_dir: Path,
        connection: Connection,
        consumer: Consumer,
        offsets: Offsets,
        source_watermarks: SourceWatermarks,
        liveness: Liveness,
        metrics: Metrics,
        outputs: TaskOutputs,
        source_partitions: list[TP] | None,
        instance_id: str = "",
        producer_ready: Callable[[], None] = lambda: None,
    ) -> None:
        self._pipeline = pipeline
        self._connection = connection
        self._consumer = consumer
        self._offsets = offsets
        self._source_watermarks = source_watermarks
        self._liveness = liveness
        self._metrics = metrics
        self._outputs = outputs
        self._source_partitions = source_partitions
        self._producer_ready = producer_ready  # the loop's producer, initialised meanwhile
        self._retry_topic = pipeline.topology.retry_topic
        self.join_settings = (
            StreamJoinSettings.of(pipeline.checked, state_dir) if pipeline.windowed else None
        )
        self.window_settings = (
            WindowSettings.of(pipeline.topology, state_dir, pipeline.repartition)
            if pipeline.windowed and self.join_settings is None
            else None
        )
        self.tasks: dict[int, Task] = {}
        self.tables = (  # the tables' partitions of the assigned numbers, loaded on assignment
            TableManager(
                pipeline.tables,
                connection,
                metrics,
                liveness.progressed,
                pipeline.resources.tables_group,
            )
            if pipeline.tables
            else None
        )
        self._restore_clients: RestoreClients | None = None  # for every restore of this process
        self._skip_to: dict[TP, int] = {}
        self._parked = ParkedTasks()  # revoked cleanly, open until the next assignment
        self._lost = (  # a lost instance's unfinished commit is aborted when it holds offsets
            LostMembers(
                connection, pipeline.group_id, pipeline.source_topics[0], instance_id,
                pipeline.transactional_id,
            )
            if instance_id and pipeline.exactly_once
            else None
        )  # fmt: skip
        self._standby = None
        self._handed: dict[int, PartitionStore] = {}  # standby stores handed over, still open
        if self.window_settings is not None and (replicas := pipeline.topology.standby_replicas):
            self._standby = StandbyReplicas(
                self.window_settings, connection, pipeline.group_id, instance_id, replicas,
                metrics.standby,
            )  # fmt: skip
            self._standby.start()

    def _operators(
        self, settings: Settings, partition: int, wall_ms: int
    ) -> list[StatefulOperator]:
        """The operator chain of one partition of the stateful input.

        Its store is the standby's, handed over open, when that one is of this generation.
        """
        generation, sources = self._offsets.generation, self._source_partitions
        if isinstance(settings, StreamJoinSettings):
            return [StreamJoinStage(settings, partition, generation, wall_ms, self._metrics)]
        store = self._handed.pop(partition, None)
        if store is not None and store.generation != generation:
            store.close()  # checkpointed in its generation: opened again, and wiped
            store = None
        return [window_stage(settings, partition, generation, sources, wall_ms, store)]

    # --- processing --------------------------------------------------------------------

    def process(
        self, records: list[Record], wall_ms: int, txn: Transaction, failures: Failures
    ) -> None:
        """Hands each run of records of one partition to its task, in order.

        A record back from the retry topic belongs to its source partition's task.
        """
        for partition, run in partition_runs(records, self._retry_topic):
            self._process_run(partition, run, wall_ms, txn, failures)

    def _process_run(
        self, partition: int, run: list[Record], wall_ms: int, txn: Transaction, failures: Failures
    ) -> None:
        task = self.tasks.get(partition)
        if task is not None:
            task.process(run, wall_ms, txn, failures)
            return
        # never with range assignment and co-partitioned topics; not silent
        settings = self.window_settings or self.join_settings
        stage = settings.stage if settings else "window"
        message = f"the state of partition {partition} is not on this instance"
        failures.extend((record, Failure(AGGREGATE, message, stage)) for record in run)

    def punctuate(
        self, wall_ms: int, open_txn: Callable[[], Transaction], failures: Failures
    ) -> None:
        for task in self.tasks.values():
            task.punctuate(wall_ms, open_txn, failures)
        if self.tables is not None:
            self.tables.idle()

    def stores(self) -> Iterator[tuple[int, OperatorStore]]:
        for partition, task in self.tasks.items():
            for bound in task.stores:
                yield partition, bound

    # --- the commit cycle's hooks ------------------------------------------------------

    def prepare_commit(self) -> list[tuple[str, int, Changes]]:
        return [change for task in self.tasks.values() for change in task.prepare_commit()]

    def post_commit(self, offsets: Mapping[TP, int]) -> None:
        for task in self.tasks.values():
            task.post_commit(offsets)

    def abort(self, wall_ms: int) -> None:
        for task in self.tasks.values():
            task.abort(wall_ms)

    # --- rebalances --------------------------------------------------------------------

    def assign(self, partitions: list[TopicPartition]) -> None:
        """Takes on the partitions: their committed offsets, then their tasks, restored."""
        if self._lost is not None:
            self._lost.assigned()
        metrics = self._metrics
        metrics.rebalance("assigned")
        self._liveness.restoring = True
        metrics.set_ready(False)
        offsets = self._offsets
        for tp in partitions:
            offsets.assign((tp.topic, tp.partition))
        try:
            committed = self._committed(partitions) if partitions else []
        except KafkaException as exc:
            if exc.args[0].code() != KafkaError._DESTROY:
                raise
            log.info("closing: assignment of %d partitions dropped", len(partitions))
            return  # SIGTERM during the join: the consumer is closing, nothing to take on
        rewound: list[TP] = []
        for tp in committed:
            if tp.offset != OFFSET_INVALID and tp.offset >= 0:
                offsets.start_at((tp.topic, tp.partition), tp.offset)
                generation = generation_of(tp.metadata)
                if generation is None:
                    rewound.append((tp.topic, tp.partition))
                else:
                    offsets.generation = max(offsets.generation, generation)
        if self._pipeline.files is not None:  # settle files left by a crash, before reading
            assigned = [(tp.topic, tp.partition) for tp in partitions]
            self._pipeline.files.recover({tp: offsets.committed.get(tp, 0) for tp in assigned})
        metrics.set_assigned_partitions(len(offsets.assignment))
        log.info("assigned %s", sorted(f"{t}/{p}" for t, p in offsets.assignment))
        if self._standby is not None:  # their standby stores become the tasks' stores
            self._handed = self._standby.release(tp.partition for tp in partitions)
        settings = self.window_settings or self.join_settings
        if settings is not None:
            self._open_tasks(settings, partitions, rewound)
        for store in self._handed.values():  # not taken by a task
            store.close()
        self._handed = {}
        if self.tables is not None:  # loaded before the instance is ready
            sources = self._pipeline.source_topics
            self.tables.assign(tp.partition for tp in partitions if tp.topic in sources)
        self._parked.close_except(set(self.tasks))  # their partitions moved away
        if self._standby is not None:
            self._standby.hold(self.tasks)
        wall_ms = int(time.time() * 1000)  # idleness counts from when processing can start
        for tp in partitions:
            if tp.topic in self._pipeline.source_topics:
                self._source_watermarks.assign((tp.topic, tp.partition), wall_ms)
        self._producer_ready()  # no transaction begins before (commit.py)
        offsets.just_assigned = True
        self._liveness.joined = True
        self._liveness.restoring = False
        metrics.set_ready(True)

    def _committed(self, partitions: list[TopicPartition]) -> list[TopicPartition]:
        """The group's committed offsets of the partitions (read_committed: stable ones).

        Offsets a lost instance sent in a commit it never finished stay unstable until its
        transaction times out (~35 s): after `UNSTABLE_WAIT_S`, its transactional id is
        fenced, which aborts that transaction, and they are read again (`fencing.py`).
        """
        if self._lost is None:
            return self._consumer.committed(partitions, timeout=30)
        try:
            return self._consumer.committed(partitions, timeout=UNSTABLE_WAIT_S)
        except KafkaException as exc:
            if exc.args[0].code() != KafkaError._TIMED_OUT:
                raise
        log.info("committed offsets held by an unfinished commit: fencing lost instances")
        self._lost.fence_lost()
        return self._consumer.committed(partitions, timeout=30)

    def revoke(self, partitions: list[TopicPartition], clean: bool = True) -> None:
        """Forgets the partitions and closes their tasks (after the commit cycle is done).

        `clean`: their last transaction committed (revoked) rather than aborted (lost).
        """
        stateful = self._pipeline.window_input_topic
        for tp in partitions:
            key = (tp.topic, tp.partition)
            self._offsets.forget(key)
            self._metrics.partitions.remove_partition(tp.topic, tp.partition)
            self._source_watermarks.revoke(key)
            if tp.topic == stateful and tp.partition in self.tasks:
                task = self.tasks.pop(tp.partition)
                if clean:  # kept open: the partition usually comes back in the next assignment
                    self._parked.park(task, self._offsets.generation)
                else:
                    task.close(clean)
                for bound in task.stores:
                    self._metrics.stores.remove_store_partition(bound.spec.name, tp.partition)
                if self.join_settings is not None:
                    self._metrics.stream_joins.remove_partition(
                        self.join_settings.stage, tp.partition
                    )
        self._metrics.set_assigned_partitions(len(self._offsets.assignment))
        if self.tables is not None:
            sources = self._pipeline.source_topics
            self.tables.revoke(tp.partition for tp in partitions if tp.topic in sources)

    def close(self) -> None:
        if self._standby is not None:
            self._standby.stop()
        for task in self.tasks.values():
            task.close()
        self.tasks.clear()
        if self.tables is not None:
            self.tables.close()
        self._parked.close()
        if self._restore_clients is not None:
            self._restore_clients.close()
            self._restore_clients = None

    # --- opening and restoring tasks ---------------------------------------------------

    def _open_tasks(
        self, settings: Settings, partitions: list[TopicPartition], rewound: list[TP]
    ) -> None:
        """Opens and restores the tasks; rebuilds state whose input was rewound elsewhere."""
        rebuild = self._rebuild_after_rewind(rewound) if rewound else set()
        for tp in partitions:
            if tp.topic == self._pipeline.window_input_topic:
                self._open(settings, tp.topic, tp.partition, wipe=tp.partition in rebuild)
        skipped = [tp for tp in partitions if (tp.topic, tp.partition) in self._skip_to]
        if skipped:  # start the skipped partitions at their end instead of the committed offset
            for tp in partitions:
                tp.offset = self._skip_to.get((tp.topic, tp.partition), OFFSET_INVALID)
            self._consumer.assign(partitions)
        self._skip_to.clear()

    def _open(self, settings: Settings, topic: str, partition: int, wipe: bool) -> None:
        """Opens the partition's task and restores each of its stores before processing."""
        if partition in self.tasks:
            return
        task = self._parked.take(partition, self._offsets.generation) or Task(
            topic,
            partition,
            self._operators(settings, partition, int(time.time() * 1000)),
            self._outputs,
        )
        for bound in task.stores:
            if wipe:
                bound.store.wipe()
            self._restore(bound, partition)
        wall_ms = int(time.time() * 1000)  # idleness counts from when processing can start
        for operator in task.operators:
            operator.started(wall_ms)
        self.tasks[partition] = task

    def _restore(self, bound: OperatorStore, partition: int) -> None:
        """Replays the store's changelog (or source) partition into it, showing progress."""
        if self._restore_clients is None:
            self._restore_clients = restore_clients(self._connection)
        name = bound.spec.name
        reader = ChangelogReader(
            self._connection, bound.spec.topic, partition, self._restore_clients
        )
        high = reader.high_watermark()
        metrics = self._metrics
        progressed = self._liveness.progressed

        def read(start: int) -> Iterator[Changes]:
            # restore progress on /metrics while the restore blocks the loop
            metrics.stores.set_restore_remaining(name, partition, max(0, high - start))
            waiting_since, fenced = 0.0, False
            for chunk in reader.read(start):
                progressed()
                if chunk:
                    yield chunk
                elif not waiting_since:
                    waiting_since = time.monotonic()
                    self._open_transaction_ahead(bound.spec.topic, partition, reader.end, high)
                elif not fenced and time.monotonic() - waiting_since > UNSTABLE_WAIT_S:
                    fenced = True
                    if self._lost is not None:  # an instance that left the group left it open
                        self._lost.fence_lost()
                metrics.stores.set_restore_remaining(name, partition, max(0, high - reader.end))

        replayed = restore_store(bound, partition, high, read, lambda: reader.end)
        metrics.stores.set_restore_remaining(name, partition, 0)
        metrics.stores.restored(name, partition, replayed)

    def _open_transaction_ahead(self, topic: str, partition: int, stable: int, end: int) -> None:
        """A restore waits for a transaction left open in its changelog partition: the
        records after it, committed by the partition's later owners, belong to the state.

        Left by this instance's predecessor (killed in the middle of a commit), it ends as
        soon as this instance's producer is initialised, which fences it.
        """
        log.info(
            "restoring %s/%d: an open transaction holds offsets %d to %d back; waiting for "
            "it to end (an instance stopped in the middle of a commit left it)",
            topic, partition, stable, end,
        )  # fmt: skip
        self._producer_ready()

    def _rebuild_after_rewind(self, rewound: list[TP]) -> set[int]:
        """Offsets reset by another tool: drops the state built from the input read again.

        Applies the state-reset plan `replay` also follows (`state/reset.py`) and returns
        the window partitions whose state is rebuilt. Without repartitioning, those are
        the rewound partitions; with it, every window partition (the input feeds them
        all): their unread repartition backlog is skipped, and a new generation makes
        other instances drop their local copies.
        """
        resources = self._pipeline.resources
        ends = topic_end_offsets(self._consumer, reset_topics(resources), 30)
        plan = plan_state_reset(resources, rewound, ends)
        if not plan:
            return set()
        offsets = self._offsets
        for topic, p, end in plan.skip:
            self._skip_to[(topic, p)] = end
            if (topic, p) in offsets.assignment:
                offsets.start_at((topic, p), end)
        if plan.new_generation:
            offsets.generation += 1
        for topic, emptied in plan.to_delete().items():
            delete_all_records(self._connection, topic, emptied)
        log.warning(
            "offsets of %s were reset outside streamline: window state of partitions %s is "
            "rebuilt from the input read again, so nothing is counted twice",
            ", ".join(f"{t}/{p}" for t, p in rewound),
            plan.partitions,
        )
        return set(plan.partitions)
