"""Secret values in Kafka client settings never reach a message or a log line.

Every secret value a `Connection` was given is remembered (`remember_secrets`); `redact`
masks each of them wherever it appears in a text, and `RedactingFilter` does the same for
log records.
"""

from __future__ import annotations

import logging
from collections.abc import Mapping
from typing import Any

SECRET_WORDS = ("password", "secret", "passphrase", "token", "credential", "jaas")
# settings whose whole value is secret although their name has none of the words above
SECRET_SETTINGS = (
    "sasl.oauthbearer.config",
    "ssl.key.pem",
    "ssl_key",
    "basic.auth.user.info",  # the Schema Registry's user:password
)
MASK = "***"
# secret values shorter than this are not searched for in texts: they would mangle them
MIN_SCRUBBED_LENGTH = 3

_secret_values: set[str] = set()


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
