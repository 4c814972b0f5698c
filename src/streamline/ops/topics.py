"""The topics `streamline topics create` makes for a topology, with their partitions and config."""

from __future__ import annotations

from collections.abc import Mapping

from streamline.topology import Topology
from streamline.topology.resources import resources_of


def topology_topics(
    topology: Topology, partitions: int, existing: Mapping[str, int] | None = None
) -> dict[str, tuple[int, dict[str, str]]]:
    """Every topic a topology reads or writes, with a fitting partition count and config.

    State topics (changelog, repartition, and the retry topic of a windowed topology)
    need one partition per window input partition: when the sources already exist
    (`existing`: name -> partitions), they get the sources' count rather than `partitions`.
    """
    return resources_of(topology).topic_plan(partitions, existing)
