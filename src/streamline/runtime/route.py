"""The route stage: every record to the sinks of its first matching branch, in one transaction.

A stateless topology with `- route:` has several outputs (`sinks:`). `Router.route`
evaluates the branches in order for each record that comes out of the stages: the first
whose `when` holds sends the record to each of its sinks (a fan-out writes it once to
each), else `otherwise` does; a record no branch takes is counted as dropped, reason
`unrouted`. Each output is encoded with its own sink's schema (a misfit is a `sink` dead
letter of that sink) and written through the loop's one producer, so all the outputs of
an input record commit, or abort, in the same transaction as its offset.
"""

from __future__ import annotations

import time
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any, Protocol

from streamline.errors import UsageError
from streamline.reliability.dead_letter import Failure
from streamline.runtime.record import Record
from streamline.runtime.sink_encode import Encode
from streamline.runtime.sinks.files import FileSinks, FileSinkWriter
from streamline.runtime.sinks.webhook import WebhookSender
from streamline.runtime.stages import Dropped, Evaluable, Failed
from streamline.serde.formats import SchemaRegistry, codec_for, subject_name
from streamline.topology.model import FileSink, Sink, WebhookSink, route_of

if TYPE_CHECKING:
    from streamline.observability.metrics import Metrics
    from streamline.runtime.collector import RecordCollector
    from streamline.runtime.transaction import Transaction
    from streamline.runtime.windowed import SourceWatermarks
    from streamline.serde import SchemaStore
    from streamline.serde.schema_store import Schema
    from streamline.topology import CheckedTopology

ROUTE = "route"  # error type of a record whose branch condition could not be evaluated
UNROUTED = "unrouted"  # drop reason of a record no branch took


class Writer(Protocol):
    """A sink that is not a topic (`FileSinkWriter`, `WebhookSender`): takes routed records,
    hands misfits to `failed` and returns how many it took."""

    def add(self, records: list[Record], failed: Failed) -> int: ...


@dataclass(frozen=True)
class RoutedSink:
    """One named output: a topic and the encoder of its schema, or a file or webhook writer."""

    name: str
    topic: str | None
    encode: Encode | None
    writer: Writer | None = None


class Router:
    """The branches of a route stage, `(condition or None for otherwise, sink names)`."""

    def __init__(
        self,
        name: str,
        branches: list[tuple[Evaluable | None, list[str]]],
        sinks: dict[str, RoutedSink],
    ) -> None:
        self.name = name
        self.branches = branches
        self.sinks = sinks

    def route(
        self, batch: list[Record], failed: Failed, dropped: Dropped
    ) -> dict[str, list[Record]]:
        """Sink name -> the records sent to it, in input order."""
        routed: dict[str, list[Record]] = {name: [] for name in self.sinks}
        unrouted = 0
        branches = self.branches
        for record in batch:
            value = record.value
            try:
                targets = next(
                    (
                        names
                        for cond, names in branches
                        if cond is None or cond.evaluate(value) is True
                    ),
                    None,
                )
            except Exception as exc:
                failed(record, Failure(ROUTE, f"a branch condition failed: {exc}", self.name))
                continue
            if targets is None:
                unrouted += 1
                continue
            for name in targets:
                routed[name].append(record)
        if unrouted:
            dropped(self.name, UNROUTED, unrouted)
        return routed


def route_batch(
    router: Router,
    records: list[Record],
    txn: Transaction,
    failures: list[tuple[Record, Failure]],
    metrics: Metrics,
    collector: RecordCollector[Any],
    source_watermarks: SourceWatermarks,
    header_topology: bytes,
) -> None:
    """Routes what came out of the stateless stages and writes each sink's outputs."""

    def failed(record: Record, failure: Failure) -> None:
        failures.append((record, failure))

    def dropped(stage: str, reason: str, n: int) -> None:
        metrics.dropped(stage, reason, n)
        txn.drops[reason] = txn.drops.get(reason, 0) + n

    started = time.perf_counter()
    routed = router.route(records, failed, dropped)
    metrics.observe_stage(router.name, time.perf_counter() - started, len(records))
    for name, batch in routed.items():
        if not batch:
            continue
        sink = router.sinks[name]
        if sink.writer is not None:  # files: at the commit (sinks/files.py); webhooks: now
            added = sink.writer.add(batch, failed)
            if isinstance(sink.writer, WebhookSender):
                sink.writer.report(metrics)
            source_watermarks.observe_all(batch)
            txn.outputs += added
            slot = f"{'files' if isinstance(sink.writer, FileSinkWriter) else 'webhook'}:{name}"
            txn.outputs_by_topic[slot] = txn.outputs_by_topic.get(slot, 0) + added
            continue
        assert sink.encode is not None and sink.topic is not None
        started = time.perf_counter()
        outputs = sink.encode.encode(batch, failed)
        metrics.observe_stage(sink.encode.name, time.perf_counter() - started, len(batch))
        source_watermarks.observe_all(r for r, _ in outputs)
        collector.send_outputs(outputs, sink.topic, header_topology, txn.event_times)
        txn.outputs += len(outputs)
        txn.outputs_by_topic[sink.topic] = txn.outputs_by_topic.get(sink.topic, 0) + len(outputs)


def build_router(
    name: str,
    branches: list[tuple[Evaluable | None, list[str]]],
    sinks: dict[str, tuple[str, Encode] | Writer],
) -> Router:
    """A Router over `sinks`: name -> (topic, encoder), or a file sink's writer."""
    return Router(
        name,
        branches,
        {
            n: RoutedSink(n, None, None, s) if not isinstance(s, tuple) else RoutedSink(n, *s)
            for n, s in sinks.items()
        },
    )


def sink_schema_id(
    path: str, sink: Sink, schema: Schema, registry: SchemaRegistry | None
) -> int | None:
    """The Schema Registry id a `confluent-avro` topic sink writes under (registered, or
    found, at start); None for the other formats."""
    if sink.format != "confluent-avro":
        return None
    if registry is None:
        raise UsageError(
            f"{path}: format confluent-avro needs a schema registry: give "
            "--schema-registry-url or STREAMLINE_SCHEMA_REGISTRY_URL"
        )
    subject = subject_name(sink.subject_strategy, sink.topic, schema.name)
    return registry.sink_schema_id(subject, schema, sink.auto_register)


def router_of(
    checked: CheckedTopology, store: SchemaStore, registry: SchemaRegistry | None = None
) -> tuple[Router | None, FileSinks | None]:
    """The router of a topology with `sinks:` and its file sinks' writers.

    With a route stage, its branches; with a single sink in `sinks:` that is a file sink,
    every record goes to it. None for a topology with one topic sink.
    """
    topology = checked.topology
    route = route_of(topology.stages)
    if route is not None:
        name = f"stages[{len(topology.stages) - 1}].route"
        branches = [
            (None, b.targets) if b.otherwise is not None else (b, b.targets) for b in route.route
        ]
        targets = route.sinks
    elif topology.sink is None and topology.sinks:
        name, targets = "sinks", list(topology.sinks)
        branches = [(None, targets)]
    else:
        return None, None
    compiled = {s.index: s.expressions for s in checked.stages}.get(len(topology.stages) - 1, {})
    conditions: list[tuple[Evaluable | None, list[str]]] = [
        (None if cond is None else compiled[f"route[{b}]"], names)
        for b, (cond, names) in enumerate(branches)
    ]
    sinks: dict[str, tuple[str, Encode] | Writer] = {}
    writers: list[FileSinkWriter] = []
    for target in targets:
        sink, schema = topology.outputs[target], checked.sink_schemas[target]
        if isinstance(sink, FileSink):
            writer = FileSinkWriter(target, sink.files, schema, check=bool(checked.warnings))
            sinks[target] = writer
            writers.append(writer)
        elif isinstance(sink, WebhookSink):
            sinks[target] = WebhookSender(
                target, sink.webhook, schema, check=bool(checked.warnings)
            )
        else:
            schema_id = sink_schema_id(f"sinks.{target}", sink, schema, registry)
            codec = codec_for(sink.format, store, schema, registry, schema_id)
            sinks[target] = (sink.topic, Encode(f"sinks.{target}", codec))
    files = None
    if writers:
        files = FileSinks(writers, min(w.spec.roll.every for w in writers))
    return build_router(name, conditions, sinks), files
