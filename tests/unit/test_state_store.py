"""PartitionStore: a real RocksDB behind a transaction overlay (streamline.state.store)."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from streamline.state.checkpoint import Checkpoint, write_checkpoint
from streamline.state.store import (
    PartitionStore,
    StoreOptions,
    partition_path,
    prefix_end,
)
from streamline.state.transaction import TransactionOverlay

FAST = StoreOptions(sync_commits=False)


@pytest.fixture
def store(tmp_path: Path) -> Iterator[PartitionStore]:
    with PartitionStore(tmp_path / "p0", generation=1, fingerprint="fp", options=FAST) as s:
        yield s


def reopen(store: PartitionStore, generation: int = 1) -> PartitionStore:
    store.close()
    return PartitionStore(store.path, generation, fingerprint="fp", options=FAST)


def test_state_lives_under_topology_store_and_partition() -> None:
    assert partition_path(Path("/s"), "orders", "window", 3) == Path("/s/orders/window/3")


def test_write_is_visible_in_its_transaction_but_not_in_rocksdb(store: PartitionStore) -> None:
    store.put(b"k", b"v")
    assert store.get(b"k") == b"v"
    reopened = reopen(store)
    try:
        assert reopened.get(b"k") is None
    finally:
        reopened.close()


def test_commit_applies_changes_and_writes_checkpoint(store: PartitionStore) -> None:
    store.put(b"a", b"1")
    store.put(b"b", b"2")
    store.commit(17)
    assert store.pending_changes() == []
    assert store.checkpoint() == Checkpoint(17, 1, "fp")
    reopened = reopen(store)
    try:
        assert (reopened.get(b"a"), reopened.get(b"b")) == (b"1", b"2")
        assert reopened.checkpoint() == Checkpoint(17, 1, "fp")
    finally:
        reopened.close()


def test_commit_with_durable_options_fsyncs_and_persists(tmp_path: Path) -> None:
    with PartitionStore(tmp_path / "p", 1) as durable:
        durable.put(b"a", b"1")
        durable.commit(3)
    with PartitionStore(tmp_path / "p", 1) as again:
        assert again.get(b"a") == b"1"
        assert again.checkpoint() == Checkpoint(3, 1, "")


def test_rollback_drops_the_transaction_and_leaves_rocksdb_untouched(
    store: PartitionStore,
) -> None:
    store.put(b"a", b"1")
    store.put(b"b", b"2")
    store.commit(5)
    store.put(b"a", b"changed")
    store.delete(b"b")
    store.put(b"c", b"new")
    store.rollback()
    assert store.pending_changes() == []
    assert list(store.items()) == [(b"a", b"1"), (b"b", b"2")]
    assert store.checkpoint() == Checkpoint(5, 1, "fp")


def test_delete_hides_committed_value_and_becomes_a_tombstone(store: PartitionStore) -> None:
    store.put(b"a", b"1")
    store.commit(1)
    store.delete(b"a")
    assert store.get(b"a") is None
    assert store.pending_changes() == [(b"a", None)]
    store.commit(2)
    assert store.get(b"a") is None


def test_pending_changes_are_in_order_of_last_write(store: PartitionStore) -> None:
    store.put(b"a", b"1")
    store.put(b"b", b"2")
    store.delete(b"c")
    store.put(b"a", b"3")
    assert store.pending_changes() == [(b"b", b"2"), (b"c", None), (b"a", b"3")]
    assert store.pending_count == 3


def test_items_merge_transaction_over_rocksdb_in_key_order(store: PartitionStore) -> None:
    for key in (b"a", b"c", b"e", b"g"):
        store.put(key, key.upper())
    store.commit(1)
    store.put(b"b", b"B")  # new, between committed keys
    store.delete(b"c")  # hides a committed key
    store.put(b"e", b"E2")  # overrides a committed key
    store.put(b"h", b"H")  # new, after all committed keys
    store.delete(b"x")  # tombstone of a key that never existed
    assert list(store.items()) == [
        (b"a", b"A"),
        (b"b", b"B"),
        (b"e", b"E2"),
        (b"g", b"G"),
        (b"h", b"H"),
    ]


def test_items_respect_range_and_prefix(store: PartitionStore) -> None:
    for key in (b"a1", b"a2", b"b1", b"b\xff", b"c"):
        store.put(key, b"x")
    store.commit(1)
    store.put(b"b0", b"y")
    store.delete(b"b1")
    assert [k for k, _ in store.items(b"a2", b"b\xff")] == [b"a2", b"b0"]
    assert [k for k, _ in store.items(prefix=b"b")] == [b"b0", b"b\xff"]
    assert [k for k, _ in store.items(start=b"b")] == [b"b0", b"b\xff", b"c"]
    assert [k for k, _ in store.items(end=b"b")] == [b"a1", b"a2"]
    with pytest.raises(ValueError, match="either prefix"):
        store.items(b"a", prefix=b"b")


def test_prefix_end_is_the_first_key_past_the_prefix() -> None:
    assert prefix_end(b"ab") == b"ac"
    assert prefix_end(b"a\xff") == b"b"
    assert prefix_end(b"\xff\xff") is None


def test_restore_writes_directly_and_finish_restore_checkpoints(store: PartitionStore) -> None:
    store.restore([(b"a", b"1"), (b"b", b"2")])
    store.restore([(b"a", None), (b"c", b"3")])
    assert store.pending_changes() == []
    store.finish_restore(42)
    assert store.checkpoint() == Checkpoint(42, 1, "fp")
    reopened = reopen(store)
    try:
        assert list(reopened.items()) == [(b"b", b"2"), (b"c", b"3")]
    finally:
        reopened.close()


def test_restore_refuses_to_mix_with_uncommitted_changes(store: PartitionStore) -> None:
    store.put(b"a", b"1")
    with pytest.raises(RuntimeError, match="commit or roll back"):
        store.restore([(b"b", b"2")])


def test_wipe_deletes_state_and_checkpoint(store: PartitionStore) -> None:
    store.put(b"a", b"1")
    store.commit(9)
    store.put(b"b", b"2")
    store.wipe()
    assert list(store.items()) == []
    assert store.checkpoint() is None
    store.put(b"c", b"3")
    store.commit(1)
    assert list(store.items()) == [(b"c", b"3")]


def test_begin_restore_resumes_from_a_checkpoint_of_this_generation(
    store: PartitionStore,
) -> None:
    store.put(b"a", b"1")
    store.commit(9)
    assert store.begin_restore(changelog_end=12) == 9
    assert store.get(b"a") == b"1"


def test_begin_restore_wipes_state_of_another_generation(store: PartitionStore) -> None:
    store.put(b"a", b"1")
    store.commit(9)
    newer = reopen(store, generation=2)
    try:
        assert newer.begin_restore(changelog_end=12) == 0
        assert newer.get(b"a") is None
        assert newer.checkpoint() is None
    finally:
        newer.close()


def test_begin_restore_wipes_state_without_checkpoint(store: PartitionStore) -> None:
    store.restore([(b"a", b"1")])  # e.g. a restore that crashed before finishing
    assert store.begin_restore(changelog_end=5) == 0
    assert store.get(b"a") is None


def test_begin_restore_wipes_state_ahead_of_a_recreated_changelog(
    store: PartitionStore,
) -> None:
    store.put(b"a", b"1")
    store.commit(9)
    assert store.begin_restore(changelog_end=3) == 0
    assert store.get(b"a") is None


def test_checkpoint_file_is_read_when_opening(tmp_path: Path) -> None:
    (tmp_path / "p").mkdir()
    write_checkpoint(tmp_path / "p" / ".checkpoint", Checkpoint(5, 3, "x"))
    with PartitionStore(tmp_path / "p", 3, options=FAST) as s:
        assert s.checkpoint() == Checkpoint(5, 3, "x")


def test_epochs_tell_cached_readers_what_ended(store: PartitionStore) -> None:
    epoch, reset = store.epoch, store.reset_epoch
    store.put(b"a", b"1")
    store.commit(1)
    assert (store.epoch, store.reset_epoch) == (epoch + 1, reset)
    store.rollback()
    assert (store.epoch, store.reset_epoch) == (epoch + 2, reset + 1)
    store.restore([])
    store.wipe()
    assert store.reset_epoch == reset + 3


def test_approx_keys_counts_committed_and_pending_keys(store: PartitionStore) -> None:
    for i in range(100):
        store.put(b"k%03d" % i, b"v")
    assert store.approx_keys() == 100
    store.commit(1)
    assert 50 <= store.approx_keys() <= 150


# --- property: the store behaves like a dict with a transaction -------------------------

_keys = st.binary(min_size=0, max_size=3)
_ops = st.lists(
    st.one_of(
        st.tuples(st.just("put"), _keys, st.binary(min_size=1, max_size=2)),
        st.tuples(st.just("delete"), _keys, st.none()),
        st.tuples(st.just("commit"), st.none(), st.none()),
        st.tuples(st.just("rollback"), st.none(), st.none()),
        st.tuples(st.just("scan"), _keys, _keys),
    ),
    max_size=40,
)


@pytest.fixture(scope="module")
def shared_store(tmp_path_factory: pytest.TempPathFactory) -> Iterator[PartitionStore]:
    with PartitionStore(tmp_path_factory.mktemp("model") / "p", 1, options=FAST) as s:
        yield s


def _empty(store: PartitionStore) -> None:
    store.rollback()
    for key, _ in list(store.items()):
        store.delete(key)
    store.commit(0)


@settings(max_examples=60, deadline=None)
@given(ops=_ops)
def test_store_matches_a_dict_model(
    shared_store: PartitionStore, ops: list[tuple[str, bytes | None, bytes | None]]
) -> None:
    store = shared_store
    _empty(store)
    committed: dict[bytes, bytes] = {}
    current: dict[bytes, bytes] = {}
    for op, a, b in ops:
        if op == "put":
            assert a is not None and b is not None
            store.put(a, b)
            current[a] = b
        elif op == "delete":
            assert a is not None
            store.delete(a)
            current.pop(a, None)
        elif op == "commit":
            store.commit(1)
            committed = dict(current)
        elif op == "rollback":
            store.rollback()
            current = dict(committed)
        else:
            assert a is not None and b is not None
            lo, hi = min(a, b), max(a, b)
            expected = sorted((k, v) for k, v in current.items() if lo <= k < hi)
            assert list(store.items(lo, hi)) == expected
        for key in (a, b):
            if key is not None:
                assert store.get(key) == current.get(key)
    assert list(store.items()) == sorted(current.items())


@given(
    batches=st.lists(
        st.lists(st.binary(max_size=2), max_size=8),
        max_size=12,
    ),
    bounds=st.tuples(st.binary(max_size=2), st.binary(max_size=2)),
)
def test_overlay_lists_its_keys_in_order_however_writes_interleave_with_reads(
    batches: list[list[bytes]], bounds: tuple[bytes, bytes]
) -> None:
    overlay = TransactionOverlay()
    lo, hi = min(bounds), max(bounds)
    for batch in batches:
        for key in batch:
            overlay.put(key, b"v")
        expected = sorted(k for k in overlay.changes if lo <= k < hi)
        assert list(overlay.keys_between(lo, hi)) == expected
        assert list(overlay.keys_between(None, None)) == sorted(overlay.changes)
