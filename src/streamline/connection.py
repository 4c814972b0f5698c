"""Where the broker is and how to talk to it: one place for every Kafka client's settings.

The address comes from `--bootstrap-servers`, else `STREAMLINE_BOOTSTRAP_SERVERS`, else
the running local dev broker. Extra librdkafka settings (security, SASL, TLS) come from
`--kafka-config FILE` (`key=value` lines) and `STREAMLINE_KAFKA_<SETTING>` variables and
pass through unchanged.

Secrets in those settings never reach a message or a log line: `redact` masks every
secret value any `Connection` was given, wherever it appears in a text. Authentication,
TLS and authorization failures become one error naming what to fix (`access_error`).
"""

from __future__ import annotations

import logging
import os
import re
import time
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

from streamline.errors import (
    AuthenticationError,
    AuthorizationError,
    BrokerUnavailableError,
    StreamlineError,
    UsageError,
)

if TYPE_CHECKING:
    from confluent_kafka import KafkaError

SECRET_WORDS = ("password", "secret", "passphrase", "token", "credential", "jaas")
# settings whose whole value is secret although their name has none of the words above
SECRET_SETTINGS = ("sasl.oauthbearer.config", "ssl.key.pem", "ssl_key")
CONNECT_TIMEOUT_S = 10.0
MASK = "***"
# secret values shorter than this are not searched for in texts: they would mangle them
MIN_SCRUBBED_LENGTH = 3

_secret_values: set[str] = set()

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


def is_secret(setting: str) -> bool:
    """Whether a client setting's value is a secret (a password, a private key, a JAAS line)."""
    name = setting.lower()
    return (
        any(word in name for word in SECRET_WORDS)
        or name in SECRET_SETTINGS
        or (name.endswith(".pem") and "key" in name)
    )


def redact_settings(settings: Mapping[str, Any]) -> dict[str, Any]:
    """The settings with every secret value masked, for messages and logs."""
    return {k: (MASK if is_secret(k) else v) for k, v in settings.items()}


def remember_secrets(settings: Mapping[str, Any]) -> None:
    """Adds the secret values of these settings to those `redact` masks."""
    for key, value in settings.items():
        if is_secret(key) and isinstance(value, str) and len(value) >= MIN_SCRUBBED_LENGTH:
            _secret_values.add(value)


def redact(text: str) -> str:
    """The text with every known secret value masked (librdkafka errors, log lines)."""
    for secret in sorted(_secret_values, key=len, reverse=True):
        if secret in text:
            text = text.replace(secret, MASK)
    return text


class RedactingFilter(logging.Filter):
    """A log filter that masks known secret values in every record it passes."""

    def filter(self, record: logging.LogRecord) -> bool:
        if _secret_values:
            message = record.getMessage()
            masked = redact(message)
            if masked != message:
                record.msg, record.args = masked, None
        return True


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
                    detail = str(errors[-1]) if errors else _kafka_reason(exc)
                    raise BrokerUnavailableError(
                        f"no Kafka broker reachable at {self.bootstrap_servers} within "
                        f"{timeout:.0f}s ({redact(_short(detail))})"
                    ) from None
        if not metadata.brokers:
            raise BrokerUnavailableError(f"no Kafka broker reachable at {self.bootstrap_servers}")

    def settings_error(self, exc: Exception) -> StreamlineError:
        """A client could not even be created: the settings are invalid (a missing CA file...)."""
        return UsageError(f"invalid Kafka client settings: {redact(_short(_kafka_reason(exc)))}")

    def access_error(
        self,
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
            denied = self.unwritable(writes)
            if denied:
                topic, operation = denied[0], "WRITE"
        text = redact(error.str())
        if code in (LOCAL_AUTHENTICATION, SASL_AUTHENTICATION_FAILED):
            return AuthenticationError(self._authentication_message(text))
        if code == LOCAL_SSL:
            return AuthenticationError(self._tls_message(text))
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
            principal = self.principal if self.settings.get("sasl.username") else "PRINCIPAL"
            hint += (
                ", or every ACL a topology needs with 'streamline acls TOPOLOGY --principal "
                f"{principal} --apply'"
            )
        return AuthorizationError(
            f"not authorized: {self.principal} needs {needed} ({name}); {hint}"
        )

    def unwritable(self, topics: Iterable[str], timeout: float = 10.0) -> list[str]:
        """Those of `topics` the broker's ACLs do not let this client WRITE (or see)."""
        from confluent_kafka import TopicCollection
        from confluent_kafka.admin import AclOperation, AdminClient  # type: ignore[attr-defined]

        admin = AdminClient(self.config(log_level=0))
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

    def _authentication_message(self, text: str) -> str:
        mechanism = self.settings.get("sasl.mechanism", "GSSAPI").upper()
        user = self.settings.get("sasl.username", "")
        if "invalid credentials" in text or "Authentication failed" in text:
            return (
                f"authentication failed for user '{user}' at {self.bootstrap_servers} "
                f"(SASL/{mechanism}): check sasl.username and sasl.password"
            )
        return (
            f"SASL authentication at {self.bootstrap_servers} failed ({_reason(text)}): check "
            "security.protocol, sasl.mechanism, sasl.username and sasl.password"
        )

    def _tls_message(self, text: str) -> str:
        if "certificate verify failed" in text:
            ca = self.settings.get("ssl.ca.location")
            return (
                f"TLS handshake with {self.bootstrap_servers} failed: the broker's certificate "
                "is not trusted (certificate verify failed); set ssl.ca.location to the CA "
                "certificate that signed it" + (f" ({ca} did not)" if ca else " (none is set)")
            )
        return (
            f"TLS handshake with {self.bootstrap_servers} failed ({_reason(text)}): check "
            "security.protocol and the ssl.* settings"
        )


def _kafka_reason(exc: Exception) -> str:
    """The human part of a KafkaException ("Local: Broker transport failure")."""
    error = exc.args[0] if exc.args else None
    text = error.str() if error is not None and hasattr(error, "str") else str(exc)
    return str(text).replace("Failed to get metadata: ", "")


def _short(detail: str) -> str:
    return detail.split("\n", 1)[0][:200]


def _reason(text: str) -> str:
    """A librdkafka connection error without its broker prefix and state suffix."""
    text = re.sub(r"^\S+://\S+?/\S+: ", "", text)
    return _short(re.sub(r" \(after \d+ms in state \w+\)$", "", text))


def read_kafka_config_file(path: Path) -> dict[str, str]:
    """`key=value` lines; blank lines and `#` comments skipped."""
    settings: dict[str, str] = {}
    try:
        lines = path.read_text().splitlines()
    except OSError as exc:
        raise UsageError(f"cannot read --kafka-config {path}: {exc.strerror}") from None
    for number, line in enumerate(lines, 1):
        line = line.strip()
        if not line or line.startswith("#"):
            continue
        if "=" not in line:
            raise UsageError(f"{path}:{number}: expected key=value")
        key, value = line.split("=", 1)
        settings[key.strip()] = value.strip()
    return settings


def settings_from_env(environ: dict[str, str] | None = None) -> dict[str, str]:
    """`STREAMLINE_KAFKA_SASL_MECHANISM=...` -> `sasl.mechanism=...`."""
    env = os.environ if environ is None else environ
    prefix = "STREAMLINE_KAFKA_"
    return {
        key[len(prefix) :].lower().replace("_", "."): value
        for key, value in env.items()
        if key.startswith(prefix) and key != "STREAMLINE_KAFKA_LIBS"
    }


def resolve_connection(
    bootstrap_servers: str | None = None, kafka_config: Path | None = None
) -> Connection:
    """The connection a command uses, from flags, environment or the running dev broker.

    A secured dev broker's own client settings (`client.properties`) come first, so the
    user's settings override them.
    """
    address = bootstrap_servers or os.environ.get("STREAMLINE_BOOTSTRAP_SERVERS")
    settings: dict[str, str] = {}
    if not address:
        from streamline.dev.broker import running_dev_broker

        info = running_dev_broker()
        if info is None:
            raise BrokerUnavailableError(
                "no Kafka broker configured: pass --bootstrap-servers HOST:PORT, set "
                "STREAMLINE_BOOTSTRAP_SERVERS, or start a local one with "
                "'streamline dev-broker start'"
            )
        address = info.bootstrap
        if info.client_config_file.is_file():  # a secured dev broker: its admin's settings
            settings.update(read_kafka_config_file(info.client_config_file))
    settings.update(settings_from_env())
    if kafka_config is not None:
        settings.update(read_kafka_config_file(kafka_config))
    return Connection(address, settings)
