"""One batch through the topology: the stateless stages, then the tasks of its stateful input.

`process_batch` is the part of the loop's step that talks to no client: the processing
loop (`processor.py`) calls it inside the open transaction with the consumer's batch,
and the test driver (`streamline.testing`) with the records a test pipes, so both run
exactly the same stages, operators and writes.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any, Protocol

from streamline.observability.metrics import Metrics
from streamline.reliability.dead_letter import Failure
from streamline.runtime.collector import RecordCollector
from streamline.runtime.pipeline import Pipeline
from streamline.runtime.record import Record
from streamline.runtime.repartition import Repartitioner
from streamline.runtime.route import route_batch
from streamline.runtime.transaction import Transaction
from streamline.runtime.windowed import SourceWatermarks

Failures = list[tuple[Record, Failure]]


class Tasks(Protocol):
    """The tasks of the stateful input (`TaskManager`, or the test driver's)."""

    def process(
        self, records: list[Record], wall_ms: int, txn: Transaction, failures: Failures
    ) -> None: ...
    def punctuate(
        self, wall_ms: int, open_txn: Callable[[], Transaction], failures: Failures
    ) -> None: ...


def process_batch(
    pipeline: Pipeline,
    batch: list[Record],
    txn: Transaction,
    failures: Failures,
    metrics: Metrics,
    collector: RecordCollector[Any],
    source_watermarks: SourceWatermarks,
    repartitioner: Repartitioner | None,
    tasks: Tasks,
    open_txn: Callable[[], Transaction],
    wall_clock: Callable[[], int],
) -> None:
    """Runs the batch through the stateless stages, then its stateful input through the tasks.

    Failed records are appended to `failures`; the caller sends them.
    """
    if pipeline.router is not None:
        records = pipeline.run_stages(batch, failures, metrics, txn.drops)
        route_batch(
            pipeline.router, records, txn, failures, metrics, collector, source_watermarks,
            pipeline.header_topology,
        )  # fmt: skip
        return
    if not pipeline.windowed:
        outputs = pipeline.process(batch, failures, metrics, txn.drops)
        source_watermarks.observe_all(r for r, _ in outputs)
        if len(outputs) != len(batch):  # the stages dropped or failed some: they count too
            source_watermarks.observe_consumed(batch)
        collector.send_outputs(
            outputs, pipeline.sink_topic, pipeline.header_topology, txn.event_times
        )
        txn.outputs += len(outputs)
        return
    if repartitioner is not None:
        topic = pipeline.window_input_topic
        sources = [r for r in batch if r.topic != topic]
        keyed = pipeline.run_stages(sources, failures, metrics, txn.drops)
        wall_ms = wall_clock()
        repartitioner.send(keyed, wall_ms)
        if len(keyed) != len(sources):
            source_watermarks.observe_consumed(sources)
        stateful = [r for r in batch if r.topic == topic]
    else:
        stateful = pipeline.run_stateful_input(batch, failures, metrics, txn.drops)
        wall_ms = wall_clock()
        source_watermarks.observe_all(stateful)
        if len(stateful) != len(batch):
            source_watermarks.observe_consumed(batch)
    tasks.process(stateful, wall_ms, txn, failures)
    tasks.punctuate(wall_clock(), open_txn, failures)
