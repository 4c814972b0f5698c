"""What a batch moves: the transaction's consumed ranges and the source watermarks, per
partition run, equal to taking the records one at a time."""

from __future__ import annotations

from random import Random

from streamline.runtime.record import Record
from streamline.runtime.transaction import Transaction
from streamline.runtime.windowed import SourceWatermarks


def batch(runs: list[tuple[str, int, int, int]], rng: Random) -> list[Record]:
    """Records of (topic, partition, first offset, count) runs, with random event times (0: none)."""
    records = []
    for topic, partition, first, count in runs:
        for offset in range(first, first + count):
            r = Record(topic, partition, offset, None, b"", None)
            r.event_time = rng.choice([0, -7, rng.randrange(1, 10**6)])
            records.append(r)
    return records


RUNS = [("a", 0, 10, 5), ("a", 1, 0, 1), ("b", 0, 3, 4), ("a", 0, 17, 3), ("a", 1, 1, 2)]


def test_consumed_ranges_and_positions_follow_every_run() -> None:
    txn, positions = Transaction(), {}
    txn.read(batch(RUNS, Random(1)), positions)
    assert txn.records == 15
    assert txn.inputs == {("a", 0): [10, 19], ("a", 1): [0, 2], ("b", 0): [3, 6]}
    assert txn.consumed == {("a", 0): 8, ("a", 1): 3, ("b", 0): 4}
    assert positions == {("a", 0): 20, ("a", 1): 3, ("b", 0): 7}
    txn.read([], positions)
    assert txn.records == 15


def test_watermarks_and_freshness_are_those_of_one_record_at_a_time() -> None:
    for seed in range(20):
        records = batch(RUNS, Random(seed))
        batched, single = SourceWatermarks(50, 1000), SourceWatermarks(50, 1000)
        for w in (batched, single):
            for tp in (("a", 0), ("a", 1)):  # ("b", 0) is not assigned: ignored
                w.assign(tp, 0)
        batched.observe_all(records)
        batched.observe_consumed(records)
        for r in records:
            single.observe((r.topic, r.partition), r.event_time, 5)
            tp = (r.topic, r.partition)
            if r.event_time and tp in single.trackers:
                single.consumed[tp] = max(single.consumed.get(tp, r.event_time), r.event_time)
        for tp in (("a", 0), ("a", 1), ("b", 0)):
            assert batched.freshness(tp) == single.freshness(tp), (seed, tp)
            assert batched.consumed.get(tp) == single.consumed.get(tp), (seed, tp)
