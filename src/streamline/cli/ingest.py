"""`streamline ingest http`: an HTTP endpoint that validates records and writes them to a topic."""

from __future__ import annotations

import socket
from pathlib import Path
from typing import Annotated

import typer

from streamline.cli.console import err
from streamline.cli.options import BootstrapOpt, KafkaConfigOpt, SchemasOpt, connect, load_store
from streamline.errors import UsageError

ingest_app = typer.Typer(help="Get records in without writing a producer.")


@ingest_app.command("http")
def ingest_http(
    topic: Annotated[str, typer.Option("--topic", help="The topic records are written to.")],
    schema: Annotated[
        str, typer.Option("--schema", help="Full Avro name, e.g. com.example.Order.")
    ],
    body_format: Annotated[
        str,
        typer.Option(
            "--format", help="json, jsonl or csv: for bodies whose Content-Type names none."
        ),
    ] = "json",
    host: Annotated[str, typer.Option("--host", help="Address to listen on.")] = "127.0.0.1",
    port: Annotated[int, typer.Option("--port", help="Port to listen on.")] = 8080,
    key_field: Annotated[
        str | None, typer.Option("--key-field", help="Field whose value becomes the record key.")
    ] = None,
    tokens_file: Annotated[
        Path | None,
        typer.Option(
            "--tokens-file",
            help="Accepted bearer tokens, one a line (also STREAMLINE_INGEST_TOKENS, comma-separated).",
        ),
    ] = None,
    checksum: Annotated[
        bool,
        typer.Option("--checksum", help="Stamp streamline.checksum: the sha256 hex of each value."),
    ] = False,
    tls_cert: Annotated[Path | None, typer.Option("--tls-cert", help="PEM certificate.")] = None,
    tls_key: Annotated[Path | None, typer.Option("--tls-key", help="PEM private key.")] = None,
    rate_limit: Annotated[
        float | None,
        typer.Option("--rate-limit", help="Requests a second per token (default: none)."),
    ] = None,
    rate_burst: Annotated[
        float | None,
        typer.Option("--rate-burst", help="Requests at once per token (default: the rate)."),
    ] = None,
    max_body: Annotated[int, typer.Option("--max-body-bytes", help="Larger bodies get 413.")] = 10
    * 1024
    * 1024,
    max_pending: Annotated[
        int,
        typer.Option(
            "--max-pending-records", help="Records queued for Kafka before requests get 503."
        ),
    ] = 100_000,
    window: Annotated[
        str, typer.Option("--idempotency-window", help="How long an Idempotency-Key is remembered.")
    ] = "24h",
    instance_id: Annotated[
        str | None,
        typer.Option(
            "--instance-id",
            help="Stable per instance (default HOST-PORT): a restarted instance fences its predecessor.",
        ),
    ] = None,
    bootstrap_servers: BootstrapOpt = None,
    kafka_config: KafkaConfigOpt = None,
    schemas: SchemasOpt = None,
) -> None:
    """Serve POST /v1/topics/TOPIC: validate JSON, JSON lines or CSV, write them in one transaction."""
    import uvicorn

    from streamline.ingest import IngestSettings, create_app
    from streamline.ingest.body import FORMATS
    from streamline.ingest.limits import load_tokens
    from streamline.topology.durations import parse_duration

    if body_format not in FORMATS:
        raise UsageError(f"--format must be one of {', '.join(FORMATS)}, not {body_format}")
    if (tls_cert is None) != (tls_key is None):
        raise UsageError("--tls-cert and --tls-key go together")
    try:
        window_ms = parse_duration(window)
    except ValueError as exc:
        raise UsageError(f"--idempotency-window: {exc}") from None
    tokens = load_tokens(tokens_file)
    if not tokens:
        err.print("warning: no bearer tokens configured: anyone who reaches the port may post")
    settings = IngestSettings(
        topic=topic,
        schema=schema,
        format=body_format,
        key_field=key_field,
        tokens=tuple(tokens),
        rate_limit=rate_limit,
        rate_burst=rate_burst,
        max_body_bytes=max_body,
        max_pending_records=max_pending,
        idempotency_window_ms=window_ms,
        checksum=checksum,
        transactional_id=f"streamline-ingest-{instance_id or f'{socket.gethostname()}-{port}'}",
    )
    app = create_app(settings, connect(bootstrap_servers, kafka_config), load_store(schemas))
    err.print(f"ingest: POST {'https' if tls_cert else 'http'}://{host}:{port}/v1/topics/{topic}")
    uvicorn.run(
        app,
        host=host,
        port=port,
        ssl_certfile=str(tls_cert) if tls_cert else None,
        ssl_keyfile=str(tls_key) if tls_key else None,
        log_level="warning",
        access_log=False,
    )
