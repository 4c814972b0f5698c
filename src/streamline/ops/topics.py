"""The topics `streamline topics create` makes for a topology, with their partitions and config."""

from __future__ import annotations

from collections.abc import Mapping

from streamline.observability.heartbeats import HEARTBEATS_TOPIC
from streamline.observability.lineage import LINEAGE_TOPIC
from streamline.state import WINDOW_STORE
from streamline.topology import Topology


def topology_topics(
    topology: Topology, partitions: int, existing: Mapping[str, int] | None = None
) -> dict[str, tuple[int, dict[str, str]]]:
    """Every topic a topology reads or writes, with a fitting partition count and config.

    State topics (changelog, repartition, and the retry topic of a windowed topology)
    need one partition per window input partition: when the sources already exist
    (`existing`: name -> partitions), they get the sources' count rather than `partitions`.
    """
    plain: dict[str, str] = {}
    counts = [existing[s.topic] for s in topology.sources if existing and s.topic in existing]
    state_partitions = max(counts) if counts else partitions
    week = {"retention.ms": str(7 * 24 * 3600 * 1000)}
    topics: dict[str, tuple[int, dict[str, str]]] = {}
    for source in topology.sources:
        topics[source.topic] = (partitions, plain)
    topics[topology.sink.topic] = (partitions, plain)
    topics[topology.dead_letter_topic] = (partitions, {"retention.ms": "-1"})
    topics[topology.late_topic] = (partitions, week)
    # windows kept per source partition take retried records back by partition number
    retry_partitions = state_partitions if topology.window is not None else partitions
    topics[topology.retry_topic] = (retry_partitions, week)
    if topology.window is not None:
        topics[topology.changelog_topic(WINDOW_STORE)] = (
            state_partitions,
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
            topics[topology.repartition_topic] = (state_partitions, {"retention.ms": "86400000"})
    topics[LINEAGE_TOPIC] = (3, week)
    topics[HEARTBEATS_TOPIC] = (1, {"retention.ms": "86400000"})
    return topics
