"""Options several commands share, and how they become a schema store, a topology, a connection."""

from __future__ import annotations

import os
from pathlib import Path
from typing import Annotated, Any

import typer

from streamline.cli.connect import resolve_connection
from streamline.kafka.connection import Connection
from streamline.kafka.settings import require_exactly_once_safe

BootstrapOpt = Annotated[
    str | None,
    typer.Option(
        "--bootstrap-servers",
        "-b",
        help="Kafka address (else STREAMLINE_BOOTSTRAP_SERVERS, else the dev broker).",
    ),
]
KafkaConfigOpt = Annotated[
    Path | None,
    typer.Option(
        "--kafka-config", help="librdkafka settings, key=value lines (security, SASL, TLS)."
    ),
]
SchemasOpt = Annotated[
    Path | None,
    typer.Option(
        "--schemas", help="Folder of .avsc files (else STREAMLINE_SCHEMAS, else ./schemas)."
    ),
]
SchemaRegistryOpt = Annotated[
    str | None,
    typer.Option(
        "--schema-registry-url",
        help="Schema Registry for confluent-avro (else STREAMLINE_SCHEMA_REGISTRY_URL).",
    ),
]
DataDirOpt = Annotated[
    Path | None,
    typer.Option("--data-dir", help="Broker storage and logs (default .streamline/broker)."),
]


def schemas_dir(explicit: Path | None, topology: Path | None = None) -> Path:
    """--schemas, else STREAMLINE_SCHEMAS, else schemas/ beside the topology's folder, else ./schemas."""
    if explicit is not None:
        return explicit
    env = os.environ.get("STREAMLINE_SCHEMAS")
    if env:
        return Path(env)
    if topology is not None:
        beside = topology.resolve().parent.parent / "schemas"
        if beside.is_dir():
            return beside
    return Path("schemas")


def load_store(explicit: Path | None, topology: Path | None = None) -> Any:
    from streamline.serde import SchemaStore

    return SchemaStore(schemas_dir(explicit, topology))


def connect(bootstrap: str | None, kafka_config: Path | None) -> Connection:
    return resolve_connection(bootstrap, kafka_config)


def load_checked(path: Path, schemas: Path | None) -> tuple[Any, Any]:
    """The topology at `path`, type-checked: (CheckedTopology, SchemaStore)."""
    from streamline.topology import check_topology, load_topology

    topology = load_topology(path)
    store = load_store(schemas, path)
    return check_topology(topology, store), store


def refuse_unsafe_settings(checked: Any, connection: Connection) -> None:
    """For an exactly-once topology, refuses user client settings that would silently break it."""
    if checked.topology.guarantee == "exactly_once":
        require_exactly_once_safe(connection.settings)


def checked_and_connected(
    topology: Path, schemas: Path | None, bootstrap: str | None, kafka_config: Path | None
) -> tuple[Any, Connection]:
    """The checked topology and a connection to a broker that answers."""
    checked, _ = load_checked(topology, schemas)
    connection = connect(bootstrap, kafka_config)
    connection.check_reachable()
    return checked, connection
