"""`streamline run`: checks the broker and topics, serves metrics, runs the loop until a signal."""

from __future__ import annotations

import logging
import signal
import threading
from types import FrameType

from streamline.errors import StreamlineError
from streamline.kafka.admin import (
    require_copartitioned,
    require_state_partitions,
    require_topics,
)
from streamline.kafka.connection import Connection
from streamline.kafka.registry import confluent_sinks, open_registry
from streamline.observability.http import MetricsServer
from streamline.observability.metrics import Metrics
from streamline.runtime.calls import circuits
from streamline.runtime.internal_topics import create_internal_topics
from streamline.runtime.pipeline import Pipeline
from streamline.runtime.processor import Processor, RunOptions
from streamline.serde import SchemaStore
from streamline.topology import CheckedTopology
from streamline.topology.model import Topology

log = logging.getLogger("streamline.runtime")


def run_topology(
    checked: CheckedTopology,
    store: SchemaStore,
    connection: Connection,
    options: RunOptions,
    metrics_host: str = "127.0.0.1",
    metrics_port: int = 9400,
    stop: threading.Event | None = None,
    schema_registry_url: str | None = None,
    create_topics: bool = True,
) -> None:
    """Runs until SIGTERM/SIGINT (or `stop`), then commits or aborts and closes the consumer cleanly.

    With `create_topics`, missing internal topics are created first (`internal_topics.py`).
    """
    topology = checked.topology
    connection.check_reachable()
    metrics = Metrics(topology.name)
    registry = open_registry(schema_registry_url, required=uses_registry(topology))
    pipeline = Pipeline.from_checked(checked, store, metrics, options.state_dir, registry)
    if create_topics:
        create_internal_topics(connection, pipeline.resources)
    counts = require_topics(connection, [*pipeline.source_topics, *pipeline.owned_topics])
    tables = pipeline.resources.table_topics
    if tables or pipeline.resources.joined_streams:
        if tables:
            counts = {**counts, **require_topics(connection, list(tables))}
        for problem in pipeline.resources.copartitioning_problems(counts):
            raise StreamlineError(problem)
    if pipeline.windowed:
        require_state_partitions(counts, pipeline.window_input_topic, pipeline.changelog_topic)
        if pipeline.retrying and not pipeline.repartition:
            require_copartitioned(counts, pipeline.window_input_topic, topology.retry_topic)
    metrics.set_info(topology.version, checked.fingerprint)
    if registry is not None:
        registry.on_stall = metrics.schema_registry.stall
    processor = Processor(pipeline, connection, options, metrics)
    server = MetricsServer(
        metrics,
        host=metrics_host,
        port=metrics_port,
        ready=lambda: processor.ready,
        healthy=processor.healthy,
        details=lambda: {"circuits": circuits(pipeline.stages)},
    )
    server.start()
    stop = stop or threading.Event()
    if registry is not None:
        registry.stopping = stop.is_set
    previous = _install_signal_handlers(stop)
    log.info(
        "running %s@%s (%s) as instance %s; metrics on http://%s:%d/metrics",
        topology.name,
        topology.version,
        checked.fingerprint[:12],
        options.instance_id,
        metrics_host,
        server.port,
    )
    try:
        processor.run(stop)
    finally:
        server.stop()
        _restore_signal_handlers(previous)
        if processor.bound is not None:
            processor.bound.close()
    log.info("stopped cleanly")
    _bounded_outcome(processor)


def _bounded_outcome(processor: Processor) -> None:
    """A bounded run that stopped before its work was done fails (exit 1), saying why."""
    bound = processor.bound
    if bound is None:
        return
    if bound.failure is not None:
        raise StreamlineError(bound.failure)
    if not bound.done:
        raise StreamlineError("stopped by a signal before the run caught up")


def uses_registry(topology: Topology) -> bool:
    """Whether a source, a table or a topic sink is in the `confluent-avro` format."""
    return (
        bool(confluent_sinks(topology))
        or any("confluent-avro" in s.formats for s in topology.sources)
        or any("confluent-avro" in t.formats for t in topology.tables)
    )


def _install_signal_handlers(stop: threading.Event) -> dict[int, object]:
    if threading.current_thread() is not threading.main_thread():
        return {}

    def handle(signum: int, _frame: FrameType | None) -> None:
        log.info("received %s: finishing the open transaction", signal.Signals(signum).name)
        stop.set()

    previous: dict[int, object] = {
        sig: signal.signal(sig, handle) for sig in (signal.SIGTERM, signal.SIGINT)
    }
    # The command line restores SIGPIPE's default (quit quietly when stdout is a closed pipe),
    # which would kill a running instance at its first write to a socket whose peer left: a
    # scrape or probe that timed out while the process was paused or busy. Ignored, such a
    # write fails with EPIPE, and the HTTP server or Kafka client handles it.
    previous[signal.SIGPIPE] = signal.signal(signal.SIGPIPE, signal.SIG_IGN)
    return previous


def _restore_signal_handlers(previous: dict[int, object]) -> None:
    for sig, handler in previous.items():
        signal.signal(sig, handler)  # type: ignore[arg-type]
