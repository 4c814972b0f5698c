"""Which instances get their transactions fenced when a takeover finds its committed offsets
held by an unfinished commit (runtime/fencing.py)."""

from __future__ import annotations

import threading
from typing import Any

import pytest
from confluent_kafka import KafkaError, KafkaException

from streamline.runtime import fencing
from streamline.runtime.fencing import LostMembers


def lost_members(
    monkeypatch: pytest.MonkeyPatch, views: list[list[str] | None], held: bool = True
) -> list[str]:
    """Runs one assignment per view of the group's members (None: the describe fails);
    `held`: each assignment's committed offsets were held, so the lost ones are fenced."""
    answers = iter(views)

    def describe(_connection: Any, group: str, topic: str) -> tuple[dict[int, str], list[str]]:
        assert (group, topic) == ("g", "orders")
        members = next(answers)
        if members is None:
            raise KafkaException(KafkaError(KafkaError._TIMED_OUT, "no answer"))
        if members == ["timeout"]:  # the describe's future not done in time
            raise TimeoutError()
        return {}, members

    monkeypatch.setattr(fencing, "describe_group_assignment", describe)
    fenced: list[str] = []
    lost = LostMembers(None, "g", "orders", "a", lambda i: f"t-{i}")  # type: ignore[arg-type]
    monkeypatch.setattr(lost, "fence", lambda instance: fenced.append(instance) or True)
    for _ in views:
        lost.assigned()
        lost.join(5)
        if held:
            lost.fence_lost()
    return fenced


def test_an_instance_that_left_the_group_since_the_last_assignment_is_fenced_once(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    views = [["a"], ["a", "b", "c"], ["a", "c"], ["a", "c"], ["a", "b", "c"], ["a"]]
    assert lost_members(monkeypatch, views) == ["b", "b", "c"]


def test_the_first_assignment_fences_nobody_and_an_instance_never_fences_itself(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    assert lost_members(monkeypatch, [["a", "b"]]) == []
    assert lost_members(monkeypatch, [["a", "b"], ["b"]]) == []  # "a" is this instance


def test_a_failed_describe_fences_nobody_and_forgets_no_member(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    assert lost_members(monkeypatch, [["a", "b"], None, ["a"]]) == ["b"]


def test_nobody_is_fenced_while_the_committed_offsets_are_not_held(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """An instance only expelled (frozen, slow) with no commit in flight carries on."""
    assert lost_members(monkeypatch, [["a", "b"], ["a"]], held=False) == []


def test_a_describe_that_times_out_fences_nobody_and_forgets_no_member(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """The describe's future can time out (an instance paused in the middle of it): the
    check ends like a failed describe, with no traceback from its thread."""
    errors: list[Any] = []
    monkeypatch.setattr(threading, "excepthook", errors.append)
    assert lost_members(monkeypatch, [["a", "b"], ["timeout"], ["a"]]) == ["b"]
    assert errors == []
