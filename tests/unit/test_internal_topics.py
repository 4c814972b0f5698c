"""Which internal topics `run` creates, with which partitions and config."""

from __future__ import annotations

from streamline.runtime.internal_topics import missing_internal_topics
from streamline.topology.resources import HEARTBEATS_TOPIC, LINEAGE_TOPIC, resources_of
from tests.unit.test_topology_resources import WINDOW, topology


def test_the_missing_internal_topics_follow_topics_create_with_the_sources_partitions() -> None:
    resources = resources_of(topology([{"key_by": "customer_id"}, WINDOW]))
    wanted = missing_internal_topics(resources, {"orders": 6, "demo-out": 2, LINEAGE_TOPIC: 3})
    plan = resources.topic_plan(6, {"orders": 6})
    assert set(wanted) == {
        "demo.dlq",
        "demo.late",
        "demo.retry",
        "demo.repartition",
        "demo.windows.changelog",
        HEARTBEATS_TOPIC,
    }
    assert wanted == {name: plan[name] for name in wanted}
    assert wanted["demo.windows.changelog"][0] == 6
    assert wanted["demo.dlq"][0] == 6
    assert wanted[HEARTBEATS_TOPIC][0] == 1


def test_sources_and_the_sink_are_never_created() -> None:
    resources = resources_of(topology())
    wanted = missing_internal_topics(resources, {"orders": 3})
    assert "orders" not in wanted and resources.topic("sink") is not None
    assert resources.topic("sink").name not in wanted  # type: ignore[union-attr]


def test_nothing_is_created_while_a_source_is_missing() -> None:
    assert missing_internal_topics(resources_of(topology()), {}) == {}
