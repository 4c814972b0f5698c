"""Where a record that failed goes: the retry topic, the dead-letter topic or the late topic."""

from __future__ import annotations

import time
from collections.abc import Callable
from dataclasses import replace
from typing import Any

from streamline import headers as h
from streamline.reliability.dead_letter import CIRCUIT_OPEN, LATE, MAP, Failure
from streamline.runtime.collector import RecordCollector
from streamline.runtime.pipeline import Pipeline
from streamline.runtime.record import Record
from streamline.runtime.transaction import Transaction


class FailedRecords:
    """Sends failed records through the collector and counts them in the open transaction.

    A map failure goes to the retry topic, with a not-before time, until its passes
    through it run out; every other failure, and a map failure out of passes, becomes a
    dead letter. A record too late for its window goes to the late topic.
    """

    def __init__(
        self,
        collector: RecordCollector[Any],
        pipeline: Pipeline,
        clock: Callable[[], float] = time.time,
    ) -> None:
        topology = pipeline.topology
        self._clock = clock
        self._collector = collector
        self._retrying = pipeline.retrying
        self._policy = pipeline.retry_policy
        self._passes = topology.retry.topic_attempts
        self._dead_letter_topic = topology.dead_letter_topic
        self._retry_topic = topology.retry_topic
        self._late_topic = topology.late_topic
        # Windows kept per source partition: a retry goes to the same partition number,
        # which the range assignment gives to the instance holding that partition's state.
        self._colocated = pipeline.windowed and not pipeline.repartition

    def send(self, failures: list[tuple[Record, Failure]], txn: Transaction) -> None:
        """Retries or dead-letters every failure of a batch, in order."""
        for record, failure in failures:
            if failure.error_type == CIRCUIT_OPEN:
                self._wait_for_circuit(record, failure, txn)
            elif failure.error_type == MAP and self._retrying:
                self._retry_or_dead_letter(record, failure, txn)
            else:
                self.dead_letter(record, failure, txn)

    def dead_letter(self, record: Record, failure: Failure, txn: Transaction) -> None:
        self._collector.send_failed(record, failure, self._dead_letter_topic)
        slot = (failure.error_type, failure.stage)
        txn.dead_letters[slot] = txn.dead_letters.get(slot, 0) + 1

    def late(
        self, record: Record, reason: str, watermark: int, stage: str, txn: Transaction
    ) -> None:
        failure = Failure(LATE, reason, stage)
        extra = [(h.WATERMARK, str(watermark).encode())]
        self._collector.send_failed(record, failure, self._late_topic, extra)
        txn.late += 1

    def _wait_for_circuit(self, record: Record, failure: Failure, txn: Transaction) -> None:
        """To the retry topic until the circuit may close; not a pass (it was not called)."""
        passes = record.header(h.RETRY_TOPIC_ATTEMPTS) or b"0"
        total = int(record.header(h.ATTEMPTS) or b"0") + failure.attempts
        not_before = int(self._clock() * 1000 + failure.retry_after_ms)
        extra = [(h.RETRY_TOPIC_ATTEMPTS, passes), (h.RETRY_NOT_BEFORE, str(not_before).encode())]
        partition = record.origin()[1] if self._colocated else -1
        counted = replace(failure, attempts=total)
        self._collector.send_failed(record, counted, self._retry_topic, extra, partition)
        txn.retries += 1

    def _retry_or_dead_letter(self, record: Record, failure: Failure, txn: Transaction) -> None:
        passes = int(record.header(h.RETRY_TOPIC_ATTEMPTS) or b"0")
        total = int(record.header(h.ATTEMPTS) or b"0") + failure.attempts
        counted = replace(failure, attempts=total)
        if passes >= self._passes:
            self.dead_letter(record, counted, txn)
            return
        not_before = int(self._clock() * 1000 + self._policy.backoff_ms(total))  # backoff grows
        extra = [
            (h.RETRY_TOPIC_ATTEMPTS, str(passes + 1).encode()),
            (h.RETRY_NOT_BEFORE, str(not_before).encode()),
        ]
        partition = record.origin()[1] if self._colocated else -1
        self._collector.send_failed(record, counted, self._retry_topic, extra, partition)
        txn.retries += 1
