"""The upstream half of a repartitioned topology: keyed records and watermark markers.

When the window stage groups by a key the source is not partitioned by, the stateless
stages write their keyed records to `<name>.repartition`, carrying event time and the
source record's position and bytes. Every source partition's watermark goes to every
repartition partition as a marker record: when it or the partition's idleness changes,
and as a keepalive, so window tasks downstream know how far each source has got.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from typing import Any

from streamline import headers as h
from streamline.runtime.collector import RecordCollector
from streamline.runtime.record import Record
from streamline.runtime.repartition_codec import RepartitionEncoder
from streamline.runtime.windowed import SourceWatermarks, encode_marker

__all__ = ["RepartitionEncoder", "Repartitioner"]

TP = tuple[str, int]


class Repartitioner:
    """Writes keyed records and the source partitions' watermark markers to the repartition topic."""

    def __init__(
        self,
        collector: RecordCollector[Any],
        source_watermarks: SourceWatermarks,
        topic: str,
        partitions: int,
        encoder: RepartitionEncoder,
        keepalive_ms: int,
        caught_up: Callable[[TP], bool],
        clock: Callable[[], float] = time.time,
    ) -> None:
        self._clock = clock
        self._collector = collector
        self._watermarks = source_watermarks
        self._topic = topic
        self._partitions = partitions
        self._encoder = encoder
        self._keepalive_ms = keepalive_ms
        self._caught_up = caught_up
        self._sent: dict[TP, tuple[int, bool]] = {}
        self._sent_at = 0

    def send(self, records: list[Record], wall_ms: int) -> None:
        """Writes keyed records, carrying event time and the source record's position and bytes."""
        collector = self._collector
        topic = self._topic
        encode = self._encoder.encode
        self._watermarks.observe_all(records, wall_ms)
        # The producer's own call, positional (topic, value, key): keyword arguments cost
        # librdkafka's binding more than the rest of the call.
        produce = collector.producer.produce
        for record in records:
            value, headers = encode(record)
            if headers is None:
                try:
                    produce(topic, value, record.out_key)
                    continue
                except BufferError:  # the local queue is full: the collector waits it out
                    pass
            collector.produce(topic, record.out_key, value, headers)

    def markers_due(self) -> bool:
        """Whether a source partition's watermark or idleness changed, or a keepalive is due."""
        if not self._watermarks.trackers:
            return False
        wall_ms = int(self._clock() * 1000)
        if wall_ms - self._sent_at >= self._keepalive_ms:
            return True
        return any(
            self._sent.get(tp) != (w, idle)
            for tp, w, idle in self._watermarks.markers(wall_ms, self._caught_up)
        )

    def write_markers(self) -> None:
        """Every assigned source partition's watermark, to every repartition partition."""
        if not self._watermarks.trackers:
            return
        produce = self._collector.produce
        wall_ms = int(self._clock() * 1000)
        self._sent_at = wall_ms
        for source, watermark, idle in self._watermarks.markers(wall_ms, self._caught_up):
            self._sent[source] = (watermark, idle)
            marker = [(h.WATERMARK_MARKER, encode_marker(source, watermark, idle))]
            for partition in range(self._partitions):
                produce(self._topic, None, None, marker, partition)
