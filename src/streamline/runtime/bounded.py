"""`run --until-caught-up`: when a bounded run (a backfill, a batch job) is done.

At start it takes the end offsets of the source partitions. The run is done once the
group has committed at least those offsets on every source partition, has committed the
read-back topics (retry, repartition) to their current end, and, for a windowed
topology, every window that can close has closed: the source partitions have been quiet
for the watermark's `idle_timeout` since the group caught up (so the watermark reached
what the input allows, as when input stops), a punctuation ran after that, and its
transaction is committed. The loop asks `reached` after each step and stops when it
says so; `failure` says why a run gave up (`--max-wait` passed first).
"""

from __future__ import annotations

import logging
import time
from collections.abc import Callable

from confluent_kafka import Consumer, TopicPartition

from streamline.kafka.admin import committed_offsets, topic_end_offsets
from streamline.kafka.connection import Connection
from streamline.kafka.scan import holds_a_record, scan_consumer
from streamline.runtime.pipeline import Pipeline

log = logging.getLogger("streamline.runtime")

CHECK_EVERY_S = 0.5

TP = tuple[str, int]


class UntilCaughtUp:
    """Decides when a bounded run has done its work, or has waited too long."""

    def __init__(
        self,
        pipeline: Pipeline,
        connection: Connection,
        max_wait_s: float | None,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self.connection = connection
        self.group = pipeline.group_id
        self.max_wait_s = max_wait_s
        self.clock = clock
        self.windowed = pipeline.windowed
        topology = pipeline.topology
        self.quiet_s = topology.source.watermark.idle_timeout / 1000 if self.windowed else 0.0
        self.read_back = [topology.retry_topic] if pipeline.retrying else []
        if pipeline.repartition:
            self.read_back.append(pipeline.window_input_topic)
        self.consumer = Consumer(
            connection.config(**{"group.id": f"{self.group}.until-caught-up"}, log_level=0)
        )
        # a topic written in transactions ends with a commit marker: the group commits
        # up to its last record, one short of the end offset, and that is caught up
        self.probe = scan_consumer(connection, f"{self.group}.until-caught-up")
        self.targets = topic_end_offsets(self.consumer, list(pipeline.source_topics), 15)
        self.started = clock()
        self._next_check = 0.0
        self._caught_up_at: float | None = None
        self._armed = False
        self.failure: str | None = None
        self.done = False
        log.info(
            "until caught up: stopping once offsets %s are committed%s",
            ", ".join(f"{t}/{p}={o}" for (t, p), o in self.targets.items()),
            f" (at most {max_wait_s:.0f} s)" if max_wait_s is not None else "",
        )

    def reached(self, transaction_open: bool) -> bool:
        """Whether the run should stop: its work is done, or `max_wait_s` has passed."""
        now = self.clock()
        if now < self._next_check:
            return False
        self._next_check = now + CHECK_EVERY_S
        behind = self._behind(self.targets)
        if behind:
            self._caught_up_at, self._armed = None, False
            return self._gave_up(now, behind)
        if self._caught_up_at is None:
            self._caught_up_at = now
            log.info("until caught up: the group has committed the end offsets seen at start")
        if now - self._caught_up_at < self.quiet_s:
            return self._gave_up(now, [])
        if not self._armed:  # a punctuation runs after this point before the run may end
            self._armed = True
            return False
        if transaction_open or self._read_back_behind():
            return self._gave_up(now, [])
        log.info("until caught up: done after %.1f s", now - self.started)
        self.done = True
        return True

    def _behind(self, targets: dict[TP, int]) -> list[str]:
        committed = committed_offsets(
            self.connection, self.group, [TopicPartition(t, p) for t, p in targets]
        )
        behind = []
        for tp, target in targets.items():
            found = committed.get(tp)
            offset = found.offset if found is not None and found.offset >= 0 else 0
            if offset < target and holds_a_record(self.probe, tp, offset, target, self.clock):
                behind.append(f"{tp[0]}/{tp[1]} at {offset} of {target}")
        return behind

    def _read_back_behind(self) -> bool:
        if not self.read_back:
            return False
        ends = topic_end_offsets(self.consumer, self.read_back, 15)
        return bool(self._behind({tp: end for tp, end in ends.items() if end > 0}))

    def _gave_up(self, now: float, behind: list[str]) -> bool:
        if self.max_wait_s is None or now - self.started < self.max_wait_s:
            return False
        self.failure = f"not caught up after --max-wait {self.max_wait_s:.0f} s" + (
            f": {', '.join(behind)}" if behind else ": windows or retries still pending"
        )
        return True

    def close(self) -> None:
        self.consumer.close()
        self.probe.close()
