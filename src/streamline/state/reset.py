"""Which state to drop when a topology's input is read again: one plan for `replay` and `run`.

Window state partition n is built from partition n of the sources (or, when the
topology repartitions, from partition n of `<name>.repartition`, which every source
partition feeds). When source offsets move back, the state built from the records read
again would count them twice, so it is rebuilt: its changelog partitions are truncated
and, with repartitioning, the repartition backlog not read yet is skipped (those records
are made again from the re-read input). `streamline replay` applies the plan offline;
the runtime applies it when it finds offsets reset by another tool on assignment.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from dataclasses import dataclass

from streamline.topology.resources import TopologyResources

TopicPartitionOffset = tuple[str, int, int]  # topic, partition, offset


@dataclass(frozen=True)
class StateReset:
    """What to do so no state counts re-read input twice; empty when nothing needs it."""

    truncate: list[TopicPartitionOffset]
    """Changelog partitions to empty, with their end offset when planned (delete records
    below it; an end of 0 means there is nothing to delete)."""
    skip: list[TopicPartitionOffset]
    """Repartition partitions whose backlog is dropped: consume (commit) them from this end."""
    new_generation: bool
    """Whether instances elsewhere must drop their local copies of state: true when every
    partition is rebuilt (repartitioning), as their checkpoints may name the skipped input."""

    @property
    def partitions(self) -> list[int]:
        """The window partitions whose state is rebuilt (their local stores are wiped)."""
        return sorted({p for _topic, p, _end in self.truncate})

    def to_delete(self, with_skipped: bool = False) -> dict[str, list[int]]:
        """Topic -> partitions whose records to delete: the truncated changelog partitions
        holding any (end > 0) and, `with_skipped`, the skipped repartition backlog too."""
        doomed: dict[str, list[int]] = {}
        for topic, p, end in [*self.truncate, *(self.skip if with_skipped else [])]:
            if end > 0:
                doomed.setdefault(topic, []).append(p)
        return doomed

    def __bool__(self) -> bool:
        return bool(self.truncate or self.skip)


NO_RESET = StateReset([], [], False)


def reset_topics(resources: TopologyResources) -> list[str]:
    """The topics whose partitions' end offsets `plan_state_reset` needs: the window
    store's changelog and, when the topology repartitions, the repartition topic."""
    if resources.changelog_topic is None:
        return []
    topics = [resources.changelog_topic]
    if resources.repartition_topic is not None:
        topics.append(resources.repartition_topic)
    return topics


def plan_state_reset(
    resources: TopologyResources,
    rewound: Iterable[tuple[str, int]],
    end_offsets: Mapping[tuple[str, int], int],
) -> StateReset:
    """The state to drop because the input partitions `rewound` are read again.

    - `rewound`: (topic, partition) whose committed offsets moved back: by `replay`, the
      source partitions it reprocesses; in the runtime, the assigned partitions whose
      committed offset carries no state generation (reset by another tool). Partitions of
      topics other than the sources (retry, repartition) are ignored.
    - `end_offsets`: (topic, partition) -> end offset (high watermark) of every partition
      of the `reset_topics(resources)`: the changelog topic and, when the topology
      repartitions, the repartition topic. Only partitions listed here are planned, in
      this mapping's order.

    Pure: the caller reads the offsets and applies the plan (commit or seek the skipped
    partitions to their end, delete the records of the truncated changelog partitions,
    wipe the local stores of `partitions`, bump the generation when `new_generation`).

    Without a window, or when no source partition was rewound, nothing is reset. Without
    repartitioning, changelog partition n is truncated when source partition n (of any
    source: they are co-partitioned) was rewound. With it, every changelog partition is
    truncated, every repartition partition skipped to its end, and a new generation is due.
    """
    changelog = resources.changelog_topic
    if changelog is None:
        return NO_RESET
    sources = set(resources.source_topics)
    replayed = {p for topic, p in rewound if topic in sources}
    if not replayed:
        return NO_RESET
    changelog_ends = [(t, p, end) for (t, p), end in end_offsets.items() if t == changelog]
    repartition = resources.repartition_topic
    if repartition is None:
        return StateReset([e for e in changelog_ends if e[1] in replayed], [], False)
    skip = [(t, p, end) for (t, p), end in end_offsets.items() if t == repartition]
    return StateReset(changelog_ends, skip, True)
