"""`streamline validate` and `streamline run`: check a topology, run it."""

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
    connect,
    load_checked,
    refuse_unsafe_settings,
)
from streamline.errors import UsageError


def validate(
    topologies: Annotated[list[Path], typer.Argument(help="Topology files.")],
    schemas: SchemasOpt = None,
    registry: Annotated[
        bool,
        typer.Option(
            "--registry",
            help="Check each confluent-avro sink schema against its subject's compatibility "
            "rule in the Schema Registry.",
        ),
    ] = False,
    schema_registry_url: SchemaRegistryOpt = None,
) -> None:
    """Load and type-check topologies; print each stage chain with its schemas and the fingerprint."""
    from streamline.kafka.registry import open_registry, sink_incompatibility
    from streamline.topology import render_chain

    client = open_registry(schema_registry_url, required=True) if registry else None
    failed = 0
    for path in topologies:
        try:
            checked, _ = load_checked(path, schemas)
            if client is not None:
                sink_incompatibility(client, checked)
        except UsageError as exc:
            err.print(f"error: {exc}", markup=False)
            failed += 1
            continue
        out.print(render_chain(checked), markup=False)
        for warning in checked.warnings:
            err.print(
                f"warning: {checked.topology.origin}: {warning.path}: {warning.message}",
                markup=False,
            )
    if failed:
        raise typer.Exit(2)


def run(
    topology: Annotated[Path, typer.Argument(help="Topology file.")],
    instance_id: Annotated[
        str | None,
        typer.Option("--instance-id", help="Stable id of this instance (default: host name)."),
    ] = None,
    state_dir: Annotated[
        Path, typer.Option("--state-dir", help="Local state (RocksDB, checkpoints).")
    ] = Path(".streamline/state"),
    metrics_port: Annotated[
        int, typer.Option("--metrics-port", help="Prometheus /metrics port (0: any free).")
    ] = 9400,
    metrics_host: Annotated[
        str, typer.Option("--metrics-host", help="Address /metrics binds to.")
    ] = "127.0.0.1",
    stall_timeout: Annotated[
        float,
        typer.Option(
            "--stall-timeout",
            min=0,
            help="Seconds without progress (a stuck map, a hung call) after which /healthz "
            "answers 503, so a liveness probe restarts the process; 0: never.",
        ),
    ] = 120.0,
    static_membership: Annotated[
        bool,
        typer.Option(
            "--static-membership/--dynamic-membership",
            help="--static-membership: join the group as a static member known by the "
            "instance id (group.instance.id): a restart within the session timeout takes its "
            "partitions back without a rebalance, and a stopped instance stays in the group "
            "(its partitions wait) for the session timeout. Default: dynamic, a stopped "
            "instance leaves the group at once.",
        ),
    ] = False,
    until_caught_up: Annotated[
        bool,
        typer.Option(
            "--until-caught-up",
            help="Stop (exit 0) once the end offsets seen at start are committed and every "
            "window that can close has closed: for backfills and batch jobs.",
        ),
    ] = False,
    max_wait: Annotated[
        str | None,
        typer.Option(
            "--max-wait",
            help="With --until-caught-up: give up (exit 1) after this long, e.g. 30m.",
        ),
    ] = None,
    no_create_topics: Annotated[
        bool,
        typer.Option(
            "--no-create-topics",
            help="Do not create missing internal topics (dead letters, retry, late, changelog, "
            "repartition, lineage, heartbeats): for locked-down clusters.",
        ),
    ] = False,
    bootstrap_servers: BootstrapOpt = None,
    kafka_config: KafkaConfigOpt = None,
    schemas: SchemasOpt = None,
    schema_registry_url: SchemaRegistryOpt = None,
) -> None:
    """Run a topology until SIGTERM/SIGINT; then commit or abort and close the consumer cleanly."""
    import socket

    from streamline.cli.logs import configure_logging
    from streamline.runtime.processor import RunOptions
    from streamline.runtime.runner import run_topology

    configure_logging()
    max_wait_s = _max_wait(max_wait, until_caught_up)  # a usage error before anything else
    checked, store = load_checked(topology, schemas)
    connection = connect(bootstrap_servers, kafka_config)
    refuse_unsafe_settings(checked, connection)
    options = RunOptions(
        instance_id=instance_id or socket.gethostname(),
        state_dir=state_dir,
        stall_timeout_s=stall_timeout,
        static_membership=static_membership,
        until_caught_up=until_caught_up,
        max_wait_s=max_wait_s,
    )
    run_topology(
        checked,
        store,
        connection,
        options,
        metrics_host,
        metrics_port,
        schema_registry_url=schema_registry_url,
        create_topics=not no_create_topics,
    )


def _max_wait(max_wait: str | None, until_caught_up: bool) -> float | None:
    from streamline.errors import UsageError
    from streamline.topology.durations import parse_duration

    if max_wait is None:
        return None
    if not until_caught_up:
        raise UsageError("--max-wait goes with --until-caught-up")
    try:
        return parse_duration(max_wait) / 1000
    except ValueError as exc:
        raise UsageError(f"--max-wait {max_wait}: {exc}") from None
