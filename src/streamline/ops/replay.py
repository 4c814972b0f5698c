"""`streamline replay`: reset a topology's consumer-group offsets and its state, so input is processed again.

The plan is computed per source partition (current committed offset -> target); unless
it is a dry run, the new offsets are committed with the next state generation in their
metadata, the changelog partitions whose state the replayed input built are truncated,
and the unread backlog of the repartition topic is skipped (its records are re-made from
the replayed input): `state/reset.py` plans that, as it does for the runtime when it
finds offsets reset by another tool. Instances see the new generation when they start,
wipe local state of older generations and restore what the changelog still holds.
"""

from __future__ import annotations

import time
from dataclasses import asdict, dataclass
from datetime import UTC, datetime
from typing import Any

from confluent_kafka import Consumer, ConsumerGroupTopicPartitions, TopicPartition
from confluent_kafka.admin import AdminClient

from streamline.errors import UsageError
from streamline.kafka.admin import (
    committed_offsets,
    delete_all_records,
    require_topics,
    topic_end_offsets,
)
from streamline.kafka.connection import Connection
from streamline.state.generation import commit_metadata, generation_of
from streamline.state.reset import NO_RESET, StateReset, plan_state_reset, reset_topics
from streamline.topology import Topology
from streamline.topology.durations import parse_duration
from streamline.topology.resources import resources_of

PLAN_GROUP = "replay-plan"  # reads end offsets and offsets by time; commits nothing
PLAN_KIND = "streamline.replay-plan"


@dataclass
class PartitionPlan:
    """One source partition: where the group is, where it goes, how much is processed again."""

    topic: str
    partition: int
    current: int | None
    target: int
    end: int

    @property
    def reprocess(self) -> int:
        start = self.current if self.current is not None else self.end
        return max(0, start - self.target)


@dataclass
class ReplayPlan:
    partitions: list[PartitionPlan]
    generation: int
    reset: StateReset  # changelog partitions truncated, repartition partitions moved to their end

    @property
    def total(self) -> int:
        return sum(p.reprocess for p in self.partitions)


def active_members(connection: Connection, group: str) -> list[str]:
    """`client_id@host` of every member of the group right now."""
    admin = AdminClient(connection.config(log_level=0))
    description = admin.describe_consumer_groups([group], request_timeout=15)[group].result(15)
    return [f"{m.client_id}@{m.host}" for m in description.members]


def plan_replay(
    connection: Connection,
    topology: Topology,
    *,
    earliest: bool = False,
    at: datetime | None = None,
    back: str | None = None,
    offset: str | None = None,
) -> ReplayPlan:
    """Where each source partition restarts; nothing is changed."""
    sources = [s.topic for s in topology.sources]
    counts = require_topics(connection, sources)
    partitions = [TopicPartition(t, p) for t in sources for p in range(counts[t])]
    committed = committed_offsets(connection, topology.group_id, partitions, stable=True)
    consumer = Consumer(
        connection.config(
            **{"group.id": resources_of(topology).side_group(PLAN_GROUP)}, log_level=0
        )
    )
    try:
        bounds = {
            (tp.topic, tp.partition): consumer.get_watermark_offsets(tp, timeout=15)
            for tp in partitions
        }
        targets = _targets(consumer, partitions, bounds, earliest, at, back, offset)
    finally:
        consumer.close()
    generation = max((generation_of(tp.metadata) or 0 for tp in committed.values()), default=0)
    plans: list[PartitionPlan] = []
    for tp in partitions:
        key = (tp.topic, tp.partition)
        current = committed[key].offset if key in committed and committed[key].offset >= 0 else None
        target = targets.get(key, current if current is not None else bounds[key][0])
        plans.append(PartitionPlan(tp.topic, tp.partition, current, target, bounds[key][1]))
    reset = _state_reset(connection, topology, plans)
    return ReplayPlan(plans, generation + 1, reset)


def _targets(
    consumer: Consumer,
    partitions: list[TopicPartition],
    bounds: dict[tuple[str, int], tuple[int, int]],
    earliest: bool,
    at: datetime | None,
    back: str | None,
    offset: str | None,
) -> dict[tuple[str, int], int]:
    if earliest:
        return {key: low for key, (low, _high) in bounds.items()}
    if offset is not None:
        try:
            topic, partition, value = offset.rsplit(":", 2)
            key = (topic, int(partition))
            target = int(value)
        except ValueError:
            raise UsageError(f"--to-offset {offset}: expected TOPIC:PARTITION:OFFSET") from None
        if key not in bounds:
            raise UsageError(f"--to-offset {offset}: {topic}/{partition} is not a source partition")
        low, high = bounds[key]
        if not low <= target <= high:
            raise UsageError(f"--to-offset {offset}: offset must lie within {low}..{high}")
        return {key: target}
    if back is not None:
        try:
            millis = int(time.time() * 1000) - parse_duration(back)
        except ValueError as exc:
            raise UsageError(f"--by-duration {back}: {exc}") from None
    else:
        assert at is not None
        millis = int(at.timestamp() * 1000)
    query = [TopicPartition(tp.topic, tp.partition, millis) for tp in partitions]
    found = consumer.offsets_for_times(query, timeout=15)
    return {
        (tp.topic, tp.partition): tp.offset
        if tp.offset >= 0
        else bounds[(tp.topic, tp.partition)][1]
        for tp in found
    }


def _state_reset(
    connection: Connection, topology: Topology, plans: list[PartitionPlan]
) -> StateReset:
    """Changelog partitions to truncate and repartition partitions to skip."""
    resources = resources_of(topology)
    topics = reset_topics(resources)
    if not topics:
        return NO_RESET
    require_topics(connection, topics)
    consumer = Consumer(
        connection.config(**{"group.id": resources.side_group(PLAN_GROUP)}, log_level=0)
    )
    try:
        ends = topic_end_offsets(consumer, topics, 15)
    finally:
        consumer.close()
    replayed = [(p.topic, p.partition) for p in plans if p.reprocess > 0]
    return plan_state_reset(resources, replayed, ends)


def apply_replay(connection: Connection, topology: Topology, plan: ReplayPlan) -> None:
    """Commits the new offsets with the next generation, truncates state, skips stale backlog."""
    members = active_members(connection, topology.group_id)
    if members:
        raise UsageError(
            f"the group {topology.group_id} has active members ({', '.join(members)}); "
            "stop every instance of the topology first"
        )
    # a stopped instance's last transactional offsets may still be in flight: let them land
    # first, or they would overwrite the offsets set here
    committed_offsets(
        connection,
        topology.group_id,
        [TopicPartition(p.topic, p.partition) for p in plan.partitions],
        stable=True,
    )
    admin = AdminClient(connection.config(log_level=0))
    metadata = commit_metadata(plan.generation)
    offsets = [
        TopicPartition(p.topic, p.partition, p.target, metadata=metadata) for p in plan.partitions
    ]
    offsets += [TopicPartition(t, p, end, metadata=metadata) for t, p, end in plan.reset.skip]
    request = [ConsumerGroupTopicPartitions(topology.group_id, offsets)]
    admin.alter_consumer_group_offsets(request, request_timeout=15)[topology.group_id].result(15)
    for topic, partitions in plan.reset.to_delete(with_skipped=True).items():
        delete_all_records(connection, topic, partitions)


def plan_document(
    topology: Topology, fingerprint: str, plan: ReplayPlan, request: dict[str, Any]
) -> dict[str, Any]:
    """The plan as JSON data: what `--plan-out` writes, `--apply` reads and the audit event holds.

    `request` is how the target was asked for (e.g. `{"to_earliest": true}`); `current` of
    each partition is the group's committed offset when the plan was made, and
    `generation` the state generation the replay commits (one past the committed one).
    """
    return {
        "kind": PLAN_KIND,
        "topology": topology.name,
        "fingerprint": fingerprint,  # the run fingerprint: definition, schemas, code, version
        "group": topology.group_id,
        "made_at": datetime.now(UTC).isoformat(timespec="milliseconds"),
        "request": request,
        "generation": plan.generation,
        "records": plan.total,
        "partitions": [asdict(p) for p in plan.partitions],
        "state_reset": {
            "truncate": [list(t) for t in plan.reset.truncate],
            "skip": [list(t) for t in plan.reset.skip],
            "new_generation": plan.reset.new_generation,
        },
    }


def plan_from_document(topology: Topology, fingerprint: str, document: Any) -> ReplayPlan:
    """The plan a reviewed `--plan-out` file holds, for this topology; UsageError otherwise."""
    if not isinstance(document, dict) or document.get("kind") != PLAN_KIND:
        raise UsageError(f'not a replay plan (no "kind": "{PLAN_KIND}")')
    if document.get("topology") != topology.name or document.get("group") != topology.group_id:
        raise UsageError(
            f"the plan is for topology {document.get('topology')} "
            f"(group {document.get('group')}), not {topology.name}"
        )
    if document.get("fingerprint") != fingerprint:
        raise UsageError(
            "the topology changed since the plan was made (its fingerprint differs: the file, "
            "its schemas, its map code or the streamline version); "
            "make a new plan with --plan-out"
        )
    try:
        reset = document["state_reset"]
        return ReplayPlan(
            [PartitionPlan(**p) for p in document["partitions"]],
            int(document["generation"]),
            StateReset(
                [(str(t), int(p), int(e)) for t, p, e in reset["truncate"]],
                [(str(t), int(p), int(e)) for t, p, e in reset["skip"]],
                bool(reset["new_generation"]),
            ),
        )
    except (KeyError, TypeError, ValueError) as exc:
        raise UsageError(f"the replay plan is malformed: {exc}") from None


def moved_since(connection: Connection, topology: Topology, plan: ReplayPlan) -> list[str]:
    """The partitions whose committed offset (or state generation) is no longer the one the
    plan was made from, as `topic/partition: planned -> now`; empty when none moved."""
    committed = committed_offsets(
        connection,
        topology.group_id,
        [TopicPartition(p.topic, p.partition) for p in plan.partitions],
        stable=True,
    )
    moved = []
    generations = set()
    for p in plan.partitions:
        tp = committed.get((p.topic, p.partition))
        now = tp.offset if tp is not None and tp.offset >= 0 else None
        if tp is not None and now is not None:
            generations.add(generation_of(tp.metadata) or 0)
        if now != p.current:
            moved.append(f"{p.topic}/{p.partition}: {p.current} -> {now}")
    if generations and max(generations) != plan.generation - 1:
        moved.append(f"state generation: {plan.generation - 1} -> {max(generations)}")
    return moved
