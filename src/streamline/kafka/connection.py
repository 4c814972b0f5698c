"""Where the broker is and how to talk to it: one place for every Kafka client's settings.

Extra librdkafka settings (security, SASL, TLS) pass through unchanged, applied last.
Secrets in them never reach a message or a log line (`streamline.kafka.redaction`), and
authentication, TLS and authorization failures become one error naming what to fix
(`streamline.kafka.access`).
"""

from __future__ import annotations

import time
from collections.abc import Iterable
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

from streamline.errors import BrokerUnavailableError, StreamlineError, UsageError
from streamline.kafka import access
from streamline.kafka.access import first_line, kafka_reason
from streamline.kafka.redaction import redact, redact_settings, remember_secrets

if TYPE_CHECKING:
    from confluent_kafka import KafkaError

CONNECT_TIMEOUT_S = 10.0


@dataclass
class Connection:
    """The broker address and the client settings every Kafka client of a command shares."""

    bootstrap_servers: str
    settings: dict[str, str] = field(default_factory=dict)

    def __post_init__(self) -> None:
        remember_secrets(self.settings)

    def config(self, **extra: Any) -> dict[str, Any]:
        """A librdkafka configuration: the client's own settings, overridden by the user's."""
        conf: dict[str, Any] = {"bootstrap.servers": self.bootstrap_servers, **extra}
        conf.update(self.settings)  # the user's settings pass through unchanged, last
        return conf

    def redacted(self) -> dict[str, str]:
        """The settings with secrets masked, for messages and logs."""
        return {k: str(v) for k, v in redact_settings(self.config()).items()}

    @property
    def principal(self) -> str:
        """Who the broker sees: `User:<sasl.username>`, else a phrase for messages."""
        user = self.settings.get("sasl.username")
        return f"User:{user}" if user else "this client"

    def check_reachable(self, timeout: float = CONNECT_TIMEOUT_S) -> None:
        """Fails within `timeout` with a message naming the address when no broker answers.

        Refused credentials and failed TLS handshakes fail at once, with their own message.
        """
        from confluent_kafka import KafkaException
        from confluent_kafka.admin import AdminClient

        errors: list[KafkaError] = []
        conf = self.config(
            **{"socket.connection.setup.timeout.ms": int(timeout * 1000)},
            error_cb=errors.append,
            log_level=0,
        )
        try:
            admin = AdminClient(conf)
        except KafkaException as exc:
            raise self.settings_error(exc) from None
        deadline = time.monotonic() + timeout
        while True:
            try:  # short metadata requests, so that the error callback is served between them
                metadata = admin.list_topics(
                    timeout=max(0.1, min(1.0, deadline - time.monotonic()))
                )
                break
            except KafkaException as exc:
                admin.poll(0)  # serves the error callback
                for error in errors:
                    refused = self.access_error(error)
                    if refused is not None:
                        raise refused from None
                if time.monotonic() >= deadline:
                    detail = str(errors[-1]) if errors else kafka_reason(exc)
                    raise BrokerUnavailableError(
                        f"no Kafka broker reachable at {self.bootstrap_servers} within "
                        f"{timeout:.0f}s ({redact(first_line(detail))})"
                    ) from None
        if not metadata.brokers:
            raise BrokerUnavailableError(f"no Kafka broker reachable at {self.bootstrap_servers}")

    def settings_error(self, exc: Exception) -> StreamlineError:
        """A client could not even be created: the settings are invalid (a missing CA file...)."""
        return UsageError(f"invalid Kafka client settings: {redact(first_line(kafka_reason(exc)))}")

    def access_error(
        self,
        error: KafkaError,
        topic: str | None = None,
        operation: str | None = None,
        group: str | None = None,
        transactional_id: str | None = None,
        writes: Iterable[str] = (),
    ) -> StreamlineError | None:
        """The error for a refused login, a failed TLS handshake or a denied operation, else None.

        See `streamline.kafka.access.access_error`.
        """
        return access.access_error(self, error, topic, operation, group, transactional_id, writes)
