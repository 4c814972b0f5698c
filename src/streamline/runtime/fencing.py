"""Fencing the transaction of an instance lost in the middle of a commit.

An instance killed with a transaction open leaves it open on the broker until the
transaction timeout (`transaction.timeout.ms`, 30 s here, and up to 10 s more until the
broker's next check) aborts it. When it was killed in the middle of a commit (its
offsets sent to the transaction, the commit not done), the committed offsets of its
partitions are unstable meanwhile: the instance that takes them over reads them
(`committed()`, read_committed) only once that transaction ends, ~35 s after the kill.

A restarted instance fences its predecessor itself (`init_transactions` with the same
transactional id aborts the open transaction at once). For an instance that does not
come back, the task manager asks `LostMembers` when the committed offsets of a new
assignment are still unstable after `UNSTABLE_WAIT_S`: the instances that were members
at the previous assignment and are members no more get `init_transactions` on their
transactional id, which aborts the transaction holding the offsets, and the offsets are
read again. Only then: an instance that was only expelled (frozen, or too slow) and has
no commit in flight is not fenced, so it carries on once it rejoins; one that is
fenced had a commit in flight for partitions it no longer owns, and stops
(`commit.ProducerFenced`).
"""

from __future__ import annotations

import logging
import threading
from collections.abc import Callable

from confluent_kafka import KafkaException, Producer

from streamline.kafka.admin import describe_group_assignment
from streamline.kafka.connection import Connection

log = logging.getLogger("streamline.runtime")

FENCE_TIMEOUT_S = 30.0
UNSTABLE_WAIT_S = 1.0  # committed() longer than this: a lost instance's commit holds them


class LostMembers:
    """The group's members at each assignment, and the ones lost since the previous one."""

    def __init__(
        self,
        connection: Connection,
        group_id: str,
        input_topic: str,
        instance_id: str,
        transactional_id: Callable[[str], str],
    ) -> None:
        self._connection = connection
        self._group_id = group_id
        self._input_topic = input_topic
        self._me = instance_id
        self._transactional_id = transactional_id
        self._members: set[str] = set()
        self._lost: set[str] = set()
        self._lock = threading.Lock()
        self._thread: threading.Thread | None = None

    def assigned(self) -> None:
        """A new assignment: reads the group's members and compares them, in a thread."""
        if self._thread is not None and self._thread.is_alive():
            return  # the previous check is still running; the next assignment looks again
        self._thread = threading.Thread(target=self._check, name="fence-lost", daemon=True)
        self._thread.start()

    def join(self, timeout: float | None = None) -> None:
        if self._thread is not None:
            self._thread.join(timeout)

    def _check(self) -> None:
        try:
            _owners, members = describe_group_assignment(
                self._connection, self._group_id, self._input_topic
            )
        except (KafkaException, TimeoutError) as exc:  # TimeoutError: its future not done
            log.debug("group not described, no instance fenced: %r", exc)
            return
        now = set(members)
        with self._lock:
            self._lost = (self._members - now - {self._me}) if self._members else set()
            self._members = now

    def fence_lost(self) -> None:
        """Fences the instances that left the group between the last two assignments."""
        self.join(FENCE_TIMEOUT_S)
        with self._lock:
            lost, self._lost = sorted(self._lost), set()
        for instance in lost:
            self.fence(instance)

    def fence(self, instance: str) -> bool:
        """Aborts the transaction `instance` left open (if any); whether the broker answered."""
        transactional_id = self._transactional_id(instance)
        producer = Producer(
            self._connection.config(**{"transactional.id": transactional_id}, log_level=0)
        )
        try:
            producer.init_transactions(FENCE_TIMEOUT_S)
        except KafkaException as exc:
            log.warning(
                "instance %s left the group; its transactions not fenced (%s): they end at "
                "their timeout",
                instance,
                exc.args[0].str() if exc.args else exc,
            )
            return False
        finally:
            producer.flush(0)
        log.info("instance %s left the group: its open transaction (if any) aborted", instance)
        return True
