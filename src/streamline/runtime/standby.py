"""Standby replicas: local copies of the window state of partitions another instance owns.

With `standby_replicas: N`, each instance tails the changelog partitions of the window
partitions it is a standby for into local stores, in a thread of its own. A standby
store is the very directory (and checkpoint) an active task of that partition would
open, so an instance that takes a partition over restores only what its standby had
not read yet: the task manager releases the standby store (checkpointed at what it has
read) before it opens the task, and the ordinary restore starts from that checkpoint.

Placement: the group's members, ordered by instance id, form a ring; the standbys of a
partition are the N members after its owner (never the owner itself), so each member
holds about as many standbys as the others. It is read from the group's description
every few seconds; a partition without an owner (a rebalance in flight, a lost member)
keeps its standbys where they are. The state generation comes from the group's
committed offsets, as the task manager's does, so a standby checkpoint is one the
active task trusts. Standbys never block readiness: the loop and `/readyz` do not wait
for them, and they start a refresh period (2 s) after the instance's first assignment
is restored, so they delay neither that restore nor the first commit after it.
"""

from __future__ import annotations

import logging
import threading
import time
from collections.abc import Iterable

from confluent_kafka import (
    OFFSET_INVALID,
    Consumer,
    KafkaError,
    KafkaException,
    Message,
    TopicPartition,
)

from streamline.kafka.admin import describe_group_assignment, end_offset
from streamline.kafka.connection import Connection
from streamline.kafka.consumers import standby_consumer
from streamline.observability.metrics import StandbyMetrics
from streamline.runtime.windowed import WindowSettings
from streamline.state import WINDOW_STORE as STORE
from streamline.state.generation import generation_of
from streamline.state.store import PartitionStore, partition_path

log = logging.getLogger("streamline.runtime")

REFRESH_S = 2.0  # how often placement and generation are read (and one more standby opened)
CHECKPOINT_S = 1.0  # how often a standby store checkpoints what it has read
CHUNK = 5000


def standby_partitions(
    owners: dict[int, str], members: Iterable[str], me: str, replicas: int
) -> set[int]:
    """The partitions `me` is a standby for: those whose owner is followed by `me` within
    `replicas` places on the ring of members (sorted ids). Never the owner's own."""
    ring = sorted(set(members))
    if me not in ring or replicas <= 0:
        return set()
    mine = set()
    for partition, owner in owners.items():
        if owner == me or owner not in ring:
            continue
        i = ring.index(owner)
        followers = [ring[(i + k) % len(ring)] for k in range(1, len(ring))]
        if me in followers[:replicas]:
            mine.add(partition)
    return mine


class StandbyReplicas:
    """The standby stores of this instance, kept up to date by a thread of their own.

    The task manager calls `release(partitions)` before it opens tasks for them (their
    standby stores are checkpointed and closed, and not opened again while held), and
    `hold(partitions)` with the partitions whose stores its tasks keep open.
    """

    def __init__(
        self,
        settings: WindowSettings,
        connection: Connection,
        group_id: str,
        instance_id: str,
        replicas: int,
        metrics: StandbyMetrics,
    ) -> None:
        self._settings = settings
        self._connection = connection
        self._group_id = group_id
        self._me = instance_id
        self._replicas = replicas
        self._metrics = metrics
        self._lock = threading.Lock()
        self._stores: dict[int, PartitionStore] = {}
        self._position: dict[int, int] = {}  # next changelog offset to read, per standby
        self._dirty: set[int] = set()
        self._held: set[int] = set()
        self._wanted: set[int] = set()
        self._generation = 0
        self._reassign = False
        self._halt = threading.Event()
        self._assigned = threading.Event()  # standbys wait for the first assignment's restore
        self._thread = threading.Thread(target=self._run, name="standby", daemon=True)

    def start(self) -> None:
        self._thread.start()

    def partitions(self) -> set[int]:
        with self._lock:
            return set(self._stores)

    # --- the task manager's side -----------------------------------------------------

    def release(self, partitions: Iterable[int]) -> dict[int, PartitionStore]:
        """Checkpoints the standby stores of `partitions`, which become held, and hands them
        over still open (the task of the partition takes the store instead of opening it
        again: a RocksDB close and open less in a takeover). The caller closes the ones it
        does not use."""
        handed: dict[int, PartitionStore] = {}
        with self._lock:
            for partition in partitions:
                self._held.add(partition)
                store = self._stores.get(partition)
                if store is not None:
                    store.finish_restore(self._position[partition])
                    handed[partition] = store
                    self._forget(partition)
        return handed

    def hold(self, partitions: Iterable[int]) -> None:
        """The partitions whose stores the task manager has open: the standby keeps off them."""
        with self._lock:
            self._held = set(partitions)
            for partition in list(self._stores):
                if partition in self._held:
                    self._close(partition)
            self._reassign = True
        self._assigned.set()

    def stop(self) -> None:
        self._halt.set()
        self._assigned.set()
        if self._thread.is_alive():
            self._thread.join(30)
        with self._lock:
            for partition in list(self._stores):
                self._close(partition)

    # --- the thread ------------------------------------------------------------------

    def _run(self) -> None:
        # the instance's own partitions first: opening standby stores (a RocksDB recovery
        # after a crash can take a while) must not delay the restore of the first assignment,
        # nor its first commit (a refresh period later: the loop commits well before)
        self._assigned.wait()
        consumer = standby_consumer(self._connection, self._group_id)
        refreshed = checkpointed = time.monotonic()
        try:
            while not self._halt.is_set():
                now = time.monotonic()
                if now - refreshed >= REFRESH_S:
                    self._refresh(consumer)
                    refreshed = now
                with self._lock:
                    if self._reassign:
                        self._reassign = False
                        topic = self._settings.changelog_topic
                        consumer.assign(
                            [TopicPartition(topic, p, o) for p, o in self._position.items()]
                        )
                if not self._position:
                    self._halt.wait(0.2)
                    continue
                self._apply(consumer.consume(CHUNK, timeout=0.2))
                if now - checkpointed >= CHECKPOINT_S:
                    self._checkpoint(consumer)
                    checkpointed = now
        except Exception:  # a standby is an optimisation: its failure must not stop the loop
            log.exception("standby replicas stopped; takeovers restore the whole changelog")
        finally:
            consumer.close()

    def _refresh(self, consumer: Consumer) -> None:
        """Reads placement and generation, and opens or closes standby stores to match."""
        settings = self._settings
        try:
            owners, members = describe_group_assignment(
                self._connection, self._group_id, settings.input_topic
            )
            generation = self._committed_generation(consumer)
        except KafkaException as exc:
            log.debug("standby placement not refreshed: %s", exc)
            return
        wanted = standby_partitions(owners, members, self._me, self._replicas)
        with self._lock:
            unowned = {p for p in self._stores if p not in owners}
            wanted = (wanted | unowned) - self._held
            if generation != self._generation:
                for partition in list(self._stores):
                    self._close(partition)  # opened again below, in the new generation
                self._generation = generation
            for partition in [p for p in self._stores if p not in wanted]:
                self._close(partition)
            # one store per refresh: opening a store (a RocksDB recovery after a crash) holds
            # the interpreter, so the loop would otherwise pause for all of them at once
            for partition in sorted(wanted - set(self._stores))[:1]:
                self._open(consumer, partition)
            if wanted != self._wanted:
                log.info("standby for partitions %s", sorted(wanted))
                self._wanted = wanted

    def _committed_generation(self, consumer: Consumer) -> int:
        """The newest state generation in the group's committed offsets of the input."""
        topic = self._settings.input_topic
        partitions = self._connection_partitions(consumer, topic)
        committed = consumer.committed([TopicPartition(topic, p) for p in partitions], timeout=10)
        generations = [
            generation_of(tp.metadata) or 0 for tp in committed if tp.offset != OFFSET_INVALID
        ]
        return max(generations, default=0)

    def _connection_partitions(self, consumer: Consumer, topic: str) -> list[int]:
        metadata = consumer.list_topics(topic, timeout=10)
        return sorted(metadata.topics[topic].partitions)

    def _open(self, consumer: Consumer, partition: int) -> None:
        """Opens the partition's store where its task would, from its trusted checkpoint."""
        settings = self._settings
        path = partition_path(settings.state_dir, settings.topology, STORE, partition)
        store = PartitionStore(path, self._generation, fingerprint=settings.fingerprint)
        tp = TopicPartition(settings.changelog_topic, partition)
        high = end_offset(consumer, tp, time.monotonic() + 10)
        self._stores[partition] = store
        self._position[partition] = store.begin_restore(int(high))
        self._reassign = True

    def _close(self, partition: int) -> None:
        """Checkpoints what the standby has read and closes its store (the lock is held)."""
        store = self._stores.get(partition)
        if store is not None:
            store.finish_restore(self._position[partition])
            store.close()
            self._forget(partition)

    def _forget(self, partition: int) -> None:
        """The standby no longer reads the partition into its store (the lock is held)."""
        self._stores.pop(partition, None)
        self._position.pop(partition, None)
        self._metrics.remove(partition)
        self._dirty.discard(partition)
        self._reassign = True

    def _apply(self, messages: list[Message]) -> None:
        chunks: dict[int, list[tuple[bytes, bytes | None]]] = {}
        ends: dict[int, int] = {}
        topic = self._settings.changelog_topic
        for msg in messages:
            error = msg.error()
            if error is not None:
                if error.code() != KafkaError._PARTITION_EOF:
                    log.warning("standby: %s", error.str())
                continue
            if msg.topic() != topic:
                continue
            partition, offset = msg.partition(), msg.offset()
            if partition is None or offset is None:
                continue
            key = msg.key()
            if key is not None:
                chunks.setdefault(partition, []).append((key, msg.value()))
            ends[partition] = offset + 1
        with self._lock:
            for partition, end in ends.items():
                store = self._stores.get(partition)
                if store is None or end <= self._position.get(partition, 0):
                    continue  # released meanwhile, or fetched before a reassignment
                chunk = chunks.get(partition)
                if chunk:
                    store.restore(chunk)
                self._position[partition] = end
                self._dirty.add(partition)

    def _checkpoint(self, consumer: Consumer) -> None:
        """Checkpoints the standbys that read something, and sets their lag."""
        topic = self._settings.changelog_topic
        with self._lock:
            for partition in self._dirty:
                self._stores[partition].finish_restore(self._position[partition])
            self._dirty.clear()
            positions = dict(self._position)
        for partition, position in positions.items():
            _low, high = consumer.get_watermark_offsets(
                TopicPartition(topic, partition), cached=True
            )
            if high >= 0:
                self._metrics.set_lag(partition, max(0, high - position))
