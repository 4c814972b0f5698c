"""The stream-stream join's memory index and how the buffers keep it and the store in step:
the index against a brute-force oracle, writes deferred to the end of the transaction, and
the index rebuilt from the store after a reopen, a rollback or a changelog restore."""

from __future__ import annotations

import json
import struct
from pathlib import Path
from typing import Any

from hypothesis import given, settings
from hypothesis import strategies as st

from streamline.runtime.join_index import JoinIndex
from streamline.runtime.stream_join import LEFT, RIGHT, Buffered, JoinBuffers
from streamline.state.store import PartitionStore

TOPICS = ["orders", "payments"]

# --- the index -------------------------------------------------------------------------


def test_between_is_inclusive_in_time_then_position_order_per_side_and_key() -> None:
    index: JoinIndex[str] = JoinIndex()
    index.add("L", "a", 20, b"\x00\x02", "a20-2")
    index.add("L", "a", 10, b"\x00\x05", "a10-5")
    index.add("L", "a", 20, b"\x00\x01", "a20-1")
    index.add("L", "ab", 15, b"\x00\x00", "ab15")
    index.add("R", "a", 15, b"\x00\x00", "Ra15")
    assert index.between("L", "a", 10, 20) == ["a10-5", "a20-1", "a20-2"]
    assert index.between("L", "a", 11, 19) == []
    assert index.between("L", "a", 20, 99) == ["a20-1", "a20-2"]
    assert index.between("L", "b", 0, 99) == []
    assert len(index) == 5


def test_expire_removes_what_is_before_the_bound_in_time_side_position_order() -> None:
    index: JoinIndex[str] = JoinIndex()
    index.add("R", "a", 10, b"\x00\x01", "R10")
    index.add("L", "b", 10, b"\x00\x09", "L10-9")
    index.add("L", "a", 10, b"\x00\x02", "L10-2")
    index.add("L", "a", 30, b"\x00\x03", "L30")
    assert index.expire(10) == []  # nothing before 10
    assert index.expire(11) == [("L", "a", "L10-2"), ("L", "b", "L10-9"), ("R", "a", "R10")]
    assert index.between("L", "a", 0, 99) == ["L30"] and len(index) == 1
    assert index.expire(1_000) == [("L", "a", "L30")] and len(index) == 0


def test_adding_the_same_record_again_replaces_it() -> None:
    index: JoinIndex[str] = JoinIndex()
    index.add("L", "a", 10, b"\x00\x01", "first")
    index.add("L", "a", 5, b"\x00\x00", "earlier")
    index.add("L", "a", 10, b"\x00\x01", "again")
    assert index.between("L", "a", 0, 99) == ["earlier", "again"] and len(index) == 2
    assert [item for _, _, item in index.expire(99)] == ["earlier", "again"]


operations = st.lists(
    st.one_of(
        st.tuples(
            st.just("add"),
            st.sampled_from("LR"),
            st.sampled_from(["a", "b", "c"]),
            st.integers(0, 60),
            st.integers(0, 5),
        ),
        st.tuples(st.just("expire"), st.integers(0, 70)),
        st.tuples(
            st.just("between"),
            st.sampled_from("LR"),
            st.sampled_from(["a", "b"]),
            st.integers(0, 60),
            st.integers(0, 20),
        ),
    ),
    max_size=60,
)


@settings(max_examples=150, deadline=None)
@given(operations)
def test_the_index_equals_a_brute_force_list(ops: list[tuple[Any, ...]]) -> None:
    index: JoinIndex[tuple[Any, ...]] = JoinIndex()
    held: dict[tuple[Any, ...], tuple[Any, ...]] = {}  # (side, key, time, position) -> item
    for op in ops:
        if op[0] == "add":
            _, side, key, time, offset = op
            ident = (side, key, time, struct.pack(">Q", offset))
            item = (*ident, len(held))
            index.add(*ident, item)
            held[ident] = item
        elif op[0] == "expire":
            bound = op[1]
            gone = sorted((i for i in held if i[2] < bound), key=lambda i: (i[2], i[0], i[3], i[1]))
            assert index.expire(bound) == [(i[0], i[1], held[i]) for i in gone]
            for i in gone:
                del held[i]
        else:
            _, side, key, low, width = op
            expected = sorted(
                (i for i in held if i[:2] == (side, key) and low <= i[2] <= low + width),
                key=lambda i: (i[2], i[3]),
            )
            assert index.between(side, key, low, low + width) == [held[i] for i in expected]
        assert len(index) == len(held)


# --- the buffers: the index and the store in step ----------------------------------------


def rec(side: Any, key: str, time: int, offset: int) -> Buffered:
    topic = "orders" if side == LEFT else "payments"
    return Buffered(side, key, time, {"k": key, "t": time, "b": b"\x00"}, (topic, 0, offset))


def buffers(store: PartitionStore, join_type: Any = "left") -> JoinBuffers:
    return JoinBuffers(store, 100, 0, join_type, TOPICS)


def written(store: PartitionStore) -> list[bytes]:
    return sorted(k for k, v in store.pending_changes() if v is not None)


def test_a_record_buffered_and_expired_in_one_transaction_never_reaches_the_store(
    tmp_path: Path,
) -> None:
    store = PartitionStore(tmp_path / "s", 0)
    b = buffers(store, "inner")
    b.add(rec(LEFT, "a", 1_000, 0))
    b.add(rec(LEFT, "b", 5_000, 1))
    assert b.expire(2_000) == ([], 1)
    changes = dict(store.pending_changes())
    assert b"M" in changes and len(changes) == 2  # the watermark and the one still held
    store.commit(1)
    assert b.expire(9_000) == ([], 1)
    assert [v for k, v in store.pending_changes() if k != b"M"] == [None]  # a tombstone


def test_reopened_state_matches_and_expires_as_before(tmp_path: Path) -> None:
    store = PartitionStore(tmp_path / "s", 0)
    b = buffers(store)
    b.add(rec(LEFT, "a", 1_000, 0))
    b.add(rec(LEFT, "a", 1_050, 1))
    b.add(rec(LEFT, "c", 1_000, 2))
    store.commit(1)
    b.add(rec(RIGHT, "a", 1_100, 0))  # matches both; they are matched from now on
    store.commit(2)
    store.close()
    reopened = buffers(PartitionStore(tmp_path / "s", 0))
    assert reopened.buffered() == 4
    assert [m.origin for m in reopened.add(rec(RIGHT, "a", 1_040, 1))] == [
        ("orders", 0, 0),
        ("orders", 0, 1),
    ]
    unmatched, dropped = reopened.expire(10_000)
    assert [u.key for u in unmatched] == ["c"] and dropped == 5


def test_a_rollback_forgets_what_the_transaction_buffered(tmp_path: Path) -> None:
    store = PartitionStore(tmp_path / "s", 0)
    b = buffers(store)
    b.add(rec(LEFT, "a", 1_000, 0))
    store.commit(1)
    b.add(rec(LEFT, "a", 1_010, 1))
    b.add(rec(RIGHT, "a", 1_020, 0))
    store.rollback()
    assert store.pending_changes() == []  # nothing of the aborted transaction is written
    assert b.buffered() == 1
    assert [m.origin for m in b.add(rec(RIGHT, "a", 1_020, 0))] == [("orders", 0, 0)]
    unmatched, dropped = b.expire(10_000)
    assert unmatched == [] and dropped == 2


def test_the_changelog_rebuilds_the_same_buffers_without_local_state(tmp_path: Path) -> None:
    store = PartitionStore(tmp_path / "s", 0)
    b = buffers(store, "outer")
    changelog: list[tuple[bytes, bytes | None]] = []
    steps = [
        [rec(LEFT, "a", 1_000, 0), rec(RIGHT, "b", 1_000, 0)],
        [rec(RIGHT, "a", 1_050, 1), rec(LEFT, "d", 1_300, 1)],
        [rec(LEFT, "e", 1_400, 2)],
    ]
    for i, step in enumerate(steps):
        for r in step:
            b.add(r)
        b.expire(1_000 + 100 * i)
        changelog += store.pending_changes()
        store.commit(len(changelog))
    fresh_store = PartitionStore(tmp_path / "fresh", 0)
    fresh_store.restore(changelog)
    fresh = buffers(fresh_store, "outer")
    assert fresh.buffered() == b.buffered() == 2  # a, b and the match of a expired
    assert fresh.expired_at() == b.expired_at() == 1_200
    unmatched, dropped = fresh.expire(10_000)
    assert (unmatched, dropped) == b.expire(10_000)
    assert [u.key for u in unmatched] == ["d", "e"] and dropped == 2


def test_stores_written_with_json_and_an_expiry_index_are_read_and_cleaned(
    tmp_path: Path,
) -> None:
    store = PartitionStore(tmp_path / "s", 0)
    position = struct.pack(">BQ", 0, 7)
    time = struct.pack(">Q", 1_000 + 2**63)
    buffer_key = b"BL" + struct.pack(">H", 1) + b"a" + time + position
    value = {"k": "a"}
    store.put(buffer_key, json.dumps(["a", 1_000, value, ["orders", 0, 7], False]).encode())
    store.put(b"X" + time + b"L" + position, buffer_key)
    store.commit(1)
    b = buffers(store)
    assert b.add(rec(RIGHT, "a", 1_010, 0)) == [
        Buffered(LEFT, "a", 1_000, value, ("orders", 0, 7), False)
    ]
    store.commit(2)
    assert b.expire(10_000) == ([], 2)
    store.commit(3)
    assert [k for k, _ in store.items()] == [b"M"]
