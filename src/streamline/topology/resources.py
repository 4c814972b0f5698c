"""What a topology implies, worked out once: the topics it reads and writes, and its client ids.

`resources_of(topology)` says whether the topology repartitions, whether map failures go
through its retry topic, every topic it uses (role, read/write, partition count, config),
its consumer group, the prefix of the throwaway groups that restore state, and its
transactional-id prefix. `streamline run`, `topics create`, `acls`, `replay` and `lag`
read these facts from here instead of working them out again; this module is pure data
(no Kafka client), so the rules are unit-tested without a broker.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Literal, TypeAlias

from streamline.topology.model import MapStage, Sink, Topology, joined_stream_names

WINDOW_STORE = "windows"
"""The store of a topology's window stage (changelog `<name>.windows.changelog`)."""

JOIN_STORE = "joins"
"""The store of a topology's stream-stream join (changelog `<name>.joins.changelog`)."""

LINEAGE_TOPIC = "streamline.lineage"
"""Shared by every topology: one OpenLineage event per committed transaction."""

HEARTBEATS_TOPIC = "streamline.heartbeats"
"""Shared by every topology: freshness heartbeats, written outside transactions."""

AUDIT_TOPIC = "streamline.audit"
"""Shared by every topology: one JSON event per operator action that changes something
(`replay`, `dlq replay`, `acls --apply`); created by the first command that writes one."""

RESTORE_GROUP_PREFIX = "streamline-restore-"
"""The changelog readers that restore state use throwaway groups with this prefix."""

Role: TypeAlias = Literal[
    "source",
    "sink",
    "dead_letters",
    "late",
    "retry",
    "changelog",
    "repartition",
    "lineage",
    "heartbeats",
    "table",
]

PartitionRule: TypeAlias = int | Literal["requested", "like_sources"]
"""How a new topic's partition count is chosen: a fixed count, the count `topics create`
is asked for, or (state topics) like the sources: the most partitions of an existing
source, else the count asked for."""

DESCRIPTIONS: dict[Role, str] = {
    "source": "source",
    "sink": "sink",
    "dead_letters": "dead letters",
    "late": "late records",
    "retry": "retry topic, read back",
    "changelog": "window state changelog",
    "repartition": "repartition topic, read back",
    "lineage": "lineage events",
    "heartbeats": "freshness heartbeats",
    "table": "table, read into state",
}

# The order `streamline acls` lists topics in, and the order `run` checks the topics it
# writes (the first missing ones are named in that order); `topics` keeps its own order.
_ACL_ORDER: tuple[Role, ...] = (
    "source",
    "table",
    "sink",
    "dead_letters",
    "retry",
    "late",
    "repartition",
    "changelog",
    "lineage",
    "heartbeats",
)
_RUN_ORDER: tuple[Role, ...] = (
    "sink",
    "dead_letters",
    "lineage",
    "retry",
    "late",
    "changelog",
    "repartition",
)
# the outputs a lineage event names (the changelog and lineage itself are bookkeeping)
_LINEAGE_OUTPUT_ROLES: frozenset[Role] = frozenset(
    {"sink", "dead_letters", "late", "retry", "repartition"}
)

WEEK_MS = 7 * 24 * 3600 * 1000
DAY_MS = 24 * 3600 * 1000


@dataclass(frozen=True)
class TopicResource:
    """One topic a topology uses, or that `topics create` makes for it.

    `read`, `write` and `delete` say what `streamline run` does with it; a topic with
    none of them (the retry topic of a topology without retries, the late topic of one
    without a window, the lineage topic with `lineage: false`) is still created, so that
    turning the feature on later needs no new topic.
    """

    name: str
    role: Role
    read: bool = False
    write: bool = False
    delete: bool = False  # a changelog is truncated when its state is rebuilt
    partitions: PartitionRule = "requested"
    config: Mapping[str, str] = field(default_factory=dict)

    @property
    def used(self) -> bool:
        """Whether `streamline run` reads or writes it."""
        return self.read or self.write

    @property
    def operations(self) -> tuple[str, ...]:
        """What `run` does with it, as topic ACL operations (READ, WRITE, DELETE)."""
        done = (("READ", self.read), ("WRITE", self.write), ("DELETE", self.delete))
        return tuple(op for op, does in done if does)

    @property
    def description(self) -> str:
        return DESCRIPTIONS[self.role]

    def partition_count(self, requested: int, like_sources: int) -> int:
        """Partitions for a new topic, given the count asked for and the sources' count."""
        if self.partitions == "requested":
            return requested
        if self.partitions == "like_sources":
            return like_sources
        return self.partitions


@dataclass(frozen=True)
class TopologyResources:
    """Everything a topology implies beyond its own keys; see `resources_of`."""

    name: str
    source_topics: tuple[str, ...]
    windowed: bool
    needs_repartition: bool
    retrying: bool
    exactly_once: bool
    retry_topic: str
    changelog_topic: str | None  # of the window store; None without a window
    repartition_topic: str | None  # None unless the topology repartitions
    topics: tuple[TopicResource, ...]  # sources first, then owned topics, in `topics create` order
    group_id: str
    transactional_id_prefix: str  # `<name>-`; an instance's id is the prefix + instance id
    restore_group_prefix: str = RESTORE_GROUP_PREFIX
    global_tables: tuple[str, ...] = ()  # table topics every instance reads whole
    joined_streams: tuple[str, ...] = ()  # source topics feeding a stream join only

    @property
    def window_input_topic(self) -> str | None:
        """The topic whose partitions the window tasks read (None without a window)."""
        if not self.windowed:
            return None
        return self.repartition_topic or self.source_topics[0]

    @property
    def owned(self) -> tuple[TopicResource, ...]:
        """The topics other than the sources and tables (the topology's inputs)."""
        return tuple(t for t in self.topics if t.role not in ("source", "table"))

    @property
    def tables_group(self) -> str:
        """`<group>.tables`: where the instances publish how far their tables are read."""
        return self.side_group("tables")

    @property
    def table_topics(self) -> tuple[str, ...]:
        """The topics read as tables (co-partitioned with the sources)."""
        return tuple(t.name for t in self.topics if t.role == "table")

    def topic(self, role: Role) -> TopicResource | None:
        """The (first) topic with this role, if the topology has one."""
        return next((t for t in self.topics if t.role == role), None)

    @property
    def required_topics(self) -> list[str]:
        """Owned topics `run` reads or writes and refuses to start without (heartbeats are
        optional: without the topic, `run` warns and goes on)."""
        used = [t for t in self.owned if t.used and t.role != "heartbeats"]
        return [t.name for role in _RUN_ORDER for t in used if t.role == role]

    @property
    def lineage_outputs(self) -> frozenset[str]:
        """Topics whose produced offsets a lineage event lists as outputs."""
        return frozenset(t.name for t in self.owned if t.role in _LINEAGE_OUTPUT_ROLES)

    @property
    def acl_topics(self) -> list[TopicResource]:
        """The topics `run` uses, in the order `streamline acls` lists them."""
        order = {role: i for i, role in enumerate(_ACL_ORDER)}
        return sorted((t for t in self.topics if t.used), key=lambda t: order[t.role])

    def copartitioning_problems(self, counts: Mapping[str, int]) -> list[str]:
        """How each existing table topic (and each source of a stream join) fails to be
        co-partitioned with the first source."""
        source = self.source_topics[0]
        if source not in counts:
            return []
        streams = [
            f"source topic {other} has {counts[other]} partitions but {source} has "
            f"{counts[source]}: a stream join matches records of the same partition number, "
            f"so both sides need the same count (and keys placed by the same partitioner); "
            f"recreate {other} with {counts[source]} partitions and produce its records again"
            for other in self.source_topics[1:]
            if self.joined_streams and other in counts and counts[other] != counts[source]
        ]
        return streams + [
            f"table topic {table} has {counts[table]} partitions but {source} has "
            f"{counts[source]}: a record is joined with the table partition of its own number, "
            f"so both need the same count (and keys placed by the same partitioner); recreate "
            f"{table} with {counts[source]} partitions and produce its records again"
            for table in self.table_topics
            if table in counts
            and counts[table] != counts[source]
            and table not in self.global_tables
        ]

    def transactional_id(self, instance_id: str) -> str:
        """The producer's `transactional.id` for one instance."""
        return f"{self.transactional_id_prefix}{instance_id}"

    def side_group(self, purpose: str) -> str:
        """`<group>.<purpose>`: the group of a command that reads offsets beside the topology's
        group (`replay-plan`, `lag`) or keeps its own (`dlq-replay`, `dlq-replay.<type>`)."""
        return f"{self.group_id}.{purpose}"

    def topic_plan(
        self, requested: int, existing: Mapping[str, int] | None = None
    ) -> dict[str, tuple[int, dict[str, str]]]:
        """Every topic `topics create` makes: name -> (partitions, config).

        State partition n lives in changelog partition n, and windows kept per source
        partition take retried records back by partition number, so state topics follow
        the most partitions of an existing source rather than `requested`.
        """
        counts = [existing[s] for s in self.source_topics if existing and s in existing]
        like_sources = max(counts) if counts else requested
        return {
            t.name: (t.partition_count(requested, like_sources), dict(t.config))
            for t in self.topics
        }


def table_topics(topology: Topology) -> list[TopicResource]:
    """Each table's topic: read (never written, never truncated by a replay), compacted, and
    co-partitioned with the sources (created with their partition count) unless global."""
    return [
        TopicResource(
            table.topic,
            "table",
            read=True,
            partitions="requested" if table.global_ else "like_sources",
            config={"cleanup.policy": "compact"},
        )
        for table in topology.tables
    ]


def needs_repartition(topology: Topology) -> bool:
    """Whether window input goes through `<name>.repartition`: the window's key is not what
    the (first) source is partitioned by, so records must be re-keyed to reach their state."""
    key = topology.key_by
    return (
        topology.window is not None
        and key is not None
        and key.key_name != topology.source.partitioned_by
    )


def retries_through_topic(topology: Topology) -> bool:
    """Whether map failures go through the retry topic before they become dead letters."""
    return topology.retry.topic_attempts > 0 and any(
        isinstance(s, MapStage) for s in topology.stages
    )


def resources_of(topology: Topology) -> TopologyResources:
    """What `topology` implies: its topics with their role, access, partitions and config,
    and its group and transactional-id prefixes."""
    joined = [s.topic for s in topology.sources if s.name in joined_stream_names(topology)]
    # a stream join keeps state per source partition as a window does: the same topics
    windowed = topology.window is not None or bool(joined)
    repartition = needs_repartition(topology)
    retrying = retries_through_topic(topology)
    week = {"retention.ms": str(WEEK_MS)}
    topics = [TopicResource(s.topic, "source", read=True) for s in topology.sources]
    topics += table_topics(topology)
    sink_topics = dict.fromkeys(s.topic for s in topology.outputs.values() if isinstance(s, Sink))
    topics += [TopicResource(topic, "sink", write=True) for topic in sink_topics]
    topics += [
        TopicResource(
            topology.dead_letter_topic, "dead_letters", write=True, config={"retention.ms": "-1"}
        ),
        TopicResource(topology.late_topic, "late", write=windowed, config=week),
        TopicResource(
            topology.retry_topic,
            "retry",
            read=retrying,
            write=retrying,
            # windows kept per source partition take retried records back by partition number
            partitions="like_sources" if windowed else "requested",
            config=week,
        ),
    ]
    store = WINDOW_STORE if topology.window is not None else JOIN_STORE
    changelog = topology.changelog_topic(store) if windowed else None
    if changelog is not None:
        topics.append(
            TopicResource(
                changelog,
                "changelog",
                read=True,
                write=True,
                # state is rebuilt (the changelog truncated) after an outside offset reset
                delete=True,
                partitions="like_sources",
                # compacted, and "delete" with infinite retention so that a replay can truncate it
                config={
                    "cleanup.policy": "compact,delete",
                    "retention.ms": "-1",
                    "min.compaction.lag.ms": "0",
                    "segment.ms": "3600000",
                },
            )
        )
    if repartition:
        topics.append(
            TopicResource(
                topology.repartition_topic,
                "repartition",
                read=True,
                write=True,
                partitions="like_sources",
                config={"retention.ms": str(DAY_MS)},
            )
        )
    topics += [
        TopicResource(LINEAGE_TOPIC, "lineage", write=topology.lineage, partitions=3, config=week),
        TopicResource(
            HEARTBEATS_TOPIC,
            "heartbeats",
            write=True,
            partitions=1,
            config={"retention.ms": str(DAY_MS)},
        ),
    ]
    return TopologyResources(
        name=topology.name,
        source_topics=tuple(s.topic for s in topology.sources),
        windowed=windowed,
        needs_repartition=repartition,
        retrying=retrying,
        exactly_once=topology.guarantee == "exactly_once",
        retry_topic=topology.retry_topic,
        changelog_topic=changelog,
        repartition_topic=topology.repartition_topic if repartition else None,
        topics=tuple(topics),
        group_id=topology.group_id,
        transactional_id_prefix=topology.transactional_id(""),
        global_tables=tuple(t.topic for t in topology.tables if t.global_),
        joined_streams=tuple(joined),
    )
