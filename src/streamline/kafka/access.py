"""Refused logins, failed TLS handshakes and denied operations, as one error naming what to fix.

A librdkafka error is turned into an `AuthenticationError` (credentials, TLS) or an
`AuthorizationError` (the broker's ACLs) whose message says which ACL the principal needs
and how to grant it; any other error is not an access error.
"""

from __future__ import annotations

import re
from collections.abc import Iterable, Mapping
from typing import TYPE_CHECKING, Any, Protocol

from streamline.errors import AuthenticationError, AuthorizationError, StreamlineError
from streamline.kafka.redaction import redact

if TYPE_CHECKING:
    from confluent_kafka import KafkaError

# librdkafka's codes for what the broker's ACLs deny (confluent_kafka.KafkaError values)
TOPIC_AUTHORIZATION_FAILED = 29
GROUP_AUTHORIZATION_FAILED = 30
CLUSTER_AUTHORIZATION_FAILED = 31
TRANSACTIONAL_ID_AUTHORIZATION_FAILED = 53
SASL_AUTHENTICATION_FAILED = 58
LOCAL_AUTHENTICATION = -169
LOCAL_SSL = -181
AUTHORIZATION_CODES = {
    TOPIC_AUTHORIZATION_FAILED: "TOPIC_AUTHORIZATION_FAILED",
    GROUP_AUTHORIZATION_FAILED: "GROUP_AUTHORIZATION_FAILED",
    CLUSTER_AUTHORIZATION_FAILED: "CLUSTER_AUTHORIZATION_FAILED",
    TRANSACTIONAL_ID_AUTHORIZATION_FAILED: "TRANSACTIONAL_ID_AUTHORIZATION_FAILED",
}


class Client(Protocol):
    """What the messages need to know of a connection (`streamline.kafka.connection.Connection`)."""

    bootstrap_servers: str

    @property
    def settings(self) -> Mapping[str, str]: ...

    @property
    def principal(self) -> str: ...

    def config(self, **extra: Any) -> dict[str, Any]: ...


def access_error(
    connection: Client,
    error: KafkaError,
    topic: str | None = None,
    operation: str | None = None,
    group: str | None = None,
    transactional_id: str | None = None,
    writes: Iterable[str] = (),
) -> StreamlineError | None:
    """The error to show for a refused login, a failed TLS handshake or a denied operation.

    None when `error` is none of these. `topic` with `operation` (READ, WRITE, DESCRIBE,
    CREATE), `group` and `transactional_id` name what was denied. A transaction's
    error does not name its topic: then the broker is asked which of `writes` this
    client may not WRITE.
    """
    code = error.code()
    if code == TOPIC_AUTHORIZATION_FAILED and topic is None and writes:
        denied = unwritable(connection, writes)
        if denied:
            topic, operation = denied[0], "WRITE"
    text = redact(error.str())
    if code in (LOCAL_AUTHENTICATION, SASL_AUTHENTICATION_FAILED):
        return AuthenticationError(_authentication_message(connection, text))
    if code == LOCAL_SSL:
        return AuthenticationError(_tls_message(connection, text))
    name = AUTHORIZATION_CODES.get(code)
    if name is None:
        return None
    if code == TOPIC_AUTHORIZATION_FAILED:
        operation = operation or "DESCRIBE"
        needed = f"{operation} on topic '{topic}'" if topic else f"{operation} on a topic"
        if operation == "DESCRIBE":
            needed += " (READ or WRITE on it imply DESCRIBE)"
    elif code == GROUP_AUTHORIZATION_FAILED:
        needed = f"READ on group '{group}'" if group else "READ on its consumer group"
    elif code == TRANSACTIONAL_ID_AUTHORIZATION_FAILED:
        needed = "WRITE and DESCRIBE on transactional id " + (
            f"'{transactional_id}'" if transactional_id else "of its producer"
        )
    elif operation == "WRITE":  # an idempotent producer without WRITE on any topic
        needed = f"WRITE on topic '{topic}' (or IDEMPOTENT_WRITE on the cluster)"
    else:
        needed = f"{operation or 'IDEMPOTENT_WRITE'} on the cluster"
    hint = "an admin can grant it"
    if code != CLUSTER_AUTHORIZATION_FAILED or operation == "WRITE":
        principal = (
            connection.principal if connection.settings.get("sasl.username") else "PRINCIPAL"
        )
        hint += (
            ", or every ACL a topology needs with 'streamline acls TOPOLOGY --principal "
            f"{principal} --apply'"
        )
    return AuthorizationError(
        f"not authorized: {connection.principal} needs {needed} ({name}); {hint}"
    )


def unwritable(connection: Client, topics: Iterable[str], timeout: float = 10.0) -> list[str]:
    """Those of `topics` the broker's ACLs do not let this client WRITE (or see)."""
    from confluent_kafka import TopicCollection
    from confluent_kafka.admin import AclOperation, AdminClient  # type: ignore[attr-defined]

    admin = AdminClient(connection.config(log_level=0))
    names = sorted(set(topics))
    futures = admin.describe_topics(
        TopicCollection(names), include_authorized_operations=True, request_timeout=timeout
    )
    denied = []
    for name in names:
        try:
            operations = futures[name].result(timeout).authorized_operations or []
        except Exception:
            denied.append(name)
            continue
        if AclOperation.WRITE not in operations and AclOperation.ALL not in operations:
            denied.append(name)
    return denied


def _authentication_message(connection: Client, text: str) -> str:
    mechanism = connection.settings.get("sasl.mechanism", "GSSAPI").upper()
    user = connection.settings.get("sasl.username", "")
    if "invalid credentials" in text or "Authentication failed" in text:
        return (
            f"authentication failed for user '{user}' at {connection.bootstrap_servers} "
            f"(SASL/{mechanism}): check sasl.username and sasl.password"
        )
    return (
        f"SASL authentication at {connection.bootstrap_servers} failed ({_reason(text)}): check "
        "security.protocol, sasl.mechanism, sasl.username and sasl.password"
    )


def _tls_message(connection: Client, text: str) -> str:
    if "certificate verify failed" in text:
        ca = connection.settings.get("ssl.ca.location")
        return (
            f"TLS handshake with {connection.bootstrap_servers} failed: the broker's certificate "
            "is not trusted (certificate verify failed); set ssl.ca.location to the CA "
            "certificate that signed it" + (f" ({ca} did not)" if ca else " (none is set)")
        )
    return (
        f"TLS handshake with {connection.bootstrap_servers} failed ({_reason(text)}): check "
        "security.protocol and the ssl.* settings"
    )


def kafka_reason(exc: Exception) -> str:
    """The human part of a KafkaException ("Local: Broker transport failure")."""
    error = exc.args[0] if exc.args else None
    text = error.str() if error is not None and hasattr(error, "str") else str(exc)
    return str(text).replace("Failed to get metadata: ", "")


def first_line(detail: str) -> str:
    """The first line of an error text, at most 200 characters."""
    return detail.split("\n", 1)[0][:200]


def _reason(text: str) -> str:
    """A librdkafka connection error without its broker prefix and state suffix."""
    text = re.sub(r"^\S+://\S+?/\S+: ", "", text)
    return first_line(re.sub(r" \(after \d+ms in state \w+\)$", "", text))
