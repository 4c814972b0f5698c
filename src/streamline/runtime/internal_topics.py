"""`run` creates the topology's missing internal topics, as Kafka Streams does.

Internal topics are the ones streamline owns for a topology (dead letters, retry, late,
changelog, repartition) and the shared lineage and heartbeat topics; their partition
counts and configs are `topics create`'s (`TopologyResources.topic_plan`), with the
sources' partition count where that command takes `--partitions`, and the cluster's
default replication factor. Sources and the sink are the user's: they are never made
here. A principal that may not create topics gets a warning and then the usual
missing-topic error; `run --no-create-topics` skips this step.
"""

from __future__ import annotations

import logging

from streamline.errors import StreamlineError
from streamline.kafka.admin import create_topics, existing_topics
from streamline.kafka.connection import Connection
from streamline.topology.resources import TopologyResources

log = logging.getLogger("streamline.runtime")

INTERNAL_ROLES = frozenset(
    {"dead_letters", "retry", "late", "changelog", "repartition", "lineage", "heartbeats"}
)
BROKER_DEFAULT_REPLICATION = -1


def missing_internal_topics(
    resources: TopologyResources, existing: dict[str, int]
) -> dict[str, tuple[int, dict[str, str]]]:
    """The internal topics to create (name -> partitions, config); none while a source is
    missing (its partition count decides theirs, and `run` fails on it anyway)."""
    if any(s not in existing for s in resources.source_topics):
        return {}
    requested = max(existing[s] for s in resources.source_topics)
    plan = resources.topic_plan(requested, existing)
    return {
        t.name: plan[t.name]
        for t in resources.owned
        if t.role in INTERNAL_ROLES and t.name not in existing
    }


def create_internal_topics(connection: Connection, resources: TopologyResources) -> list[str]:
    """Creates the missing internal topics; returns their names ([] when denied)."""
    wanted = missing_internal_topics(resources, existing_topics(connection))
    if not wanted:
        return []
    try:
        created = create_topics(connection, wanted, BROKER_DEFAULT_REPLICATION)
    except StreamlineError as exc:  # denied, or a cluster policy: `run` names what is missing
        log.warning("could not create the missing internal topics %s: %s", sorted(wanted), exc)
        return []
    for name in created:
        partitions, _config = wanted[name]
        log.info("created internal topic %s [%d partitions]", name, partitions)
    return created
