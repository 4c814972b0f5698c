"""The audit trail: one JSON event on `streamline.audit` per operator action that changes something.

`replay`, `dlq replay` and `acls --apply` record who acted (the OS user and host, and the
Kafka principal the broker sees), when, the command line, the plan they carried out and
the result (`applied`, `refused` with the reason, or `failed` with the error). The topic
is made (one partition, kept forever) by the first command that writes to it, before the
action runs, so an action whose event cannot be written is not carried out. Dry runs and
plans written for review change nothing and record nothing.
"""

from __future__ import annotations

import getpass
import json
import shlex
import socket
import sys
import uuid
from collections.abc import Iterator, Mapping
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from streamline.errors import StreamlineError
from streamline.kafka.admin import create_topics
from streamline.kafka.connection import Connection
from streamline.kafka.scan import scan_consumer, scan_since
from streamline.topology.resources import AUDIT_TOPIC

AUDIT_TOPIC_CONFIG = {"retention.ms": "-1"}


def kafka_principal(settings: Mapping[str, str]) -> str:
    """The principal the broker's default principal builder gives this client: the SASL user,
    else the TLS client certificate's subject, else `User:ANONYMOUS` (plaintext)."""
    user = settings.get("sasl.username")
    if user:
        return f"User:{user}"
    certificate = settings.get("ssl.certificate.location")
    if certificate:
        from cryptography import x509

        try:
            cert = x509.load_pem_x509_certificate(Path(certificate).read_bytes())
        except (OSError, ValueError):
            return f"User:<subject of {certificate}>"
        return f"User:{cert.subject.rfc4514_string()}"
    return "User:ANONYMOUS"


def who(connection: Connection) -> dict[str, str]:
    return {
        "os_user": getpass.getuser(),
        "host": socket.gethostname(),
        "principal": kafka_principal(connection.settings),
    }


def command_line() -> str:
    """The command as typed (`streamline ...`)."""
    return shlex.join(["streamline", *sys.argv[1:]])


def audit_event(
    action: str,
    topology: str,
    fingerprint: str,
    actor: Mapping[str, str],
    plan: Mapping[str, Any],
    status: str,
    detail: Mapping[str, Any] | str | None = None,
    now: datetime | None = None,
) -> dict[str, Any]:
    """The JSON document of one action: `status` is `applied`, `refused` or `failed`."""
    at = now or datetime.now(UTC)
    return {
        "id": str(uuid.uuid4()),
        "time": at.isoformat(timespec="milliseconds"),
        "time_ms": int(at.timestamp() * 1000),
        "action": action,
        "topology": topology,
        "fingerprint": fingerprint,
        "who": dict(actor),
        "command": command_line(),
        "plan": dict(plan),
        "result": {"status": status, "detail": detail},
    }


class AuditLog:
    """Writes audit events of one command; `open` first makes sure they can be written."""

    def __init__(self, connection: Connection) -> None:
        self.connection = connection
        self.actor = who(connection)
        create_topics(connection, {AUDIT_TOPIC: (1, dict(AUDIT_TOPIC_CONFIG))})

    def record(
        self,
        action: str,
        topology: str,
        fingerprint: str,
        plan: Mapping[str, Any],
        status: str,
        detail: Mapping[str, Any] | str | None = None,
    ) -> dict[str, Any]:
        """Writes the event and waits until the broker has it."""
        from confluent_kafka import Producer

        event = audit_event(action, topology, fingerprint, self.actor, plan, status, detail)
        producer = Producer(
            self.connection.config(**{"enable.idempotence": True, "acks": "all"}, log_level=0)
        )
        failures: list[str] = []

        def delivered(error: Any, _msg: Any) -> None:
            if error is not None:
                failures.append(error.str())

        producer.produce(
            AUDIT_TOPIC,
            key=topology.encode(),
            value=json.dumps(event, separators=(",", ":")).encode(),
            on_delivery=delivered,
        )
        if producer.flush(30) or failures:
            raise StreamlineError(
                f"could not write the audit event of {action} to {AUDIT_TOPIC}: "
                + (failures[0] if failures else "not delivered within 30s")
            )
        return event


def read_audit_events(
    connection: Connection, topology: str | None = None, since_ms: int = 0
) -> Iterator[dict[str, Any]]:
    """The audit events (of `topology`, else of all) written at or after `since_ms`, oldest first."""
    consumer = scan_consumer(connection, "streamline-audit-reader")
    try:
        for msg in scan_since(consumer, AUDIT_TOPIC, since_ms):
            event = json.loads(msg.value() or b"{}")
            if topology is None or event.get("topology") == topology:
                yield event
    finally:
        consumer.close()
