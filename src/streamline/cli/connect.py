"""Which broker a command talks to: `--bootstrap-servers`, else `STREAMLINE_BOOTSTRAP_SERVERS`,
else the running local dev broker; and with which client settings.
"""

from __future__ import annotations

import os
from pathlib import Path

from streamline.errors import BrokerUnavailableError
from streamline.kafka.connection import Connection
from streamline.kafka.settings import read_kafka_config_file, settings_from_env


def resolve_connection(
    bootstrap_servers: str | None = None, kafka_config: Path | None = None
) -> Connection:
    """The connection a command uses, from flags, environment or the running dev broker.

    A secured dev broker's own client settings (`client.properties`) come first, so the
    user's settings (`STREAMLINE_KAFKA_<SETTING>` variables, then `--kafka-config FILE`)
    override them.
    """
    address = bootstrap_servers or os.environ.get("STREAMLINE_BOOTSTRAP_SERVERS")
    settings: dict[str, str] = {}
    if not address:
        from streamline.dev.broker import running_dev_broker  # only without a broker given

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
