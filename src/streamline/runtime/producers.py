"""The loop's transactional producer, whose first `init_transactions` overlaps the group join.

After a crash, the restarted instance's `init_transactions` fences its predecessor and
waits for the broker to abort the transaction that one left open (0.05-0.6 s measured):
time the restart spent before it even joined the group. Here the first producer's
`init_transactions` runs in a thread while the consumer joins and the first assignment
is restored, and the loop waits for it at the end of that assignment, before any
transaction begins.
"""

from __future__ import annotations

import logging
import threading
from collections.abc import Callable
from typing import Any, Protocol

from confluent_kafka import KafkaException, Producer

from streamline.kafka.connection import Connection
from streamline.runtime.collector import RecordCollector
from streamline.runtime.pipeline import Pipeline

log = logging.getLogger("streamline.runtime")


class _Options(Protocol):
    """What the producer takes of `RunOptions`."""

    instance_id: str
    transaction_timeout_ms: int


class TransactionalProducers:
    """Makes the loop's producer (transactional with `exactly_once`): the collector's factory.

    The first producer's `init_transactions` runs in a thread, while the consumer joins
    the group and the first assignment is restored: after a crash, the restarted
    instance's `init_transactions` fences its predecessor and waits for the broker to
    abort the transaction it left open, a few hundred milliseconds the restart no longer
    waits for one after the other. `wait()`, at the end of every assignment and so before
    any transaction begins, returns once that producer is ready, or raises what
    `init_transactions` raised. A producer made again (after a fatal error) is ready
    when returned.
    """

    def __init__(self, pipeline: Pipeline, connection: Connection, options: _Options) -> None:
        self._pipeline = pipeline
        self._instance_id = options.instance_id
        self._connection = connection
        self._transaction_timeout_ms = options.transaction_timeout_ms
        self._made = 0
        self._init: threading.Thread | None = None
        self._error: BaseException | None = None
        self._failed = False

    def __call__(self, on_delivery: Callable[[Any, Any], None]) -> Producer:
        pipeline = self._pipeline
        conf: dict[str, Any] = {
            "on_delivery": on_delivery,
            "client.id": f"{pipeline.group_id}-{self._instance_id}",
            "enable.idempotence": True,
            "linger.ms": 5,
            "partitioner": "murmur2_random",
            "compression.type": "lz4",
            "queue.buffering.max.messages": 500000,
        }
        if pipeline.exactly_once:
            conf["transactional.id"] = pipeline.transactional_id(self._instance_id)
            # a file sink's roll is the commit interval: the transaction must outlive it
            conf["transaction.timeout.ms"] = max(
                self._transaction_timeout_ms, 2 * pipeline.commit_interval_ms
            )
        producer = Producer(self._connection.config(**conf, log_level=3), logger=log)
        self._made += 1
        if pipeline.exactly_once:
            if self._made == 1:
                self._init = threading.Thread(
                    target=self._init_in_thread, args=(producer, conf["transactional.id"]),
                    name="init-transactions", daemon=True,
                )  # fmt: skip
                self._init.start()
            else:
                self._init_transactions(producer, conf["transactional.id"])
        return producer

    def wait(self) -> None:
        """Returns once the first producer's transactions are initialised; raises its error."""
        thread, self._init = self._init, None
        if thread is not None:
            thread.join()
        error, self._error = self._error, None
        if error is not None:
            self._failed = True
            raise error

    def flush(self, collector: RecordCollector[Producer], timeout: float) -> None:
        """Flushes the loop's producer as the run ends, unless its `init_transactions` failed
        or it was fenced: flushing a producer in such a fatal state raises, hiding the error
        that stops the run (a producer fenced at its commit raises "Failed to end
        transaction" from every later flush, where one fenced at a write does not).
        """
        if self._failed:
            return
        try:
            collector.flush(timeout)
        except KafkaException as exc:
            if not exc.args or not exc.args[0].fatal():
                raise
            log.debug("producer not flushed: %s", exc.args[0].str())

    def _init_in_thread(self, producer: Producer, transactional_id: str) -> None:
        try:
            self._init_transactions(producer, transactional_id)
        except BaseException as exc:  # raised again by wait(), in the loop's thread
            self._error = exc

    def _init_transactions(self, producer: Producer, transactional_id: str) -> None:
        try:
            producer.init_transactions(60)
        except KafkaException as exc:
            denied = self._connection.access_error(exc.args[0], transactional_id=transactional_id)
            if denied is None:
                raise
            raise denied from None
