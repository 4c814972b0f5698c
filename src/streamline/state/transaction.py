"""The uncommitted state changes of one partition's current transaction.

Under exactly-once, state changes of a transaction must not reach RocksDB
before the Kafka transaction that carries their changelog records has
committed (docs/architecture.md, "The exactly-once commit protocol"). Until then they
live here, in memory: a ``TransactionOverlay`` is what ``PartitionStore``
reads through and what it applies, in one write batch, on commit, or drops on
rollback.
"""

from __future__ import annotations

import heapq
from bisect import bisect_left
from collections.abc import Iterable


class TransactionOverlay:
    """Pending writes: key to new value, or to ``None`` for a deletion (a tombstone).

    ``changes`` keeps each key once, in the order of its last write, which is
    the order the runtime produces changelog records in. Ordered iteration
    (``keys_between``) is served by a sorted index of the keys, kept as a few
    sorted runs that are merged like the levels of an LSM tree: adding a key
    is amortised O(log n) and no read has to sort the whole overlay, even
    when reads and writes alternate record by record.
    """

    __slots__ = ("_new", "_runs", "changes")

    def __init__(self) -> None:
        self.changes: dict[bytes, bytes | None] = {}
        """Key to pending value (``None``: deleted). Read it; write through ``put``/``delete``."""
        self._runs: list[list[bytes]] = []
        self._new: list[bytes] = []

    def __len__(self) -> int:
        return len(self.changes)

    def put(self, key: bytes, value: bytes) -> None:
        """Record that ``key`` now holds ``value``."""
        self._write(key, value)

    def delete(self, key: bytes) -> None:
        """Record that ``key`` is deleted (a tombstone hides any committed value)."""
        self._write(key, None)

    def _write(self, key: bytes, value: bytes | None) -> None:
        changes = self.changes
        if key in changes:
            # Re-inserting moves the key to the end: changes stay in last-write order.
            del changes[key]
        else:
            self._new.append(key)
        changes[key] = value

    def clear(self) -> None:
        """Forget every pending change (after commit or rollback)."""
        self.changes = {}
        self._runs = []
        self._new = []

    def keys_between(self, start: bytes | None, end: bytes | None) -> Iterable[bytes]:
        """The pending keys (tombstones included) in ``[start, end)``, in byte order.

        ``None`` bounds are open. The result is a snapshot: writes made while
        iterating over it are not part of it.
        """
        self._index_new_keys()
        slices: list[list[bytes]] = []
        for run in self._runs:
            lo = 0 if start is None else bisect_left(run, start)
            hi = len(run) if end is None else bisect_left(run, end)
            if lo < hi:
                slices.append(run[lo:hi])
        if not slices:
            return ()
        if len(slices) == 1:
            return slices[0]
        return heapq.merge(*slices)

    def _index_new_keys(self) -> None:
        if not self._new:
            return
        run = self._new
        run.sort()
        self._new = []
        runs = self._runs
        runs.append(run)
        # Merge runs of similar size: O(log n) runs, each key re-sorted O(log n) times.
        while len(runs) > 1 and len(runs[-2]) <= 2 * len(runs[-1]):
            last = runs.pop()
            merged = runs.pop() + last
            merged.sort()  # two sorted runs: timsort merges them in linear time
            runs.append(merged)
