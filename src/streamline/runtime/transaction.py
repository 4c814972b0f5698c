"""What the open transaction holds, applied to metrics only after it commits."""

from __future__ import annotations

import time
from dataclasses import dataclass, field

TP = tuple[str, int]


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
    consumed: dict[TP, int] = field(default_factory=dict)
    inputs: dict[TP, list[int]] = field(default_factory=dict)
