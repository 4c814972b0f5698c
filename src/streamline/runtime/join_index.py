"""The records a stream-stream join holds, indexed in memory (pure: no Kafka, no store).

`JoinBuffers` (`runtime/stream_join.py`) keeps every buffered record here as well as in
its store, so that matching a record is a lookup in a short sorted list instead of a
range scan of RocksDB, and expiry pops a heap instead of scanning an index in the store.
It holds exactly the records the store holds (rebuilt from the store after a restore or
an abort): those of the last `within + allowed_lateness` of event time behind the join's
watermark, plus the ones ahead of it.

Each record is identified by its side, its join key, its event time and its position (the
bytes naming the input record it came from); an item of any type rides along.
"""

from __future__ import annotations

import heapq
from bisect import bisect_left
from typing import Generic, TypeVar

T = TypeVar("T")


class _KeyRecords(Generic[T]):
    """One side's records of one key, in (time, position) order."""

    __slots__ = ("items", "order")

    def __init__(self) -> None:
        self.order: list[tuple[int, bytes]] = []
        self.items: list[T] = []


class JoinIndex(Generic[T]):
    """Both sides' records by (side, key) in event-time order, and all of them by time."""

    __slots__ = ("_by_key", "_by_time")

    def __init__(self) -> None:
        self._by_key: dict[tuple[str, str], _KeyRecords[T]] = {}
        self._by_time: list[tuple[int, str, bytes, str, _KeyRecords[T]]] = []
        """A heap of (time, side, position, key, the key's records): expiry order. No two
        entries have equal (time, side, position, key), so the records are never compared."""

    def __len__(self) -> int:
        return len(self._by_time)

    def add(self, side: str, key: str, time: int, position: bytes, item: T) -> None:
        """Holds a record; one already held at the same side, key, time and position is
        replaced (its item only)."""
        records = self._by_key.get((side, key))
        if records is None:
            records = self._by_key[side, key] = _KeyRecords()
        entry = (time, position)
        order = records.order
        if not order or order[-1] < entry:  # the usual case: later than all held
            order.append(entry)
            records.items.append(item)
        else:
            i = bisect_left(order, entry)
            if i < len(order) and order[i] == entry:
                records.items[i] = item
                return
            order.insert(i, entry)
            records.items.insert(i, item)
        heapq.heappush(self._by_time, (time, side, position, key, records))

    def between(self, side: str, key: str, low: int, high: int) -> list[T]:
        """The items of one side and key with `low <= time <= high`, in (time, position)
        order."""
        records = self._by_key.get((side, key))
        if records is None:
            return []
        order = records.order
        if len(order) == 1:  # the usual case
            return records.items[:] if low <= order[0][0] <= high else []
        start = bisect_left(order, (low,))
        end = bisect_left(order, (high + 1,), start)
        return records.items[start:end]

    def expire(self, bound: int) -> list[tuple[str, str, T]]:
        """Removes the records with a time before `bound`: (side, key, item) of each, in
        (time, side, position, key) order."""
        heap = self._by_time
        by_key = self._by_key
        gone: list[tuple[str, str, T]] = []
        while heap and heap[0][0] < bound:
            time, side, position, key, records = heapq.heappop(heap)
            order = records.order
            entry = (time, position)
            i = 0 if order[0] == entry else bisect_left(order, entry)
            del order[i]
            gone.append((side, key, records.items.pop(i)))
            if not order:
                del by_key[side, key]
        return gone
