"""The user's librdkafka settings: `--kafka-config FILE` lines, `STREAMLINE_KAFKA_*` variables,
and the settings an exactly-once topology may not be given.
"""

from __future__ import annotations

import os
from collections.abc import Mapping
from pathlib import Path

from streamline.errors import UsageError

ENV_PREFIX = "STREAMLINE_KAFKA_"
# STREAMLINE_KAFKA_LIBS is where the dev broker's jars are, not a client setting
NOT_CLIENT_SETTINGS = ("STREAMLINE_KAFKA_LIBS",)

# what exactly-once needs of every client, for the settings a user could override it with;
# None: the user may not set it at all (each instance's transactional id is its own)
EXACTLY_ONCE_SETTINGS: dict[str, str | None] = {
    "isolation.level": "read_committed",
    "enable.auto.commit": "false",
    "enable.idempotence": "true",
    "transactional.id": None,
}


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


def settings_from_env(environ: Mapping[str, str] | None = None) -> dict[str, str]:
    """`STREAMLINE_KAFKA_SASL_MECHANISM=...` -> `sasl.mechanism=...`."""
    env = os.environ if environ is None else environ
    return {
        key[len(ENV_PREFIX) :].lower().replace("_", "."): value
        for key, value in env.items()
        if key.startswith(ENV_PREFIX) and key not in NOT_CLIENT_SETTINGS
    }


def env_variable(setting: str) -> str:
    """The `STREAMLINE_KAFKA_*` variable that gives `setting`."""
    return ENV_PREFIX + setting.upper().replace(".", "_")


def require_exactly_once_safe(settings: Mapping[str, str]) -> None:
    """Refuses a user setting that would silently break exactly-once processing.

    The user's settings are applied last and win over the runtime's own, so a
    read_uncommitted consumer, auto-committed offsets, a shared transactional id or a
    non-idempotent producer would each be taken without a word. The first such setting
    fails with one line naming it.
    """
    for setting, needed in EXACTLY_ONCE_SETTINGS.items():
        if setting not in settings:
            continue
        value = str(settings[setting])
        if needed is not None and value.strip().lower() == needed:
            continue
        instead = (
            f"streamline sets {setting}={needed} itself"
            if needed is not None
            else "streamline gives each instance its own"
        )
        raise UsageError(
            f"{setting}={value} would break exactly-once ({instead}): remove it from the Kafka "
            f"settings ({env_variable(setting)} or --kafka-config), or run the topology with "
            "guarantee: at_least_once"
        )
