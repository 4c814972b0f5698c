"""Fencing the transactions of instances that left the group without closing them.

An instance killed with a transaction open leaves it open on the broker until the
transaction timeout (`transaction.timeout.ms`, 30 s here, and up to 10 s more until the
broker's next check) aborts it. Until then:

- the committed offsets of its partitions are unstable: the instance that takes them
  over reads them (`committed()`, read_committed) only once that transaction is
  aborted, so the takeover waits ~35 s when the instance was killed while committing;
- its output, changelog and dead-letter partitions stop at that transaction for every
  read_committed reader (downstream topologies, standbys, restores).

A restarted instance fences its predecessor itself (`init_transactions` with the same
transactional id aborts the open transaction at once). An instance that does not come
back is fenced here: at each assignment, the instances that were members at the
previous one and are members no more get `init_transactions` on their transactional
id, in a thread (the assignment does not wait for it; `committed()` returns as soon as
the abort is done). Fencing an instance that had closed its transaction cleanly changes
nothing; one that was restarted meanwhile gets a fenced producer, which it replaces
(`CommitCycle.abort`), aborting at most its open transaction: never a duplicate.
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


class LostMembers:
    """The group's members at each assignment; fences the transactional ids of the lost ones."""

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
        self._lock = threading.Lock()
        self._thread: threading.Thread | None = None

    def assigned(self) -> None:
        """A new assignment: compares the members with the previous ones, in a thread."""
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
        except KafkaException as exc:
            log.debug("group not described, no instance fenced: %s", exc)
            return
        now = set(members)
        with self._lock:
            lost = sorted(self._members - now - {self._me})
            self._members = now
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
