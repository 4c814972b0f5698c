"""`streamline topics create`: the topics a topology reads and writes."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated

import typer

from streamline.cli.console import err, out
from streamline.cli.options import (
    BootstrapOpt,
    KafkaConfigOpt,
    SchemaRegistryOpt,
    SchemasOpt,
    checked_and_connected,
)

topics_app = typer.Typer(help="Topics of a topology.")


@topics_app.command("create")
def topics_create(
    topology: Annotated[Path, typer.Argument(help="Topology file.")],
    partitions: Annotated[int, typer.Option("--partitions", help="Partitions of new topics.")] = 3,
    replication_factor: Annotated[int, typer.Option("--replication-factor")] = 1,
    bootstrap_servers: BootstrapOpt = None,
    kafka_config: KafkaConfigOpt = None,
    schemas: SchemasOpt = None,
    schema_registry_url: SchemaRegistryOpt = None,
) -> None:
    """Create the source, sink and owned topics (dlq, retry, late, changelog, lineage, heartbeats).

    A `confluent-avro` sink's schema is first checked against its subject's compatibility
    rule in the Schema Registry (exit 2, one line naming the field, when it breaks it)."""
    from streamline.kafka.admin import create_topics, existing_topics
    from streamline.kafka.registry import confluent_sinks, open_registry, sink_incompatibility
    from streamline.ops.topics import topology_topics
    from streamline.topology.resources import resources_of

    checked, connection = checked_and_connected(topology, schemas, bootstrap_servers, kafka_config)
    if confluent_sinks(checked.topology):
        registry = open_registry(schema_registry_url, required=True)
        assert registry is not None
        sink_incompatibility(registry, checked)
    existing = existing_topics(connection)
    wanted = topology_topics(checked.topology, partitions, existing)
    created = set(create_topics(connection, wanted, replication_factor))
    for name, (wanted_count, configs) in wanted.items():
        state = "created" if name in created else "exists"
        count = existing.get(name, wanted_count)
        extra = " (compacted)" if "compact" in configs.get("cleanup.policy", "") else ""
        out.print(f"{state:8} {name} [{count} partitions]{extra}", markup=False)
    counts = {**{n: c for n, (c, _) in wanted.items()}, **existing}
    problems = resources_of(checked.topology).copartitioning_problems(counts)
    for problem in problems:
        err.print(f"error: {problem}", markup=False)
    if problems:
        raise typer.Exit(1)
