"""Kafka consumers the runtime builds: the group consumer, the restore consumer and the
changelog reader.

A store's changelog partition is read back for restore with read_committed and no
consumer group, from an offset to the end of the partition.
"""

from __future__ import annotations

import logging
import time
import uuid
from collections.abc import Iterator
from dataclasses import dataclass

from confluent_kafka import Consumer, KafkaError, TopicPartition

from streamline.errors import StreamlineError
from streamline.kafka.admin import end_offset
from streamline.kafka.connection import Connection
from streamline.topology.resources import RESTORE_GROUP_PREFIX

log = logging.getLogger("streamline.runtime")  # the loop's clients log as the runtime

CHUNK = 5000
RESTORE_TIMEOUT_S = 600.0


def group_consumer(
    connection: Connection,
    group_id: str,
    instance_id: str,
    session_timeout_ms: int,
    static_membership: bool = False,
) -> Consumer:
    """The loop's consumer: a member of the topology's group, whose rebalances drive tasks.

    With `static_membership` the member is known by its instance id (KIP-345): a
    restart within the session timeout gets the same partitions back without a
    rebalance, and a clean stop does not leave the group (its partitions wait for the
    session timeout, unless it comes back first).
    """
    static = {"group.instance.id": instance_id} if static_membership else {}
    conf = connection.config(
        **{
            "group.id": group_id,
            "client.id": f"{group_id}-{instance_id}",
            **static,
            "isolation.level": "read_committed",
            "enable.auto.commit": False,
            "enable.auto.offset.store": False,
            "auto.offset.reset": "earliest",
            "session.timeout.ms": session_timeout_ms,
            # a member notices a rebalance at its next heartbeat: within a quarter second
            # (a lost member's partitions wait for the session timeout, then for this)
            "heartbeat.interval.ms": max(100, min(250, session_timeout_ms // 10)),
            "enable.partition.eof": False,
            "fetch.wait.max.ms": 50,
            # partition n of every input topic to the same instance: a window task reads
            # its source partition and the retry partition of the same number
            "partition.assignment.strategy": "range",
        },
        log_level=3,
    )
    return Consumer(conf, logger=log)


@dataclass(frozen=True)
class RestoreClients:
    """The consumers restores share (the caller owns and closes them)."""

    records: Consumer
    """read_committed: replays the committed records."""
    ends: Consumer
    """read_uncommitted: asks each partition's end offset, past transactions still open
    (a read_committed consumer's end offset is the last stable offset)."""

    def close(self) -> None:
        self.records.close()
        self.ends.close()


def restore_clients(connection: Connection) -> RestoreClients:
    return RestoreClients(
        restore_consumer(connection), restore_consumer(connection, "read_uncommitted")
    )


def restore_consumer(connection: Connection, isolation: str = "read_committed") -> Consumer:
    """A consumer for restores: assigned partitions only, no group membership."""
    return Consumer(
        connection.config(
            **{
                "group.id": f"{RESTORE_GROUP_PREFIX}{uuid.uuid4().hex[:8]}",
                "isolation.level": isolation,
                "enable.auto.commit": False,
                "enable.partition.eof": True,
                "auto.offset.reset": "earliest",
                "fetch.max.bytes": 52428800,
                # the end of the partition is signalled after a fetch that waited:
                # librdkafka's default wait (500 ms) would add that to every restore
                "fetch.wait.max.ms": 10,
            },
            log_level=0,
        )
    )


def standby_consumer(connection: Connection, group_id: str) -> Consumer:
    """A read_committed consumer for standby replicas: it tails assigned changelog partitions
    and reads the group's committed offsets (`committed`), never joining the group."""
    return Consumer(
        connection.config(
            **{
                "group.id": group_id,
                "client.id": f"{group_id}-standby",
                "isolation.level": "read_committed",
                "enable.auto.commit": False,
                "enable.auto.offset.store": False,
                "enable.partition.eof": False,
                "auto.offset.reset": "earliest",
                "fetch.wait.max.ms": 100,
            },
            log_level=3,
        ),
        logger=log,
    )


class ChangelogReader:
    """The committed records of one changelog partition from an offset to its end.

    Iterating yields chunks of (key, value or None); afterwards `end` is the offset the
    replay reached: everything committed below it has been read. With `clients` (from
    `restore_clients`, which the caller owns and closes) restores of several partitions
    share their connections instead of opening their own; one partition at a time.

    The replay reads to the partition's end offset when it began (`high_watermark`), not
    only to its last stable offset: a transaction left open below the end (by an instance
    that died in the middle of a commit) hides the records committed after it by the
    partition's later owners, and a state restored without them would count their input
    again, or emit their windows again, while its input starts after it. While such a
    transaction holds the replay back, it yields an empty chunk about every 0.1 s and
    `waiting_below` names the end offset it waits for: the caller can fence the instance
    that left it, or wait for its own producer, whose `init_transactions` aborts its
    predecessor's. The broker aborts it at the latest at its transaction timeout.
    """

    def __init__(
        self,
        connection: Connection,
        topic: str,
        partition: int,
        clients: RestoreClients | None = None,
    ) -> None:
        self.connection = connection
        self.topic = topic
        self.partition = partition
        self.end = 0
        self.waiting_below: int | None = None
        """While an open transaction holds the replay back: the end offset it must reach."""
        self._shared = clients
        self._high: int | None = None

    def high_watermark(self) -> int:
        """The partition's end offset (read_uncommitted: past transactions still open)."""
        consumer = (
            self._shared.ends
            if self._shared is not None
            else restore_consumer(self.connection, "read_uncommitted")
        )
        try:
            # a changelog created a moment ago may still be electing its leader
            self._high = end_offset(
                consumer, TopicPartition(self.topic, self.partition), time.monotonic() + 30
            )
            return self._high
        finally:
            if self._shared is None:
                consumer.close()

    def read(self, start: int) -> Iterator[list[tuple[bytes, bytes | None]]]:
        self.end = start
        high = self._high if self._high is not None else self.high_watermark()
        if start >= high:
            return
        consumer = (
            self._shared.records if self._shared is not None else restore_consumer(self.connection)
        )
        consumer.assign([TopicPartition(self.topic, self.partition, start)])
        deadline = time.monotonic() + RESTORE_TIMEOUT_S
        try:
            while time.monotonic() < deadline:
                chunk: list[tuple[bytes, bytes | None]] = []
                done = False
                # what is queued, else the next record or end-of-partition as soon as it
                # arrives: consume(n, timeout) would wait out its timeout for a short chunk
                msgs = consumer.consume(CHUNK, timeout=0)
                if not msgs:
                    first = consumer.poll(0.1)
                    msgs = [first] if first is not None else []
                for msg in msgs:
                    if msg.partition() != self.partition or msg.topic() != self.topic:
                        continue  # fetched for a partition the shared consumer read before
                    error = msg.error()
                    if error is not None:
                        if error.code() == KafkaError._PARTITION_EOF:
                            # read_committed: the end is the last stable offset, held below
                            # the end offset by a transaction still open
                            self.end = max(self.end, msg.offset() or 0)
                            done = self.end >= high
                            self.waiting_below = None if done else high
                            continue
                        raise StreamlineError(f"restoring from {self.topic}: {error.str()}")
                    key = msg.key()
                    if key is not None:
                        chunk.append((key, msg.value()))
                    self.end = max(self.end, (msg.offset() or 0) + 1)
                if chunk or self.waiting_below is not None:
                    yield chunk
                if done:
                    return
            waiting = (
                f" (a transaction left open below offset {self.waiting_below} did not end)"
                if self.waiting_below is not None
                else ""
            )
            raise StreamlineError(
                f"restoring {self.topic}/{self.partition} did not finish within "
                f"{RESTORE_TIMEOUT_S:.0f}s{waiting}"
            )
        finally:
            if self._shared is not None:
                consumer.unassign()
            else:
                consumer.close()
