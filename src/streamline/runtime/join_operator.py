"""The stream-table join stage: adds a table row's fields to each record.

A record is looked up in the table partition of its own number (the stream and the
table are co-partitioned; a record back from the retry topic uses its source's
partition), by the string form of its `on` field. A versioned table answers as of the
record's event time, a plain one with its latest row. A record without a match is a
`join` dead letter, a counted drop (`join_miss`) or goes on with the fields null,
as `missing` says; every miss is counted in `streamline_join_misses_total`.
"""

from __future__ import annotations

from typing import Any

from streamline.observability.metrics import Metrics
from streamline.reliability.dead_letter import Failure
from streamline.runtime.record import Record
from streamline.runtime.stages import Dropped, Failed
from streamline.runtime.table_operator import TableState
from streamline.topology.model import JoinSpec

JOIN = "join"
"""The error type of a record a join found no row for (`missing: dead_letter`)."""


class Join:
    """One join stage of the stateless chain (a `stages.Stage`)."""

    def __init__(
        self, name: str, spec: JoinSpec, tables: TableState, retry_topic: str, metrics: Metrics
    ) -> None:
        assert spec.table is not None
        self.name = name
        self.on = spec.left_on
        self.fields = list(spec.fields.items())
        self.missing = spec.missing
        self.table = spec.table
        self.tables = tables
        self.partitions = tables.of(spec.table)
        self.global_ = tables.settings[spec.table].global_
        self.retry_topic = retry_topic
        self.metrics = metrics

    def process(self, batch: list[Record], failed: Failed, dropped: Dropped) -> list[Record]:
        table_failures: list[tuple[Record, Failure]] = []
        self.tables.sync(table_failures)  # rows written before the batch was read are in
        for record, failure in table_failures:
            failed(record, failure)
        out: list[Record] = []
        on, fields, partitions = self.on, self.fields, self.partitions
        retry_topic = self.retry_topic
        misses = 0
        for record in batch:
            value = record.value
            partition = record.partition
            if record.topic == retry_topic:
                partition = record.origin()[1]
            key = value.get(on)
            if self.global_:
                table, row = self._global_lookup(key, record.event_time)
            else:
                table = partitions.get(partition)
                row = (
                    table.lookup(str(key), record.event_time)
                    if table is not None and key is not None
                    else None
                )
            if row is not None:
                for new, table_field in fields:
                    value[new] = row.get(table_field)
                out.append(record)
                continue
            misses += 1
            if self.missing == "null":
                for new, _ in fields:
                    value[new] = None
                out.append(record)
            elif self.missing == "dead_letter":
                why = (
                    f"partition {partition} of table {self.table} is not on this instance"
                    if table is None
                    else f"no row in table {self.table} for {on} = {key!r}"
                )
                failed(record, Failure(JOIN, why, self.name))
        if misses:
            self.metrics.tables.missed(self.name, misses)
            if self.missing == "drop":
                dropped(self.name, "join_miss", misses)
        return out

    def _global_lookup(self, key: object, as_of: int) -> tuple[object, dict[str, Any] | None]:
        """A global table's row of `key`: in whichever of its partitions holds the key."""
        if key is None:
            return self.partitions, None
        text = str(key)
        for table in self.partitions.values():
            row = table.lookup(text, as_of)
            if row is not None:
                return table, row
        return self.partitions, None
