"""`streamline produce` and `streamline consume`: records in and out of a topic."""

from __future__ import annotations

import json
import os
import sys
from pathlib import Path
from typing import Annotated

import typer

from streamline.cli.console import err
from streamline.cli.options import (
    BootstrapOpt,
    KafkaConfigOpt,
    SchemasOpt,
    connect,
    load_store,
)
from streamline.cli.render import progress_bar


def produce(
    topic: Annotated[str, typer.Argument(help="Topic to write to.")],
    schema: Annotated[
        str, typer.Option("--schema", help="Full Avro name, e.g. com.example.Order.")
    ],
    file: Annotated[
        Path | None,
        typer.Option(
            "--file", "-f", help="JSON lines, or CSV / Parquet by extension; default stdin."
        ),
    ] = None,
    key_field: Annotated[
        str | None, typer.Option("--key-field", help="Field whose value becomes the record key.")
    ] = None,
    rate: Annotated[
        float | None, typer.Option("--rate", help="At most N records per second.")
    ] = None,
    checksum: Annotated[
        bool,
        typer.Option("--checksum", help="Stamp streamline.checksum: the sha256 hex of each value."),
    ] = False,
    force: Annotated[
        bool,
        typer.Option("--force", help="Produce a file again that was produced to the topic before."),
    ] = False,
    bootstrap_servers: BootstrapOpt = None,
    kafka_config: KafkaConfigOpt = None,
    schemas: SchemasOpt = None,
) -> None:
    """Validate JSON lines, CSV or Parquet against a schema and produce them as single-object Avro.

    A file is produced in one transaction with its record on streamline.ingest (sha256,
    count, offsets); the same file again to the same topic is refused (exit 2) unless --force.
    """
    from streamline.ops.produce import produce as run_produce

    store = load_store(schemas)
    connection = connect(bootstrap_servers, kafka_config)
    report = run_produce(
        connection,
        topic,
        store,
        schema,
        file,
        key_field=key_field,
        rate=rate,
        checksum=checksum,
        force=force,
        progress=progress_bar(topic) if sys.stderr.isatty() else None,
        on_invalid=lambda n, reason: err.print(f"line {n}: {reason}", markup=False),
    )
    invalid = len(report.invalid)
    err.print(
        f"sent {report.sent} records to {topic}"
        + (f"; {invalid} invalid lines not sent" if invalid else "")
    )
    if report.run is not None:
        err.print(f"recorded on streamline.ingest: sha256 {report.run.sha256}", markup=False)
    if invalid:
        raise typer.Exit(2)


def consume(
    topic: Annotated[str, typer.Argument(help="Topic to read.")],
    from_beginning: Annotated[
        bool, typer.Option("--from-beginning", help="Start at the earliest offset.")
    ] = False,
    max_records: Annotated[int | None, typer.Option("--max", help="Stop after N records.")] = None,
    timeout: Annotated[
        float | None, typer.Option("--timeout", help="Stop after S seconds without a new record.")
    ] = None,
    headers: Annotated[bool, typer.Option("--headers", help="Print record headers too.")] = False,
    reader_schema: Annotated[
        str | None,
        typer.Option("--schema", help="Read values as this schema (default: the writer's)."),
    ] = None,
    bootstrap_servers: BootstrapOpt = None,
    kafka_config: KafkaConfigOpt = None,
    schemas: SchemasOpt = None,
) -> None:
    """Print committed records as JSON lines, decoding single-object Avro with the schema store."""
    from streamline.ops.consume import RecordPrinter, read_topic

    store = (
        load_store(schemas)
        if (schemas or Path("schemas").is_dir() or os.environ.get("STREAMLINE_SCHEMAS"))
        else None
    )
    printer = RecordPrinter(store, reader_schema)
    connection = connect(bootstrap_servers, kafka_config)
    connection.check_reachable()
    for msg in read_topic(connection, topic, from_beginning, max_records, timeout):
        print(json.dumps(printer.to_json(msg, headers)), flush=True)
