"""The test driver's tables: rows written to a table's topic, read by the table at once."""

from __future__ import annotations

from collections.abc import Iterable
from typing import Any

from streamline.reliability.dead_letter import Failure
from streamline.runtime.record import Record
from streamline.runtime.table_operator import TablePartition, TableState
from streamline.testing.memory import partition_for

Row = dict[str, Any]


class TableFeeder:
    """Every partition of every table of a topology (the driver reads their topics whole)."""

    def __init__(self, topology: str, state: TableState, partitions: int) -> None:
        self.topology = topology
        self.state = state
        self.partitions = partitions
        self._offsets: dict[tuple[str, int], int] = {}
        for settings in state.settings.values():
            for p in range(partitions):
                state.of(settings.name)[p] = TablePartition(settings, p)

    def pipe(
        self,
        table: str,
        rows: Iterable[Row | tuple[str | bytes | None, Row | None]] | Row,
        *,
        timestamp: int = 0,
    ) -> None:
        """Writes rows to a table's topic, which the table reads at once.

        A row's key is its `key` field (else give `(key, row)`); `(key, None)` is a
        tombstone. `timestamp` is the record timestamp: a versioned table's `valid_from`
        without its own field. A row that does not fit the table's schema raises
        `EncodeError`; one the table cannot read raises ValueError.
        """
        settings = self.state.settings.get(table)
        if settings is None:
            names = ", ".join(self.state.settings) or "none"
            raise ValueError(f"{table!r} is not a table of {self.topology} (tables: {names})")
        failures: list[tuple[Record, Failure]] = []
        for item in [rows] if isinstance(rows, dict) else rows:
            key, value = item if isinstance(item, tuple) else (None, item)
            if key is None and value is not None and settings.key_field is not None:
                key = str(value[settings.key_field])
            k = key.encode() if isinstance(key, str) else key
            p = partition_for(k, self.partitions)
            offset = self._offsets.get((settings.topic, p), 0)
            self._offsets[(settings.topic, p)] = offset + 1
            raw = settings.codec.encode(value, check=False) if value is not None else None
            record = Record(settings.topic, p, offset, k, raw, None)
            record.event_time = timestamp
            self.state.of(table)[p].apply([record], failures)
        for _record, failure in failures:
            raise ValueError(f"{failure.error_type}: {failure.message}")

    def close(self) -> None:
        for partitions in self.state.partitions.values():
            for part in partitions.values():
                part.close()
