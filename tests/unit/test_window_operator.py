"""WindowOperator over a real PartitionStore (streamline.runtime.window_operator).

The property tests run disordered streams through the operator, with the
watermark at ``max(t) - out_of_orderness``, random ``fire`` calls and random
commits, and compare with a brute-force oracle that keeps every record of
every window in a list and applies the spec's rules literally
(docs/topology.md, "Windows, watermarks and lateness").
"""

from __future__ import annotations

import math
from collections.abc import Iterator, Sequence
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Any, Literal

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from streamline.runtime.aggregates import AggregateSpec
from streamline.runtime.watermark import NO_WATERMARK
from streamline.runtime.window_operator import (
    AddResult,
    WindowOperator,
    WindowResult,
)
from streamline.state.store import PartitionStore, StoreOptions

FAST = StoreOptions(sync_commits=False)
SPEC = AggregateSpec(
    {
        "n": "count()",
        "total": "sum(x)",
        "mean": "avg(x)",
        "lo": "min(x)",
        "hi": "max(x)",
        "first_id": "first(id)",
        "last_id": "last(id)",
    }
)
Kind = Literal["tumbling", "hopping", "session"]
WindowId = tuple[str, int, int]  # key, start, end


@dataclass(frozen=True)
class Rec:
    key: str
    t: int
    x: float
    seq: int

    @property
    def value(self) -> dict[str, Any]:
        return {"x": self.x, "id": f"r{self.seq}"}


@dataclass(frozen=True)
class Config:
    kind: Kind
    size: int = 10
    advance: int = 10
    gap: int = 10
    lateness: int = 0
    ooo: int = 0
    emit: Literal["final", "update"] = "final"

    def operator(self, store: PartitionStore) -> WindowOperator:
        return WindowOperator(
            self.kind,
            size_ms=self.size,
            advance_ms=self.advance,
            gap_ms=self.gap,
            allowed_lateness_ms=self.lateness,
            aggregates=SPEC,
            emit=self.emit,
            store=store,
        )


def watermarks(records: Sequence[Rec], ooo: int) -> list[int]:
    """The partition watermark after each record: max(t seen) - ooo."""
    out, wm = [], NO_WATERMARK
    for rec in records:
        wm = max(wm, rec.t - ooo)
        out.append(wm)
    return out


def final_watermark(records: Sequence[Rec], config: Config) -> int:
    """A watermark past every window and session expiry."""
    span = max(config.size, config.gap * 2) + config.lateness
    return max(r.t for r in records) + span + 1


# --- the oracle --------------------------------------------------------------------------


@dataclass
class Expected:
    finals: dict[WindowId, list[Rec]] = field(default_factory=dict)
    late: list[bool] = field(default_factory=list)
    updates: list[list[tuple[WindowId, list[Rec]]]] = field(default_factory=list)


def fixed_windows(t: int, size: int, advance: int) -> list[tuple[int, int]]:
    """Every [k*advance, k*advance + size) containing t, found by trying every k nearby."""
    out = []
    k = (t - size) // advance - 1
    while k * advance <= t:
        if k * advance <= t < k * advance + size:
            out.append((k * advance, k * advance + size))
        k += 1
    return out


def oracle_fixed(records: Sequence[Rec], config: Config) -> Expected:
    advance = config.size if config.kind == "tumbling" else config.advance
    expected = Expected()
    for rec, wm in zip(records, watermarks(records, config.ooo), strict=True):
        windows = fixed_windows(rec.t, config.size, advance)
        open_windows = [w for w in windows if wm < w[1] + config.lateness]
        if windows and not open_windows:
            expected.late.append(True)
            expected.updates.append([])
            continue
        expected.late.append(False)
        updates = []
        for start, end in open_windows:
            recs = expected.finals.setdefault((rec.key, start, end), [])
            recs.append(rec)
            updates.append(((rec.key, start, end), list(recs)))
        expected.updates.append(updates)
    return expected


@dataclass
class _Session:
    first: int
    last: int
    recs: list[Rec]


def oracle_sessions(records: Sequence[Rec], config: Config) -> Expected:
    gap, lateness = config.gap, config.lateness
    expected = Expected()
    open_sessions: dict[str, list[_Session]] = {}
    fired_last: dict[str, int] = {}

    def fire(wm: int) -> None:
        for key, sessions in open_sessions.items():
            for s in [s for s in sessions if s.last + gap + lateness <= wm]:
                expected.finals[(key, s.first, s.last + gap)] = s.recs
                fired_last[key] = max(fired_last.get(key, s.last), s.last)
                sessions.remove(s)

    for rec, wm in zip(records, watermarks(records, config.ooo), strict=True):
        fire(wm)
        t = rec.t
        closed = fired_last.get(rec.key)
        if t + gap + lateness <= wm or (closed is not None and t <= closed + gap):
            expected.late.append(True)
            expected.updates.append([])
            continue
        expected.late.append(False)
        sessions = open_sessions.setdefault(rec.key, [])
        joined = [s for s in sessions if s.first - gap <= t <= s.last + gap]
        merged = _Session(
            min([t, *(s.first for s in joined)]),
            max([t, *(s.last for s in joined)]),
            [r for s in joined for r in s.recs] + [rec],
        )
        for s in joined:
            sessions.remove(s)
        sessions.append(merged)
        window = (rec.key, merged.first, merged.last + gap)
        expected.updates.append([(window, list(merged.recs))])
    fire(final_watermark(records, config))
    return expected


def oracle(records: Sequence[Rec], config: Config) -> Expected:
    if config.kind == "session":
        return oracle_sessions(records, config)
    return oracle_fixed(records, config)


def assert_aggregates(result: WindowResult, recs: list[Rec]) -> None:
    values = [r.x for r in recs]
    agg = result.aggregates
    assert agg["n"] == len(recs)
    assert math.isclose(agg["total"], math.fsum(values), rel_tol=1e-9, abs_tol=1e-12)
    assert math.isclose(agg["mean"], math.fsum(values) / len(values), rel_tol=1e-9)
    assert (agg["lo"], agg["hi"]) == (min(values), max(values))
    assert agg["first_id"] == min(recs, key=lambda r: (r.t, r.seq)).value["id"]
    assert agg["last_id"] == max(recs, key=lambda r: (r.t, r.seq)).value["id"]
    assert (result.min_seq, result.max_seq) == (
        min(r.seq for r in recs),
        max(r.seq for r in recs),
    )
    assert (result.min_event_time, result.max_event_time) == (
        min(r.t for r in recs),
        max(r.t for r in recs),
    )


def window_id(result: WindowResult) -> WindowId:
    return (result.key, result.window_start, result.window_end)


# --- running the operator ---------------------------------------------------------------


@dataclass
class Run:
    adds: list[AddResult] = field(default_factory=list)
    fired: list[tuple[int, list[WindowResult]]] = field(default_factory=list)
    """(watermark, results) of every fire call, in order."""
    limit: int | None = None
    """Fire in slices of this many results (calling until nothing is left)."""

    def fire(self, op: WindowOperator, watermark: int) -> None:
        if self.limit is None:
            self.fired.append((watermark, op.fire(watermark)))
            return
        results: list[WindowResult] = []
        while batch := op.fire(watermark, limit=self.limit):
            assert len(batch) <= self.limit
            results += batch
        self.fired.append((watermark, results))

    @property
    def finals(self) -> list[WindowResult]:
        return [result for _, results in self.fired for result in results]


def run(
    op: WindowOperator,
    store: PartitionStore,
    records: Sequence[Rec],
    config: Config,
    *,
    fire_after: Sequence[bool] = (),
    commit_after: Sequence[bool] = (),
    finish: bool = True,
    limit: int | None = None,
) -> Run:
    out = Run(limit=limit)
    for i, (rec, wm) in enumerate(zip(records, watermarks(records, config.ooo), strict=True)):
        out.adds.append(op.add(rec.key, rec.value, rec.t, rec.seq, wm))
        if i < len(fire_after) and fire_after[i]:
            out.fire(op, wm)
        if i < len(commit_after) and commit_after[i]:
            store.commit(rec.seq + 1)
    if finish:
        out.fire(op, final_watermark(records, config))
    return out


def check_against_oracle(out: Run, records: Sequence[Rec], config: Config) -> None:
    expected = oracle(records, config)
    assert [a.late for a in out.adds] == expected.late
    for add in out.adds:
        assert add.late == (add.late_reason is not None)
    ids = [window_id(r) for r in out.finals]
    assert len(ids) == len(set(ids)), "a window was emitted twice"
    assert set(ids) == set(expected.finals)
    for result in out.finals:
        assert result.final
        assert_aggregates(result, expected.finals[window_id(result)])
    # Each window fires at the first fire call whose watermark has reached its
    # end + allowed lateness: not before, and not later.
    previous = NO_WATERMARK
    for wm, results in out.fired:
        for result in results:
            assert previous < result.window_end + config.lateness <= wm
        previous = max(previous, wm)
    if config.emit == "update":
        for add, updates in zip(out.adds, expected.updates, strict=True):
            assert [window_id(u) for u in add.updates] == [w for w, _ in updates]
            for update, (_, recs) in zip(add.updates, updates, strict=True):
                assert not update.final
                assert_aggregates(update, recs)
    else:
        assert all(add.updates == () for add in out.adds)


@pytest.fixture(scope="module")
def shared_store(tmp_path_factory: pytest.TempPathFactory) -> Iterator[PartitionStore]:
    with PartitionStore(tmp_path_factory.mktemp("ops") / "p", 1, options=FAST) as store:
        yield store


def emptied(store: PartitionStore) -> PartitionStore:
    store.rollback()
    for key, _ in list(store.items()):
        store.delete(key)
    store.commit(0)
    return store


# --- properties: every kind of window against the oracle --------------------------------

_record = st.tuples(
    st.sampled_from("abc"),
    st.integers(-60, 240),
    st.one_of(st.integers(0, 1000), st.floats(0, 1000, allow_nan=False)),
)


def _records(raw: list[tuple[str, int, float]]) -> list[Rec]:
    return [Rec(key, t, x, seq) for seq, (key, t, x) in enumerate(raw)]


def _configs(kind: Kind) -> st.SearchStrategy[Config]:
    return st.builds(
        Config,
        kind=st.just(kind),
        size=st.integers(1, 50),
        advance=st.integers(1, 60),
        gap=st.integers(1, 30),
        lateness=st.integers(0, 20),
        ooo=st.integers(0, 60),
        emit=st.sampled_from(["final", "update"]),
    )


@pytest.mark.parametrize("kind", ["tumbling", "hopping", "session"])
@settings(max_examples=40, deadline=None)
@given(data=st.data())
def test_results_equal_the_brute_force_oracle(
    shared_store: PartitionStore, kind: Kind, data: st.DataObject
) -> None:
    config = data.draw(_configs(kind))
    if kind == "hopping":  # keep the number of windows per record small
        config = replace(config, size=min(config.size, 4 * config.advance))
    records = _records(data.draw(st.lists(_record, min_size=1, max_size=40)))
    flags = st.lists(st.booleans(), min_size=len(records), max_size=len(records))
    fire_after, commit_after = data.draw(flags), data.draw(flags)
    limit = data.draw(st.sampled_from([None, 1, 2, 5]))
    store = emptied(shared_store)
    out = run(
        config.operator(store),
        store,
        records,
        config,
        fire_after=fire_after,
        commit_after=commit_after,
        limit=limit,
    )
    check_against_oracle(out, records, config)
    # Fired windows leave no state behind: only the watermark remains.
    assert [key for key, _ in store.items()] == [b"W"]


@pytest.mark.parametrize("kind", ["tumbling", "hopping", "session"])
@settings(max_examples=25, deadline=None)
@given(data=st.data())
def test_rollback_and_replay_give_the_results_of_an_uninterrupted_run(
    shared_store: PartitionStore, kind: Kind, data: st.DataObject
) -> None:
    config = data.draw(_configs(kind))
    records = _records(data.draw(st.lists(_record, min_size=2, max_size=30)))
    committed = data.draw(st.integers(0, len(records)))
    aborted = data.draw(st.integers(committed, len(records)))
    every = [True] * len(records)

    store = emptied(shared_store)
    clean = run(config.operator(store), store, records, config, fire_after=every)

    store = emptied(shared_store)
    op = config.operator(store)
    first = run(op, store, records[:committed], config, fire_after=every, finish=False)
    store.commit(committed)
    # A transaction that processes more records and fires windows, then aborts.
    run(op, store, records[committed:aborted], config, fire_after=every, finish=False)
    store.rollback()
    # The consumer seeks back; the same records come again, with the same watermarks.
    replay_records = records[committed:]
    wms = watermarks(records, config.ooo)[committed:]
    replay = Run()
    for rec, wm in zip(replay_records, wms, strict=True):
        replay.adds.append(op.add(rec.key, rec.value, rec.t, rec.seq, wm))
        replay.fire(op, wm)
    replay.fire(op, final_watermark(records, config))

    assert first.adds + replay.adds == clean.adds
    assert first.fired + replay.fired == clean.fired


@pytest.mark.parametrize("kind", ["tumbling", "hopping", "session"])
@settings(max_examples=8, deadline=None)
@given(data=st.data())
def test_state_survives_a_restart_from_the_local_checkpoint(
    tmp_path_factory: pytest.TempPathFactory, kind: Kind, data: st.DataObject
) -> None:
    config = data.draw(_configs(kind))
    records = _records(data.draw(st.lists(_record, min_size=2, max_size=30)))
    committed = data.draw(st.integers(0, len(records)))
    crashed = data.draw(st.integers(committed, len(records)))
    every = [True] * len(records)
    path = tmp_path_factory.mktemp("restart") / "p"

    with PartitionStore(path, 1, options=FAST) as store:
        clean = run(config.operator(emptied(store)), store, records, config, fire_after=every)
        store.wipe()
        op = config.operator(store)
        before = run(op, store, records[:committed], config, fire_after=every, finish=False)
        store.commit(committed)
        # Processed but never committed: lost in the crash, consumed again after it.
        run(op, store, records[committed:crashed], config, fire_after=every, finish=False)

    with PartitionStore(path, 1, options=FAST) as store:
        assert store.begin_restore(changelog_end=committed) == committed
        op = config.operator(store)
        # The runtime's watermark tracker starts from scratch after a restart; the
        # operator's stored watermark keeps fired windows fired.
        rest = records[committed:]
        after = Run()
        for rec, wm in zip(rest, watermarks(rest, config.ooo), strict=True):
            after.adds.append(op.add(rec.key, rec.value, rec.t, rec.seq, wm))
            after.fire(op, wm)
        after.fire(op, final_watermark(records, config))

    assert before.adds + after.adds == clean.adds
    # Fire calls after the restart pass the restarted tracker's (lower) watermarks;
    # what each call returns must still be what the uninterrupted run returned.
    assert [r for _, r in before.fired + after.fired] == [r for _, r in clean.fired]


# --- specific behaviours ----------------------------------------------------------------


@pytest.fixture
def store(tmp_path: Path) -> Iterator[PartitionStore]:
    with PartitionStore(tmp_path / "p", 1, options=FAST) as s:
        yield s


def test_record_in_a_fired_tumbling_window_is_late_with_the_reason(store: PartitionStore) -> None:
    op = Config("tumbling", size=10, lateness=5).operator(store)
    assert not op.add("k", {"x": 1, "id": "a"}, 3, 0, 14).late
    result = op.add("k", {"x": 1, "id": "b"}, 4, 1, 15)
    assert result.late
    assert (
        result.late_reason == "window [0, 10) closed at watermark 15 (end + allowed lateness = 15)"
    )
    assert [r.aggregates["n"] for r in op.fire(15)] == [1]


def test_windows_fire_in_end_time_order_across_negative_times(store: PartitionStore) -> None:
    op = Config("tumbling", size=10).operator(store)
    for seq, t in enumerate([25, -5, 3, -15, 14]):
        op.add("k", {"x": 1, "id": "a"}, t, seq, NO_WATERMARK)
    assert [(r.window_start, r.window_end) for r in op.fire(100)] == [
        (-20, -10),
        (-10, 0),
        (0, 10),
        (10, 20),
        (20, 30),
    ]


def test_fire_returns_nothing_until_a_window_is_due_and_each_window_once(
    store: PartitionStore,
) -> None:
    op = Config("tumbling", size=10, lateness=2).operator(store)
    op.add("k", {"x": 1, "id": "a"}, 5, 0, 0)
    assert op.fire(11) == []
    assert len(op.fire(12)) == 1
    assert op.fire(12) == []
    assert op.fire(1000) == []


def test_window_ending_right_after_a_firing_fires_at_the_next_watermark(
    store: PartitionStore,
) -> None:
    op = Config("session", gap=5).operator(store)
    op.add("a", {"x": 1, "id": "a"}, 0, 0, NO_WATERMARK)  # [0, 5)
    op.add("b", {"x": 1, "id": "b"}, 1, 1, NO_WATERMARK)  # [1, 6)
    assert [r.key for r in op.fire(5)] == ["a"]
    assert [r.key for r in op.fire(6)] == ["b"]


def test_fire_with_a_limit_hands_out_due_windows_in_slices(store: PartitionStore) -> None:
    op = Config("tumbling", size=10).operator(store)
    for seq in range(10):
        op.add(f"k{seq}", {"x": seq, "id": "a"}, seq % 3 * 10, seq, 0)
    slices = []
    while batch := op.fire(100, limit=3):
        slices.append([(r.window_end, r.key) for r in batch])
        store.commit(len(slices))
    assert [len(s) for s in slices] == [3, 3, 3, 1]
    fired = [w for s in slices for w in s]
    assert fired == sorted(fired)
    assert len(set(fired)) == 10


def test_fire_with_a_limit_looks_past_timers_that_only_forget_session_keys(
    store: PartitionStore,
) -> None:
    op = Config("session", gap=10).operator(store)
    for seq, key in enumerate("abc"):
        op.add(key, {"x": 1, "id": key}, 0, seq, NO_WATERMARK)
    assert len(op.fire(10)) == 3  # each key keeps fired_last until watermark 20
    op.add("d", {"x": 1, "id": "d"}, 15, 3, 10)  # fires at 25
    assert [r.key for r in op.fire(30, limit=2)] == ["d"]
    assert op.fire(30, limit=2) == []
    assert [key for key, _ in store.items()] == [
        b"Sd",
        b"T" + (35 + 2**63).to_bytes(8, "big") + b"\x01d",
        b"W",
    ]


def test_hopping_record_between_windows_is_neither_late_nor_counted(
    store: PartitionStore,
) -> None:
    op = Config("hopping", size=5, advance=10).operator(store)
    result = op.add("k", {"x": 1, "id": "a"}, 7, 0, 0)
    assert not result.late
    assert [key for key, _ in store.pending_changes()] == [b"W"]  # only the watermark moved
    assert op.fire(1000) == []


def test_hopping_record_counts_in_every_window_containing_it(store: PartitionStore) -> None:
    op = Config("hopping", size=30, advance=10, emit="update").operator(store)
    result = op.add("k", {"x": 2, "id": "a"}, 25, 0, 0)
    assert [(u.window_start, u.window_end) for u in result.updates] == [
        (0, 30),
        (10, 40),
        (20, 50),
    ]


def test_record_bridging_two_sessions_merges_them(store: PartitionStore) -> None:
    op = Config("session", gap=10, emit="update").operator(store)
    op.add("k", {"x": 1, "id": "a"}, 0, 0, NO_WATERMARK)
    op.add("k", {"x": 2, "id": "b"}, 20, 1, NO_WATERMARK)
    (update,) = op.add("k", {"x": 3, "id": "c"}, 10, 2, NO_WATERMARK).updates
    assert (update.window_start, update.window_end) == (0, 30)
    assert update.aggregates["n"] == 3
    assert update.aggregates["first_id"] == "a"
    assert update.aggregates["last_id"] == "b"
    (final,) = op.fire(30)
    assert (final.window_start, final.window_end, final.aggregates["total"]) == (0, 30, 6)


def test_due_session_counts_as_fired_even_before_fire_is_called(
    store: PartitionStore,
) -> None:
    op = Config("session", gap=10).operator(store)
    op.add("k", {"x": 1, "id": "a"}, 0, 0, 0)
    # The session [0, 10) is due at watermark 10; 15 would extend it, but it has
    # closed, so the record is late (and the result does not depend on fire timing).
    result = op.add("k", {"x": 1, "id": "b"}, 8, 1, 10)
    assert result.late
    assert "already closed" in (result.late_reason or "")
    (final,) = op.fire(10)
    assert final.aggregates["n"] == 1


def test_session_state_of_a_key_is_forgotten_once_fired_last_expires(
    store: PartitionStore,
) -> None:
    op = Config("session", gap=10, lateness=5).operator(store)
    op.add("k", {"x": 1, "id": "a"}, 0, 0, 0)
    assert len(op.fire(15)) == 1
    assert b"Sk" in dict(store.items())  # fired_last still decides lateness
    assert op.add("k", {"x": 1, "id": "b"}, 10, 1, 15).late
    op.fire(25)  # fired_last + 2*gap + lateness
    assert [key for key, _ in store.items()] == [b"W"]


def test_emit_update_reports_every_change_then_the_final_result_once(
    store: PartitionStore,
) -> None:
    op = Config("tumbling", size=10, emit="update").operator(store)
    counts = [
        op.add("k", {"x": i, "id": str(i)}, i, i, 0).updates[0].aggregates["n"] for i in range(3)
    ]
    assert counts == [1, 2, 3]
    (final,) = op.fire(10)
    assert final.final and final.aggregates["n"] == 3
    assert op.fire(20) == []


def test_window_state_lives_in_the_store_not_the_operator(store: PartitionStore) -> None:
    writer = Config("tumbling", size=10).operator(store)
    writer.add("k", {"x": 1, "id": "a"}, 5, 0, 0)
    store.commit(1)
    reader = Config("tumbling", size=10).operator(store)
    assert reader.watermark == 0
    (result,) = reader.fire(10)
    assert (result.key, result.aggregates["n"]) == ("k", 1)


def test_watermark_never_goes_back_and_is_stored(store: PartitionStore) -> None:
    op = Config("tumbling", size=10).operator(store)
    op.add("k", {"x": 1, "id": "a"}, 5, 0, 20)
    assert op.add("k", {"x": 1, "id": "b"}, 5, 1, 0).late  # watermark 0 < 20 is ignored
    assert op.watermark == 20
    store.commit(2)
    assert Config("tumbling", size=10).operator(store).watermark == 20


def test_rejected_record_changes_no_window(store: PartitionStore) -> None:
    op = Config("tumbling", size=10).operator(store)
    op.add("k", {"x": 1, "id": "a"}, 5, 0, 0)
    before = store.pending_changes()
    with pytest.raises(KeyError):
        op.add("k", {"id": "no x"}, 5, 1, 0)
    assert store.pending_changes() == before


def test_values_json_cannot_hold_survive_in_state(store: PartitionStore) -> None:
    spec = AggregateSpec({"first_blob": "first(blob)", "n": "count()"})
    op = WindowOperator("tumbling", size_ms=10, aggregates=spec, store=store)
    op.add("k", {"blob": b"\x00\xff"}, 1, 0, 0)
    store.commit(1)
    (result,) = op.fire(10)
    assert result.aggregates == {"first_blob": b"\x00\xff", "n": 1}


@pytest.mark.parametrize(
    ("kwargs", "message"),
    [
        ({"kind": "tumbling"}, "tumbling windows need size_ms"),
        ({"kind": "hopping", "size_ms": 10}, "hopping windows need advance_ms"),
        ({"kind": "session"}, "session windows need gap_ms"),
        ({"kind": "sliding", "size_ms": 10}, "unknown window kind"),
        ({"kind": "tumbling", "size_ms": 10, "allowed_lateness_ms": -1}, "allowed lateness"),
        ({"kind": "tumbling", "size_ms": 10, "emit": "sometimes"}, "emit must be"),
    ],
)
def test_invalid_configuration_is_rejected_with_a_message(
    store: PartitionStore, kwargs: dict[str, Any], message: str
) -> None:
    with pytest.raises(ValueError, match=message):
        WindowOperator(aggregates=SPEC, store=store, **kwargs)
