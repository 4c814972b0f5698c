"""Which topics `topics create` makes for a topology, and the state-partition check at start."""

from __future__ import annotations

import pytest

from streamline.errors import StreamlineError
from streamline.kafka.admin import require_copartitioned, require_state_partitions
from streamline.ops.topics import topology_topics
from streamline.topology import load_topology
from tests.helpers import ROOT

REVENUE = ROOT / "topologies" / "revenue-per-minute.yaml"
CHANGELOG = "revenue-per-minute.windows.changelog"
REPARTITION = "revenue-per-minute.repartition"


def test_new_topics_get_the_requested_partitions() -> None:
    topics = topology_topics(load_topology(REVENUE), 4)
    assert topics["orders"][0] == 4
    assert topics[CHANGELOG][0] == 4
    assert topics[REPARTITION][0] == 4
    assert topics[CHANGELOG][1]["cleanup.policy"] == "compact,delete"


def test_state_topics_follow_an_existing_source() -> None:
    # The source exists with 6 partitions: state partition n lives in changelog partition n,
    # so the changelog and repartition topics need 6, whatever --partitions says.
    topics = topology_topics(load_topology(REVENUE), 3, {"orders": 6})
    assert topics[CHANGELOG][0] == 6
    assert topics[REPARTITION][0] == 6
    # retried records go back into their source partition's window state by number
    assert topics["revenue-per-minute.retry"][0] == 6
    assert topics["revenue-per-minute"][0] == 3


def test_a_changelog_smaller_than_the_window_input_is_refused_with_the_fix() -> None:
    with pytest.raises(StreamlineError) as caught:
        require_state_partitions({"orders": 6, CHANGELOG: 3}, "orders", CHANGELOG)
    message = str(caught.value)
    assert f"changelog topic {CHANGELOG} has 3 partitions but orders has 6" in message
    assert "streamline topics create" in message
    require_state_partitions({"orders": 6, CHANGELOG: 6}, "orders", CHANGELOG)


def test_a_windowed_retry_topic_partitioned_unlike_its_source_is_refused() -> None:
    with pytest.raises(StreamlineError) as refused:
        require_copartitioned({"orders": 3, "w.retry": 2}, "orders", "w.retry")
    assert "retry topic w.retry has 2 partitions but orders has 3" in str(refused.value)
    assert "both need 3" in str(refused.value)
    require_copartitioned({"orders": 3, "w.retry": 3}, "orders", "w.retry")
