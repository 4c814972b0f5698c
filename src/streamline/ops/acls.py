"""`streamline acls`: the Kafka ACLs a principal needs to run a topology, to list or create.

The list follows what `streamline run` does: it reads the sources (and its retry and
repartition topics), writes the sink and its owned topics inside transactions, commits
offsets for the consumer group named after the topology, and uses the transactional ids
`<name>-<instance-id>`. WRITE on a topic also allows an idempotent producer (Kafka 3.0+),
so no cluster ACL is needed; READ and WRITE imply DESCRIBE on a topic. What `run` does
with each topic is `topology/resources.py`'s to say; this module turns it into ACLs.
"""

from __future__ import annotations

from dataclasses import dataclass

from streamline.errors import StreamlineError
from streamline.kafka.connection import Connection
from streamline.topology import Topology
from streamline.topology.resources import resources_of


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
    resources = resources_of(topology)
    acls = [
        Acl("TOPIC", t.name, "LITERAL", op, t.description)
        for t in resources.acl_topics
        for op in t.operations
    ]
    acls.append(Acl("GROUP", resources.group_id, "LITERAL", "READ", "consumer group"))
    if resources.table_topics:
        acls.append(
            Acl("GROUP", resources.tables_group, "LITERAL", "READ", "tables' read positions")
        )
    if resources.windowed:
        acls.append(
            Acl(
                "GROUP",
                resources.restore_group_prefix,
                "PREFIXED",
                "DESCRIBE",
                "state restore readers",
            )
        )
    if resources.exactly_once:
        prefix = resources.transactional_id_prefix
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
