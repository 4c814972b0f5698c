"""Topic checks and creation through the Kafka admin API."""

from __future__ import annotations

from collections.abc import Iterable

from confluent_kafka.admin import AdminClient

from streamline.connection import Connection
from streamline.errors import StreamlineError
from streamline.observability.heartbeats import HEARTBEATS_TOPIC
from streamline.observability.lineage import LINEAGE_TOPIC
from streamline.state import WINDOW_STORE
from streamline.topology import Topology


class MissingTopicError(StreamlineError):
    """A topic a command needs does not exist (the broker does not create topics on demand)."""


def existing_topics(connection: Connection, timeout: float = 10.0) -> dict[str, int]:
    """Topic name -> partition count."""
    admin = AdminClient(connection.config(log_level=0))
    metadata = admin.list_topics(timeout=timeout)
    return {name: len(t.partitions) for name, t in metadata.topics.items() if t.error is None}


def require_topics(connection: Connection, topics: Iterable[str]) -> dict[str, int]:
    """Partition counts of `topics`; a clear error naming the missing ones."""
    existing = existing_topics(connection)
    missing = [t for t in topics if t not in existing]
    if missing:
        raise MissingTopicError(
            f"topic {', '.join(missing)} does not exist on {connection.bootstrap_servers}; "
            "create it with 'streamline topics create TOPOLOGY' or your cluster's tooling"
        )
    return {t: existing[t] for t in topics}


def create_topics(
    connection: Connection,
    topics: dict[str, tuple[int, dict[str, str]]],
    replication_factor: int = 1,
    timeout: float = 30.0,
) -> list[str]:
    """Creates the topics that do not exist yet (name -> (partitions, configs)); returns those created."""
    from confluent_kafka import KafkaError, KafkaException
    from confluent_kafka.admin import NewTopic  # type: ignore[attr-defined]

    admin = AdminClient(connection.config(log_level=0))
    existing = existing_topics(connection, timeout)
    wanted = [
        NewTopic(
            name, num_partitions=partitions, replication_factor=replication_factor, config=configs
        )
        for name, (partitions, configs) in topics.items()
        if name not in existing
    ]
    if not wanted:
        return []
    created = []
    for name, future in admin.create_topics(wanted, operation_timeout=timeout).items():
        try:
            future.result(timeout)
            created.append(name)
        except KafkaException as exc:
            if exc.args[0].code() != KafkaError.TOPIC_ALREADY_EXISTS:
                raise StreamlineError(
                    f"could not create topic {name}: {exc.args[0].str()}"
                ) from None
    await_topics(connection, created, timeout)
    return created


def await_topics(connection: Connection, topics: Iterable[str], timeout: float = 30.0) -> None:
    """Waits until every topic's partitions have leaders, so clients can use them at once."""
    import time

    names = list(topics)
    admin = AdminClient(connection.config(log_level=0))
    deadline = time.monotonic() + timeout
    while names and time.monotonic() < deadline:
        metadata = admin.list_topics(timeout=timeout)
        names = [
            n
            for n in names
            if n not in metadata.topics
            or metadata.topics[n].error is not None
            or any(p.leader < 0 for p in metadata.topics[n].partitions.values())
        ]
        if names:
            time.sleep(0.1)
    if names:
        raise StreamlineError(f"topics {', '.join(names)} have no leader after {timeout:.0f}s")


def topology_topics(topology: Topology, partitions: int) -> dict[str, tuple[int, dict[str, str]]]:
    """Every topic a topology reads or writes, with a fitting partition count and config."""
    plain: dict[str, str] = {}
    week = {"retention.ms": str(7 * 24 * 3600 * 1000)}
    topics: dict[str, tuple[int, dict[str, str]]] = {}
    for source in topology.sources:
        topics[source.topic] = (partitions, plain)
    topics[topology.sink.topic] = (partitions, plain)
    topics[topology.dead_letter_topic] = (partitions, {"retention.ms": "-1"})
    topics[topology.late_topic] = (partitions, week)
    topics[topology.retry_topic] = (partitions, week)
    if topology.window is not None:
        topics[topology.changelog_topic(WINDOW_STORE)] = (
            partitions,
            # compacted, and "delete" with infinite retention so that a replay can truncate it
            {
                "cleanup.policy": "compact,delete",
                "retention.ms": "-1",
                "min.compaction.lag.ms": "0",
                "segment.ms": "3600000",
            },
        )
        key = topology.key_by
        if key is not None and key.key_name != topology.source.partitioned_by:
            topics[topology.repartition_topic] = (partitions, {"retention.ms": "86400000"})
    topics[LINEAGE_TOPIC] = (3, week)
    topics[HEARTBEATS_TOPIC] = (1, {"retention.ms": "86400000"})
    return topics
