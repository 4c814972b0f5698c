"""Topic checks and creation, record deletion and offsets, through the Kafka admin API."""

from __future__ import annotations

import time
from collections.abc import Iterable, Mapping

from confluent_kafka import (
    Consumer,
    ConsumerGroupTopicPartitions,
    KafkaError,
    KafkaException,
    TopicPartition,
)
from confluent_kafka.admin import AdminClient

from streamline.errors import StreamlineError
from streamline.kafka.connection import Connection


class MissingTopicError(StreamlineError):
    """A topic a command needs does not exist (the broker does not create topics on demand)."""


def existing_topics(connection: Connection, timeout: float = 10.0) -> dict[str, int]:
    """Topic name -> partition count."""
    admin = AdminClient(connection.config(log_level=0))
    metadata = admin.list_topics(timeout=timeout)
    return {name: len(t.partitions) for name, t in metadata.topics.items() if t.error is None}


def require_topics(connection: Connection, topics: Iterable[str]) -> dict[str, int]:
    """Partition counts of `topics`; a clear error naming the missing ones.

    A topic the client may not describe is absent from a listing of all topics too, so each
    absent one is asked for by name, and a denied one fails with the ACL it needs.
    """
    topics = list(topics)
    existing = existing_topics(connection)
    for name in [t for t in topics if t not in existing]:
        existing.update(_described(connection, name))
    missing = [t for t in topics if t not in existing]
    if missing:
        raise MissingTopicError(
            f"topic {', '.join(missing)} does not exist on {connection.bootstrap_servers}; "
            "create it with 'streamline topics create TOPOLOGY' or your cluster's tooling"
        )
    return {t: existing[t] for t in topics}


def require_state_partitions(counts: Mapping[str, int], window_input: str, changelog: str) -> None:
    """A clear error when the changelog cannot hold one partition per window input partition."""
    if counts[changelog] < counts[window_input]:
        raise StreamlineError(
            f"changelog topic {changelog} has {counts[changelog]} partitions but {window_input} "
            f"has {counts[window_input]}: state partition n is kept in changelog partition n, "
            f"so the changelog needs {counts[window_input]}; delete it and run "
            "'streamline topics create TOPOLOGY' again (its state is rebuilt from the input)"
        )


def require_copartitioned(counts: Mapping[str, int], source: str, retry: str) -> None:
    """A clear error when a windowed topology's retry topic is not partitioned like its source."""
    if counts[retry] != counts[source]:
        raise StreamlineError(
            f"retry topic {retry} has {counts[retry]} partitions but {source} has "
            f"{counts[source]}: a retried record goes back into the window state of its source "
            f"partition by number, so both need {counts[source]}; once no retries are pending, "
            "delete it and run 'streamline topics create TOPOLOGY' again"
        )


def _described(connection: Connection, topic: str, timeout: float = 10.0) -> dict[str, int]:
    """{topic: partitions} when it exists, {} when not; an AuthorizationError when denied."""
    admin = AdminClient(connection.config(log_level=0))
    metadata = admin.list_topics(topic, timeout=timeout).topics.get(topic)
    if metadata is None:
        return {}
    if metadata.error is not None:
        denied = connection.access_error(metadata.error, topic=topic, operation="DESCRIBE")
        if denied is not None:
            raise denied
        return {}
    return {topic: len(metadata.partitions)}


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
                denied = connection.access_error(exc.args[0], topic=name, operation="CREATE")
                raise denied or StreamlineError(
                    f"could not create topic {name}: {exc.args[0].str()}"
                ) from None
    await_topics(connection, created, timeout)
    return created


def await_topics(connection: Connection, topics: Iterable[str], timeout: float = 30.0) -> None:
    """Waits until every topic's partitions have leaders, so clients can use them at once."""
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


def end_offsets(connection: Connection, topic: str, group: str) -> dict[int, int]:
    """Partition -> offset after its last record (`group` only names the asking client)."""
    consumer = Consumer(connection.config(**{"group.id": group}, log_level=0))
    try:
        return {p: end for (_t, p), end in topic_end_offsets(consumer, [topic], 10).items()}
    finally:
        consumer.close()


def topic_end_offsets(
    consumer: Consumer, topics: list[str], timeout: float
) -> dict[tuple[str, int], int]:
    """(topic, partition) -> offset after its last record, for every partition of `topics`,
    in topic order and then partition order."""
    ends: dict[tuple[str, int], int] = {}
    deadline = time.monotonic() + timeout
    for topic in topics:
        partitions = consumer.list_topics(topic, timeout=timeout).topics[topic].partitions
        for p in sorted(partitions):
            ends[(topic, p)] = end_offset(consumer, TopicPartition(topic, p), deadline)
    return ends


_MOVING_LEADER = {
    KafkaError.NOT_LEADER_FOR_PARTITION,
    KafkaError.LEADER_NOT_AVAILABLE,
    KafkaError.UNKNOWN_TOPIC_OR_PART,
}


def end_offset(consumer: Consumer, tp: TopicPartition, deadline: float) -> int:
    """The partition's end offset; asked again while its leader is still being elected
    (a topic created a moment ago, or a broker that has just restarted)."""
    while True:
        try:
            return int(
                consumer.get_watermark_offsets(tp, timeout=max(1.0, deadline - time.monotonic()))[1]
            )
        except KafkaException as exc:
            if exc.args[0].code() not in _MOVING_LEADER or time.monotonic() >= deadline:
                raise
            time.sleep(0.2)


def committed_offsets(
    connection: Connection, group: str, partitions: list[TopicPartition], stable: bool = False
) -> dict[tuple[str, int], TopicPartition]:
    """The group's committed offset (and metadata) of each of `partitions`, by (topic, partition).

    `stable` waits until no transactional offset commit is pending: an instance that just
    committed its last transaction may still have its offsets in flight, and they would
    land after (and undo) offsets changed now.
    """
    admin = AdminClient(connection.config(log_level=0))
    request = [ConsumerGroupTopicPartitions(group, partitions)]
    futures = admin.list_consumer_group_offsets(
        request, require_stable=stable, request_timeout=30 if stable else 15
    )
    result = futures[group].result(30 if stable else 15)
    return {(tp.topic, tp.partition): tp for tp in result.topic_partitions}


def delete_all_records(connection: Connection, topic: str, partitions: list[int]) -> None:
    """Deletes every record of these partitions of `topic` (a changelog: its state starts empty)."""
    from confluent_kafka import OFFSET_END

    if not partitions:
        return
    admin = AdminClient(connection.config(log_level=0))
    doomed = [TopicPartition(topic, p, OFFSET_END) for p in partitions]
    for tp, future in admin.delete_records(doomed, request_timeout=30).items():
        try:
            future.result(30)
        except Exception as exc:
            raise StreamlineError(f"could not truncate {tp.topic}/{tp.partition}: {exc}") from None


def describe_group_assignment(
    connection: Connection, group: str, topic: str, timeout: float = 10.0
) -> tuple[dict[int, str], list[str]]:
    """The group's members and the owner of each partition of `topic` it has assigned.

    A member is named by its instance id: its `group.instance.id` when static, else its
    client id without the `<group>-` prefix (the runtime's client ids).
    """
    admin = AdminClient(connection.config(log_level=0))
    description = admin.describe_consumer_groups([group], request_timeout=timeout)[group].result(
        timeout
    )
    owners: dict[int, str] = {}
    members: list[str] = []
    for member in description.members:
        name = member.group_instance_id or member.client_id.removeprefix(f"{group}-")
        members.append(name)
        assignment = member.assignment.topic_partitions if member.assignment else []
        for tp in assignment:
            if tp.topic == topic:
                owners[tp.partition] = name
    return owners, members
