"""Standby replicas: where they go, what the topology accepts, the lag metric."""

from __future__ import annotations

import pytest
from pydantic import ValidationError

from streamline.observability.metrics import Metrics
from streamline.runtime.standby import standby_partitions
from streamline.topology import Topology
from tests.unit.test_topology_model import WINDOWED_STAGES, minimal

OWNERS = {0: "a", 1: "a", 2: "b", 3: "b", 4: "c", 5: "c"}


def test_each_partition_has_its_standby_on_the_next_member_never_the_owner() -> None:
    members = ["c", "a", "b"]
    placed = {m: standby_partitions(OWNERS, members, m, replicas=1) for m in members}
    assert placed == {"a": {4, 5}, "b": {0, 1}, "c": {2, 3}}
    for member, partitions in placed.items():
        assert all(OWNERS[p] != member for p in partitions)


def test_with_two_members_each_is_the_standby_of_the_other() -> None:
    owners = {p: "a" if p < 3 else "b" for p in range(6)}
    assert standby_partitions(owners, ["a", "b"], "a", 1) == {3, 4, 5}
    assert standby_partitions(owners, ["a", "b"], "b", 1) == {0, 1, 2}


def test_more_replicas_than_other_members_place_one_on_each_other_member() -> None:
    assert standby_partitions(OWNERS, ["a", "b", "c"], "a", replicas=5) == {2, 3, 4, 5}


def test_no_standby_alone_without_replicas_or_outside_the_group() -> None:
    assert standby_partitions({0: "a"}, ["a"], "a", 1) == set()
    assert standby_partitions(OWNERS, ["a", "b", "c"], "a", 0) == set()
    assert standby_partitions(OWNERS, ["a", "b", "c"], "z", 1) == set()


def test_partitions_whose_owner_left_the_member_list_get_no_new_standby() -> None:
    assert standby_partitions({0: "gone", 1: "b"}, ["a", "b"], "a", 1) == {1}


def test_standby_replicas_need_window_state_and_leave_the_fingerprint_alone() -> None:
    plain = Topology.model_validate(minimal(stages=WINDOWED_STAGES))
    standby = Topology.model_validate(minimal(stages=WINDOWED_STAGES, standby_replicas=1))
    assert plain.standby_replicas == 0 and standby.standby_replicas == 1
    assert standby.fingerprint == plain.fingerprint
    with pytest.raises(ValidationError, match="standby replicas copy window state"):
        Topology.model_validate(minimal(standby_replicas=1))
    with pytest.raises(ValidationError, match="greater than or equal to 0"):
        Topology.model_validate(minimal(stages=WINDOWED_STAGES, standby_replicas=-1))


def test_standby_lag_is_a_gauge_per_partition_removed_with_its_standby() -> None:
    metrics = Metrics("t")
    metrics.standby.set_lag(3, 120)
    assert 'streamline_standby_lag{partition="3",topology="t"} 120.0' in metrics.render().decode()
    metrics.standby.remove(3)
    assert "streamline_standby_lag{" not in metrics.render().decode()
