"""What the open transaction holds, applied to metrics only after it commits."""

from __future__ import annotations

import time
from dataclasses import dataclass, field
from itertools import groupby
from operator import attrgetter
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from streamline.runtime.record import Record

TP = tuple[str, int]
_partition_of = attrgetter("topic", "partition")


@dataclass
class Transaction:
    """The counts and offset ranges of the open transaction.

    The loop, the tasks and failure handling add to it; the commit cycle reads it at the
    commit (the lineage event, the metrics) and drops it on an abort.
    """

    started: float = field(default_factory=time.monotonic)
    records: int = 0
    outputs: int = 0
    event_times: list[int] = field(default_factory=list)
    late: int = 0
    retries: int = 0
    dead_letters: dict[tuple[str, str], int] = field(default_factory=dict)
    """Dead letters by (error type, stage)."""
    drops: dict[str, int] = field(default_factory=dict)
    """Records dropped on purpose, by reason (`filter`, `validation`, `map`)."""
    outputs_by_topic: dict[str, int] = field(default_factory=dict)
    """Outputs per sink topic, when a route writes to several (else all of `outputs` go to
    the one sink)."""
    consumed: dict[TP, int] = field(default_factory=dict)
    inputs: dict[TP, list[int]] = field(default_factory=dict)

    @property
    def describes_data(self) -> bool:
        """Whether it consumed or produced records, and so gets a lineage event.

        A transaction that only writes watermark markers (a repartitioned topology's
        keepalives and watermark changes while no record comes in) gets none: markers are
        control records that carry no data, and a keepalive every few seconds would fill
        `streamline.lineage` with empty events. The transaction that reads the markers
        downstream lists their offsets among its inputs.
        """
        return bool(self.inputs or self.outputs)

    def read(self, batch: list[Record], positions: dict[TP, int]) -> None:
        """The batch went through: its partitions' positions move past it, counted here."""
        self.records += len(batch)
        # Runs of one partition: the consumer hands out messages partition by partition.
        for tp, run in groupby(batch, _partition_of):
            records = list(run)
            first, last = records[0].offset, records[-1].offset
            positions[tp] = last + 1
            self.consumed[tp] = self.consumed.get(tp, 0) + len(records)
            span = self.inputs.get(tp)
            if span is None:
                self.inputs[tp] = [first, last]
            else:
                span[1] = last
