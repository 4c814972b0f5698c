"""The driver's stand-in for the broker: topics in memory, and a producer writing to them.

`MemoryProducer` is what the record collector produces through in the test driver. It
gives each record the next offset of its partition, as the broker would, and keeps the
records of the open transaction apart: `commit()` makes them visible on their topics,
`purge()` drops them (an abort or a crash).
"""

from __future__ import annotations

import zlib
from collections.abc import Callable, Iterable
from typing import Any, NamedTuple

TP = tuple[str, int]
Headers = list[tuple[str, bytes]]


class Entry(NamedTuple):
    """One record on a topic."""

    topic: str
    partition: int
    offset: int
    key: bytes | None
    value: bytes | None
    headers: Headers | None


class _Delivered:
    """The message of a delivery report."""

    __slots__ = ("_entry",)

    def __init__(self, entry: Entry) -> None:
        self._entry = entry

    def topic(self) -> str:
        return self._entry.topic

    def partition(self) -> int:
        return self._entry.partition

    def offset(self) -> int:
        return self._entry.offset


def partition_for(key: bytes | None, partitions: int) -> int:
    """librdkafka's default (`consistent_random`): CRC32 of the key; no key goes to partition 0."""
    if key is None or partitions == 1:
        return 0
    return zlib.crc32(key) % partitions


class Topics:
    """Every topic the driver reads or writes: its visible records and next offsets."""

    def __init__(self, partitions: int) -> None:
        self.partitions = partitions
        self.records: dict[str, list[Entry]] = {}
        """Visible (committed) records of each topic, in the order they became visible."""
        self._next: dict[TP, int] = {}

    def next_offset(self, topic: str, partition: int) -> int:
        tp = (topic, partition)
        offset = self._next.get(tp, 0)
        self._next[tp] = offset + 1
        return offset

    def extend(
        self,
        topic: str,
        records: Iterable[tuple[bytes | None, bytes | None]],
        headers: Headers | None,
        partition: int = -1,
    ) -> None:
        """Writes (key, value) records outside any transaction (what a test pipes)."""
        self._check(topic, partition)
        visible = self.records.setdefault(topic, [])
        append = visible.append
        offsets = self._next
        partitions = self.partitions
        for key, value in records:
            p = partition if partition >= 0 else partition_for(key, partitions)
            tp = (topic, p)
            offset = offsets.get(tp, 0)
            offsets[tp] = offset + 1
            append(Entry(topic, p, offset, key, value, headers))

    def _check(self, topic: str, partition: int) -> None:
        if partition >= self.partitions:
            raise ValueError(
                f"partition {partition} of {topic} does not exist "
                f"(the driver has {self.partitions} partitions per topic)"
            )

    def entry(
        self,
        topic: str,
        key: bytes | None,
        value: bytes | None,
        headers: Headers | None,
        partition: int = -1,
    ) -> Entry:
        if partition < 0:
            partition = partition_for(key, self.partitions)
        else:
            self._check(topic, partition)
        return Entry(topic, partition, self.next_offset(topic, partition), key, value, headers)

    def visible(self, topic: str) -> list[Entry]:
        return self.records.get(topic, [])


class MemoryProducer:
    """The collector's producer: records wait in the open transaction until `commit()`."""

    def __init__(self, topics: Topics, on_delivery: Callable[[Any, Any], None]) -> None:
        self._topics = topics
        self._on_delivery = on_delivery
        self.pending: list[Entry] = []
        self._reports: list[tuple[Callable[[Any, Any], None], Entry]] = []

    def produce(
        self,
        topic: str,
        value: bytes | None = None,
        key: bytes | None = None,
        headers: Any = None,
        partition: int = -1,
        on_delivery: Callable[[Any, Any], None] | None = None,
    ) -> None:
        entry = self._topics.entry(topic, key, value, headers or None, partition)
        self.pending.append(entry)
        self._reports.append((on_delivery or self._on_delivery, entry))

    def poll(self, timeout: float = 0) -> int:
        reports, self._reports = self._reports, []
        for callback, entry in reports:
            callback(None, _Delivered(entry))
        return len(reports)

    def flush(self, timeout: float = 0) -> int:
        self.poll()
        return 0

    def purge(self, *args: Any, **kwargs: Any) -> None:
        self.pending.clear()
        self._reports.clear()

    def commit(self) -> list[Entry]:
        """Makes the open transaction's records visible; returns them."""
        self.poll()
        committed, self.pending = self.pending, []
        records = self._topics.records
        for entry in committed:
            records.setdefault(entry.topic, []).append(entry)
        return committed
