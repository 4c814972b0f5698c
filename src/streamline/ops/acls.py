"""`streamline acls`: the Kafka ACLs a principal needs to run a topology, to list or create.

The list follows what `streamline run` does: it reads the sources (and its retry and
repartition topics), writes the sink and its owned topics inside transactions, commits
offsets for the consumer group named after the topology, and uses the transactional ids
`<name>-<instance-id>`. WRITE on a topic also allows an idempotent producer (Kafka 3.0+),
so no cluster ACL is needed; READ and WRITE imply DESCRIBE on a topic.
"""

from __future__ import annotations

from dataclasses import dataclass

from streamline.errors import StreamlineError
from streamline.kafka.connection import Connection
from streamline.observability.heartbeats import HEARTBEATS_TOPIC
from streamline.observability.lineage import LINEAGE_TOPIC
from streamline.state import WINDOW_STORE
from streamline.topology import Topology
from streamline.topology.model import MapStage

# the changelog readers that restore state use throwaway groups with this prefix
RESTORE_GROUP_PREFIX = "streamline-restore-"


@dataclass(frozen=True)
class Acl:
    """One ALLOW rule for the principal, from any host."""

    resource: str  # TOPIC, GROUP, TRANSACTIONAL_ID
    name: str
    pattern: str  # LITERAL or PREFIXED
    operation: str  # READ, WRITE, DESCRIBE, DELETE
    why: str


def topology_acls(topology: Topology) -> list[Acl]:
    """Every ACL `streamline run` needs for this topology, sources first."""
    acls: list[Acl] = []

    def topic(name: str, why: str, *operations: str) -> None:
        acls.extend(Acl("TOPIC", name, "LITERAL", op, why) for op in operations)

    for source in topology.sources:
        topic(source.topic, "source", "READ")
    topic(topology.sink.topic, "sink", "WRITE")
    topic(topology.dead_letter_topic, "dead letters", "WRITE")
    if topology.retry.topic_attempts > 0 and any(isinstance(s, MapStage) for s in topology.stages):
        topic(topology.retry_topic, "retry topic, read back", "READ", "WRITE")
    if topology.window is not None:
        topic(topology.late_topic, "late records", "WRITE")
        key = topology.key_by
        if key is not None and key.key_name != topology.source.partitioned_by:
            topic(topology.repartition_topic, "repartition topic, read back", "READ", "WRITE")
        # DELETE: state is rebuilt (the changelog truncated) after an outside offset reset
        topic(
            topology.changelog_topic(WINDOW_STORE),
            "window state changelog",
            "READ",
            "WRITE",
            "DELETE",
        )
    if topology.lineage:
        topic(LINEAGE_TOPIC, "lineage events", "WRITE")
    topic(HEARTBEATS_TOPIC, "freshness heartbeats", "WRITE")
    acls.append(Acl("GROUP", topology.group_id, "LITERAL", "READ", "consumer group"))
    if topology.window is not None:
        acls.append(
            Acl("GROUP", RESTORE_GROUP_PREFIX, "PREFIXED", "DESCRIBE", "state restore readers")
        )
    if topology.guarantee == "exactly_once":
        prefix = topology.transactional_id("")
        why = f"transactional ids {prefix}<instance-id>"
        acls += [
            Acl("TRANSACTIONAL_ID", prefix, "PREFIXED", op, why) for op in ("WRITE", "DESCRIBE")
        ]
    return acls


def create_acls(connection: Connection, acls: list[Acl], principal: str) -> None:
    """Creates the ACLs (existing ones stay as they are); needs ALTER on the cluster."""
    from confluent_kafka import KafkaException
    from confluent_kafka.admin import (  # type: ignore[attr-defined]
        AclBinding,
        AclOperation,
        AclPermissionType,
        AdminClient,
        ResourcePatternType,
        ResourceType,
    )

    bindings = [
        AclBinding(
            ResourceType[a.resource],
            a.name,
            ResourcePatternType[a.pattern],
            principal,
            "*",
            AclOperation[a.operation],
            AclPermissionType.ALLOW,
        )
        for a in acls
    ]
    admin = AdminClient(connection.config(log_level=0))
    for acl, future in zip(
        acls, admin.create_acls(bindings, request_timeout=30).values(), strict=True
    ):
        try:
            future.result(30)
        except KafkaException as exc:
            denied = connection.access_error(exc.args[0], operation="ALTER")
            raise denied or StreamlineError(
                f"could not create the ACL {acl.operation} on {acl.resource} {acl.name}: "
                f"{exc.args[0].str()}"
            ) from None
