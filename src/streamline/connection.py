"""Where the broker is and how to talk to it: one place for every Kafka client's settings.

The address comes from `--bootstrap-servers`, else `STREAMLINE_BOOTSTRAP_SERVERS`, else
the running local dev broker. Extra librdkafka settings (security, SASL, TLS) come from
`--kafka-config FILE` (`key=value` lines) and `STREAMLINE_KAFKA_<SETTING>` variables and
pass through unchanged.
"""

from __future__ import annotations

import os
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from streamline.errors import BrokerUnavailableError, UsageError

SECRET_WORDS = ("password", "secret", "key", "token", "credential")
CONNECT_TIMEOUT_S = 10.0


def _is_secret(setting: str) -> bool:
    return any(word in setting.lower() for word in SECRET_WORDS) and setting != "bootstrap.servers"


@dataclass
class Connection:
    """The broker address and the client settings every Kafka client of a command shares."""

    bootstrap_servers: str
    settings: dict[str, str] = field(default_factory=dict)

    def config(self, **extra: Any) -> dict[str, Any]:
        """A librdkafka configuration: the client's own settings, overridden by the user's."""
        conf: dict[str, Any] = {"bootstrap.servers": self.bootstrap_servers, **extra}
        conf.update(self.settings)  # the user's settings pass through unchanged, last
        return conf

    def redacted(self) -> dict[str, str]:
        """The settings with secrets masked, for messages and logs."""
        return {k: ("***" if _is_secret(k) else v) for k, v in self.config().items()}

    def check_reachable(self, timeout: float = CONNECT_TIMEOUT_S) -> None:
        """Fails within `timeout` with a message naming the address when no broker answers."""
        from confluent_kafka.admin import AdminClient

        errors: list[str] = []
        conf = self.config(
            **{"socket.connection.setup.timeout.ms": int(timeout * 1000)},
            error_cb=lambda err: errors.append(str(err)),
            log_level=0,
        )
        admin = AdminClient(conf)
        try:
            metadata = admin.list_topics(timeout=timeout)
        except Exception as exc:
            detail = errors[-1] if errors else _kafka_reason(exc)
            raise BrokerUnavailableError(
                f"no Kafka broker reachable at {self.bootstrap_servers} within {timeout:.0f}s "
                f"({_short(detail)})"
            ) from None
        if not metadata.brokers:
            raise BrokerUnavailableError(f"no Kafka broker reachable at {self.bootstrap_servers}")


def _kafka_reason(exc: Exception) -> str:
    """The human part of a KafkaException ("Local: Broker transport failure")."""
    error = exc.args[0] if exc.args else None
    text = error.str() if error is not None and hasattr(error, "str") else str(exc)
    return str(text).replace("Failed to get metadata: ", "")


def _short(detail: str) -> str:
    return detail.split("\n", 1)[0][:200]


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
    """The connection a command uses, from flags, environment or the running dev broker."""
    address = bootstrap_servers or os.environ.get("STREAMLINE_BOOTSTRAP_SERVERS")
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
    settings = settings_from_env()
    if kafka_config is not None:
        settings.update(read_kafka_config_file(kafka_config))
    return Connection(address, settings)
