"""Calls kept in flight across batches: release order, hold-back, per-key order, offsets."""

from __future__ import annotations

import asyncio
from typing import Any

from streamline.runtime.call_window import CallWindow, HeldOffsets
from streamline.runtime.calls import event_loop
from streamline.runtime.record import Record


class Gate:
    """A dependency the test answers by hand: `release(i)` completes the call for record i."""

    def __init__(self) -> None:
        self.calls: list[int] = []
        self.answers: dict[int, asyncio.Future[None]] = {}

    async def call(self, value: dict[str, Any]) -> dict[str, Any]:
        i = value["i"]
        self.calls.append(i)
        answer = self.answers.setdefault(i, event_loop().create_future())
        await answer
        return {"i": i, "done": True}

    def release(self, *indexes: int) -> None:
        for i in indexes:
            answer = self.answers.setdefault(i, event_loop().create_future())
            if not answer.done():
                answer.set_result(None)


def records(indexes: range, partition_of: Any = lambda i: 0, key_of: Any = str) -> list[Record]:
    out = []
    for i in indexes:
        record = Record("t", partition_of(i), i, key_of(i).encode(), b"", [])
        record.value = {"i": i}
        out.append(record)
    return out


def taken(window: CallWindow, batch: list[Record]) -> list[int]:
    return [record.offset for record, _ in window.take(batch)]


def test_a_slow_record_holds_back_its_partition_only_and_calls_go_on_past_it() -> None:
    gate = Gate()
    window = CallWindow(event_loop(), gate.call, concurrency=8, hold_limit=100)
    batch = records(range(6), partition_of=lambda i: i % 2)
    gate.release(1, 2, 3, 4, 5)  # record 0 (partition 0) is slow
    assert taken(window, batch) == [1, 3, 5]  # partition 1 goes on
    assert window.held_from() == {("t", 0): 0}
    assert sorted(gate.calls) == [0, 1, 2, 3, 4, 5]  # the calls behind 0 already ran
    gate.release(0)
    assert taken(window, []) == [0, 2, 4]
    assert not window.holds


def test_calls_of_one_key_run_in_offset_order_across_batches() -> None:
    gate = Gate()
    window = CallWindow(event_loop(), gate.call, concurrency=8, hold_limit=100)
    same_key = lambda i: "k"  # noqa: E731
    first = records(range(3), key_of=same_key)
    window.take(first)  # waits briefly: nothing completes
    assert gate.calls == [0]
    second = records(range(3, 5), key_of=same_key)
    gate.release(0, 1)
    out = taken(window, second)
    assert out and out == [0, 1][: len(out)]
    assert 3 not in gate.calls and 4 not in gate.calls  # behind 2, which has not answered
    gate.release(2, 3, 4)
    while window.holds:
        out += taken(window, [])
    assert out == [0, 1, 2, 3, 4]
    assert gate.calls == [0, 1, 2, 3, 4]


def test_positions_stop_at_the_oldest_held_record_and_come_back_once_released() -> None:
    gate = Gate()
    window = CallWindow(event_loop(), gate.call, concurrency=8, hold_limit=100)
    held = HeldOffsets([window])
    positions: dict[tuple[str, int], int] = {}
    batch = records(range(10, 14))
    gate.release(10, 11, 13)
    held.uncap(positions)
    assert taken(window, batch) == [10, 11]
    positions[("t", 0)] = 14  # the batch was read up to 13
    held.cap(positions)
    assert positions == {("t", 0): 12}  # the commit excludes 12 and 13
    gate.release(12)
    held.uncap(positions)
    assert positions == {("t", 0): 14}
    assert taken(window, []) == [12, 13]
    held.cap(positions)
    assert positions == {("t", 0): 14}


def test_an_abort_drops_what_is_held_and_makes_no_call_not_yet_started() -> None:
    gate = Gate()
    window = CallWindow(event_loop(), gate.call, concurrency=8, hold_limit=100)
    held = HeldOffsets([window])
    positions = {("t", 0): 4}
    window.take(records(range(4), key_of=lambda i: "k"))
    assert gate.calls == [0]  # one key: 1 to 3 wait for 0
    held.cap(positions)
    assert positions == {("t", 0): 0}
    held.drop()
    assert not window.holds and window.held_from() == {}
    held.uncap(positions)
    assert positions == {("t", 0): 0}  # the rewind's position stays
    gate.release(0)
    gate.release(4)
    again = records(range(4, 5), key_of=lambda i: "k")  # read again after the rewind
    assert taken(window, again) == [4]
    assert gate.calls == [0, 4]  # 0's result unused; 1 to 3 never called


def test_a_revoke_drops_only_the_revoked_partitions() -> None:
    gate = Gate()
    window = CallWindow(event_loop(), gate.call, concurrency=8, hold_limit=100)
    held = HeldOffsets([window])
    positions = {("t", 0): 4, ("t", 1): 4}
    window.take(records(range(4), partition_of=lambda i: i % 2))
    held.cap(positions)
    held.drop([("t", 0)])
    assert window.held_from() == {("t", 1): 1}
    gate.release(0, 1, 2, 3)
    held.uncap(positions)
    assert positions == {("t", 0): 0, ("t", 1): 4}
    assert taken(window, []) == [1, 3]


def test_each_commit_lists_as_inputs_the_offsets_it_covers_and_a_held_record_in_a_later_one() -> (
    None
):
    from streamline.runtime.transaction import Transaction

    gate = Gate()
    window = CallWindow(event_loop(), gate.call, concurrency=8, hold_limit=100)
    held = HeldOffsets([window])
    positions: dict[tuple[str, int], int] = {}
    batch = records(range(10, 14))
    gate.release(10, 11, 13)
    assert taken(window, batch) == [10, 11]
    held.read(Transaction(), batch, positions)
    assert held.inputs(positions) == {("t", 0): (10, 11)}  # 12 is held, and 13 behind it
    gate.release(12)
    assert taken(window, []) == [12, 13]
    held.read(Transaction(), [], positions)
    assert held.inputs(positions) == {("t", 0): (12, 13)}
    assert held.inputs(positions) == {}  # nothing new read: nothing listed twice
    held.read(Transaction(), records(range(14, 16)), positions)
    held.drop()  # an abort: the records are read again from the committed offset
    assert held.inputs(positions) == {}
