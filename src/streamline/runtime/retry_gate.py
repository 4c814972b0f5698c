"""Holding a retry partition until its next record is due, and resuming it then.

A record on the retry topic carries `streamline.retry.not_before`. When the loop
reads one that is not due, that partition is paused and sought back to the record,
so it is read again, in order, once it is due; the records of the batch after it on
that partition are dropped (they are read again too).
"""

from __future__ import annotations

import time
from collections.abc import Callable, Collection
from typing import Any, Protocol

from streamline import headers as h
from streamline.runtime.record import Record

TP = tuple[str, int]


class PausingConsumer(Protocol):
    """What the gate uses of the consumer (`confluent_kafka.Consumer`, or a fake)."""

    def pause(self, partitions: list[Any]) -> None: ...
    def resume(self, partitions: list[Any]) -> None: ...
    def seek(self, partition: Any) -> None: ...


class RetryGate:
    """Pauses retry partitions whose next record is not due yet; resumes them when it is."""

    def __init__(
        self,
        consumer: PausingConsumer,
        topic: str,
        assignment: Collection[TP],
        topic_partition: Callable[..., Any],
        clock: Callable[[], float] = time.time,
    ) -> None:
        self._consumer = consumer
        self._topic = topic
        self._assignment = assignment
        self._topic_partition = topic_partition  # confluent_kafka.TopicPartition
        self._clock = clock
        self.paused: dict[TP, float] = {}
        """Held partition -> when its next record is due (epoch ms)."""

    def hold(self, batch: list[Record]) -> list[Record]:
        """The batch without retry records not due yet and what follows them on their partition."""
        topic = self._topic
        now = self._clock() * 1000
        held: set[int] = set()
        out = []
        for record in batch:
            if record.topic != topic:
                out.append(record)
                continue
            if record.partition in held:
                continue
            due = int(record.header(h.RETRY_NOT_BEFORE) or b"0")
            if due > now:
                held.add(record.partition)
                tp = self._topic_partition(topic, record.partition, record.offset)
                self._consumer.pause([tp])
                self._consumer.seek(tp)
                self.paused[(topic, record.partition)] = due
                continue
            out.append(record)
        return out

    def resume_due(self) -> None:
        """Resumes the held partitions whose record is due (those still assigned)."""
        if not self.paused:
            return
        now = self._clock() * 1000
        for tp, due in list(self.paused.items()):
            if due <= now:
                del self.paused[tp]
                if tp in self._assignment:
                    self._consumer.resume([self._topic_partition(*tp)])
