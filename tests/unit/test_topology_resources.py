"""What a topology implies: repartitioning, the retry topic, owned topics, group and id prefixes."""

from __future__ import annotations

from typing import Any

from streamline.topology import Topology
from streamline.topology.resources import (
    HEARTBEATS_TOPIC,
    LINEAGE_TOPIC,
    RESTORE_GROUP_PREFIX,
    needs_repartition,
    resources_of,
    retries_through_topic,
)

WEEK = str(7 * 24 * 3600 * 1000)
DAY = str(24 * 3600 * 1000)
WINDOW = {"window": {"tumbling": "1m", "aggregate": {"n": "count()"}}}
MAP = {"map": "orders_app.enrich:enrich"}


def topology(
    stages: list[dict[str, Any]] | None = None,
    partitioned_by: str | None = None,
    **overrides: Any,
) -> Topology:
    source: dict[str, Any] = {
        "name": "orders",
        "topic": "orders",
        "schema": "com.example.Order",
        "event_time": "created_at",
        "watermark": {"max_out_of_orderness": "5s"},
    }
    if partitioned_by is not None:
        source["partitioned_by"] = partitioned_by
    data: dict[str, Any] = {
        "name": "demo",
        "version": "1",
        "sources": [source],
        "stages": stages or [],
        "sink": {"topic": "out", "schema": "com.example.Order"},
        **overrides,
    }
    return Topology.model_validate(data)


def windowed(partitioned_by: str | None = None, **overrides: Any) -> Topology:
    return topology([{"key_by": "customer_id"}, WINDOW], partitioned_by, **overrides)


def roles(t: Topology) -> dict[str, tuple[str, str]]:
    """role -> (name, operations) of every topic."""
    return {r.role: (r.name, " ".join(r.operations)) for r in resources_of(t).topics}


# --- repartitioning -------------------------------------------------------------------


def test_a_window_keyed_unlike_its_source_repartitions() -> None:
    assert needs_repartition(windowed())
    assert needs_repartition(windowed(partitioned_by="region"))
    assert resources_of(windowed()).repartition_topic == "demo.repartition"
    assert resources_of(windowed()).window_input_topic == "demo.repartition"


def test_a_window_keyed_as_its_source_is_partitioned_does_not_repartition() -> None:
    t = windowed(partitioned_by="customer_id")
    assert not needs_repartition(t)
    resources = resources_of(t)
    assert resources.repartition_topic is None
    assert resources.window_input_topic == "orders"
    assert "repartition" not in roles(t)


def test_without_a_window_nothing_repartitions_even_after_key_by() -> None:
    t = topology([{"key_by": "customer_id"}])
    assert not needs_repartition(t)
    assert resources_of(t).window_input_topic is None
    assert resources_of(t).changelog_topic is None


# --- retry topic ----------------------------------------------------------------------


def test_map_failures_go_through_the_retry_topic_only_with_topic_attempts_and_a_map() -> None:
    assert retries_through_topic(topology([MAP], retry={"topic_attempts": 2}))
    assert not retries_through_topic(topology([MAP]))
    assert not retries_through_topic(topology([], retry={"topic_attempts": 2}))


def test_the_retry_topic_is_read_and_written_only_when_retrying() -> None:
    retrying = resources_of(topology([MAP], retry={"topic_attempts": 1}))
    assert retrying.retry_topic == "demo.retry"
    assert roles(topology([MAP], retry={"topic_attempts": 1}))["retry"] == (
        "demo.retry",
        "READ WRITE",
    )
    assert "demo.retry" in retrying.required_topics
    plain = resources_of(topology([MAP]))
    assert roles(topology([MAP]))["retry"] == ("demo.retry", "")  # created, never used
    assert "demo.retry" not in plain.required_topics


# --- owned topics per shape -----------------------------------------------------------


def test_a_plain_topology_writes_sink_dead_letters_lineage_and_heartbeats() -> None:
    t = topology()
    assert roles(t) == {
        "source": ("orders", "READ"),
        "sink": ("out", "WRITE"),
        "dead_letters": ("demo.dlq", "WRITE"),
        "late": ("demo.late", ""),
        "retry": ("demo.retry", ""),
        "lineage": (LINEAGE_TOPIC, "WRITE"),
        "heartbeats": (HEARTBEATS_TOPIC, "WRITE"),
    }
    resources = resources_of(t)
    assert resources.required_topics == ["out", "demo.dlq", LINEAGE_TOPIC]
    assert resources.topic_plan(4) == {
        "orders": (4, {}),
        "out": (4, {}),
        "demo.dlq": (4, {"retention.ms": "-1"}),
        "demo.late": (4, {"retention.ms": WEEK}),
        "demo.retry": (4, {"retention.ms": WEEK}),
        LINEAGE_TOPIC: (3, {"retention.ms": WEEK}),
        HEARTBEATS_TOPIC: (1, {"retention.ms": DAY}),
    }


def test_without_lineage_the_lineage_topic_is_created_but_not_written() -> None:
    t = topology(lineage=False)
    assert roles(t)["lineage"] == (LINEAGE_TOPIC, "")
    assert LINEAGE_TOPIC not in resources_of(t).required_topics


def test_a_windowed_topology_with_key_repartition_owns_late_changelog_and_repartition() -> None:
    t = windowed()
    assert roles(t) == {
        "source": ("orders", "READ"),
        "sink": ("out", "WRITE"),
        "dead_letters": ("demo.dlq", "WRITE"),
        "late": ("demo.late", "WRITE"),
        "retry": ("demo.retry", ""),
        "changelog": ("demo.windows.changelog", "READ WRITE DELETE"),
        "repartition": ("demo.repartition", "READ WRITE"),
        "lineage": (LINEAGE_TOPIC, "WRITE"),
        "heartbeats": (HEARTBEATS_TOPIC, "WRITE"),
    }
    resources = resources_of(t)
    assert resources.required_topics == [
        "out",
        "demo.dlq",
        LINEAGE_TOPIC,
        "demo.late",
        "demo.windows.changelog",
        "demo.repartition",
    ]
    assert resources.lineage_outputs == {
        "out",
        "demo.dlq",
        "demo.late",
        "demo.retry",
        "demo.repartition",
    }


def test_state_topics_are_partitioned_like_the_largest_existing_source() -> None:
    plan = resources_of(windowed(retry={"topic_attempts": 1})).topic_plan(3, {"orders": 6})
    assert plan["demo.windows.changelog"][0] == 6
    assert plan["demo.repartition"] == (6, {"retention.ms": DAY})
    assert plan["demo.retry"][0] == 6  # retried records go back to their partition's state
    assert plan["out"][0] == 3
    assert plan["demo.windows.changelog"][1]["cleanup.policy"] == "compact,delete"
    # no existing source: the count asked for
    assert resources_of(windowed()).topic_plan(5)["demo.windows.changelog"][0] == 5


def test_a_retry_topic_without_a_window_takes_the_count_asked_for() -> None:
    plan = resources_of(topology([MAP], retry={"topic_attempts": 1})).topic_plan(3, {"orders": 6})
    assert plan["demo.retry"][0] == 3


def test_acl_topics_list_reads_before_state_and_skip_unused_topics() -> None:
    t = topology([MAP, {"key_by": "customer_id"}, WINDOW], retry={"topic_attempts": 1})
    assert [r.role for r in resources_of(t).acl_topics] == [
        "source",
        "sink",
        "dead_letters",
        "retry",
        "late",
        "repartition",
        "changelog",
        "lineage",
        "heartbeats",
    ]
    assert "late" not in [r.role for r in resources_of(topology()).acl_topics]


def test_custom_owned_topic_names_are_used() -> None:
    t = windowed(dead_letter_topic="errors", late_topic="stragglers")
    assert roles(t)["dead_letters"][0] == "errors"
    assert roles(t)["late"][0] == "stragglers"


# --- group and id prefixes ------------------------------------------------------------


def test_group_restore_group_and_transactional_id_prefixes() -> None:
    resources = resources_of(topology())
    assert resources.group_id == "demo"
    assert resources.restore_group_prefix == RESTORE_GROUP_PREFIX == "streamline-restore-"
    assert resources.transactional_id_prefix == "demo-"
    assert resources.transactional_id("host-1") == "demo-host-1"
    assert resources.side_group("lag") == "demo.lag"


def test_the_guarantee_decides_exactly_once() -> None:
    assert resources_of(topology()).exactly_once
    assert not resources_of(topology(guarantee="at_least_once")).exactly_once
