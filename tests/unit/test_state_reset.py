"""The state-reset plan: which changelog partitions to truncate and repartition backlog to skip."""

from __future__ import annotations

from typing import Any

from streamline.state.reset import plan_state_reset, reset_topics
from streamline.topology import Topology
from streamline.topology.resources import TopologyResources, resources_of

CHANGELOG = "demo.windows.changelog"
REPARTITION = "demo.repartition"


def resources(
    stages: list[dict[str, Any]], partitioned_by: str | None = None, sources: int = 1
) -> TopologyResources:
    def source(i: int) -> dict[str, Any]:
        s: dict[str, Any] = {
            "name": f"orders{i}",
            "topic": f"orders{i}",
            "schema": "com.example.Order",
            "event_time": "created_at",
            "watermark": {"max_out_of_orderness": "5s"},
        }
        if partitioned_by is not None:
            s["partitioned_by"] = partitioned_by
        return s

    return resources_of(
        Topology.model_validate(
            {
                "name": "demo",
                "version": "1",
                "sources": [source(i) for i in range(sources)],
                "stages": stages,
                "sink": {"topic": "out", "schema": "com.example.Order"},
            }
        )
    )


WINDOWED = [
    {"key_by": "customer_id"},
    {"window": {"tumbling": "1m", "aggregate": {"n": "count()"}}},
]


def ends(topic: str, *offsets: int) -> dict[tuple[str, int], int]:
    return {(topic, p): end for p, end in enumerate(offsets)}


def test_a_topology_without_a_window_has_no_state_to_reset() -> None:
    reset = plan_state_reset(resources([]), [("orders0", 0)], {})
    assert not reset
    assert (reset.truncate, reset.skip, reset.partitions) == ([], [], [])


def test_without_repartitioning_only_the_rewound_partitions_are_rebuilt() -> None:
    r = resources(WINDOWED, partitioned_by="customer_id")
    reset = plan_state_reset(r, [("orders0", 1), ("orders0", 2)], ends(CHANGELOG, 5, 7, 0))
    assert reset.truncate == [(CHANGELOG, 1, 7), (CHANGELOG, 2, 0)]
    assert reset.skip == []
    assert reset.partitions == [1, 2]
    assert not reset.new_generation


def test_any_source_rewinds_the_partition_of_its_number() -> None:
    r = resources(WINDOWED, partitioned_by="customer_id", sources=2)
    reset = plan_state_reset(r, [("orders1", 0)], ends(CHANGELOG, 5, 7))
    assert reset.partitions == [0]


def test_with_repartitioning_every_partition_is_rebuilt_and_the_backlog_skipped() -> None:
    r = resources(WINDOWED)
    offsets = {**ends(CHANGELOG, 5, 7), **ends(REPARTITION, 40, 0)}
    reset = plan_state_reset(r, [("orders0", 1)], offsets)
    assert reset.truncate == [(CHANGELOG, 0, 5), (CHANGELOG, 1, 7)]
    assert reset.skip == [(REPARTITION, 0, 40), (REPARTITION, 1, 0)]
    assert reset.partitions == [0, 1]
    assert reset.new_generation


def test_rewinds_of_topics_other_than_the_sources_reset_nothing() -> None:
    offsets = {**ends(CHANGELOG, 5), **ends(REPARTITION, 40)}
    rewound = [(REPARTITION, 0), ("demo.retry", 0)]
    assert not plan_state_reset(resources(WINDOWED), rewound, offsets)
    partitioned = resources(WINDOWED, partitioned_by="customer_id")
    assert not plan_state_reset(partitioned, [("demo.retry", 0)], ends(CHANGELOG, 5))


def test_nothing_rewound_resets_nothing() -> None:
    offsets = {**ends(CHANGELOG, 5), **ends(REPARTITION, 40)}
    assert not plan_state_reset(resources(WINDOWED), [], offsets)


def test_only_partitions_with_known_end_offsets_are_planned() -> None:
    r = resources(WINDOWED, partitioned_by="customer_id")
    assert plan_state_reset(r, [("orders0", 3)], ends(CHANGELOG, 5, 7)).truncate == []


def test_the_plan_needs_the_end_offsets_of_the_changelog_and_repartition_topics() -> None:
    assert reset_topics(resources([])) == []
    assert reset_topics(resources(WINDOWED, partitioned_by="customer_id")) == [CHANGELOG]
    assert reset_topics(resources(WINDOWED)) == [CHANGELOG, REPARTITION]


def test_records_are_deleted_only_where_a_partition_holds_some() -> None:
    offsets = {**ends(CHANGELOG, 5, 0), **ends(REPARTITION, 40, 0)}
    reset = plan_state_reset(resources(WINDOWED), [("orders0", 0)], offsets)
    assert reset.to_delete() == {CHANGELOG: [0]}
    assert reset.to_delete(with_skipped=True) == {CHANGELOG: [0], REPARTITION: [0]}
