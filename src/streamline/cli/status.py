"""`streamline status`: every topology's SLA state, lag and upstream cause; or a status page."""

from __future__ import annotations

import json
import socket
import sys
from collections.abc import Callable
from pathlib import Path
from typing import TYPE_CHECKING, Annotated, Any

import typer

from streamline.cli.console import err, out
from streamline.cli.options import BootstrapOpt, KafkaConfigOpt, SchemasOpt, connect, load_store
from streamline.errors import StreamlineError, UsageError

if TYPE_CHECKING:
    from streamline.kafka.connection import Connection
    from streamline.ops.status import TopologyStatus


def status(
    names: Annotated[
        list[str] | None,
        typer.Argument(help="Show only these topologies (glob patterns); default: all."),
    ] = None,
    watch: Annotated[
        bool, typer.Option("--watch", help="Refresh every --interval until interrupted.")
    ] = False,
    as_json: Annotated[
        bool, typer.Option("--json", help="One JSON document instead of a table.")
    ] = False,
    serve: Annotated[
        bool, typer.Option("--serve", help="Serve the status page over HTTP until interrupted.")
    ] = False,
    port: Annotated[
        int, typer.Option("--port", help="Port of the status page (0 picks a free one).")
    ] = 8088,
    host: Annotated[
        str, typer.Option("--host", help="Address the status page listens on.")
    ] = "127.0.0.1",
    since: Annotated[
        str, typer.Option("--since", help="How far back heartbeats and lineage are read.")
    ] = "1h",
    interval: Annotated[
        str, typer.Option("--interval", help="Refresh period of --watch and of the page.")
    ] = "5s",
    bootstrap_servers: BootstrapOpt = None,
    kafka_config: KafkaConfigOpt = None,
    schemas: SchemasOpt = None,
) -> None:
    """Every topology from streamline.heartbeats: state (`late (upstream: A)` names the cause),
    instances, version, lag, watermark, dead letters and late records in the last hour, last
    commit, readiness. Exit 0 when all are ok, 1 otherwise."""
    import time

    from streamline.cli.render import status_table
    from streamline.ops.status import exit_code, read_status
    from streamline.topology.durations import parse_duration

    try:
        since_ms, interval_ms = parse_duration(since), parse_duration(interval)
    except ValueError as exc:
        raise UsageError(f"--since/--interval: {exc}") from None
    connection = connect(bootstrap_servers, kafka_config)
    only = list(names or []) or None

    def read() -> list[TopologyStatus]:
        return read_status(connection, since_ms, only)

    if serve:
        _serve(connection, read, schemas, host, port, interval_ms)
        return
    if watch and not as_json and out.is_terminal:  # else: a table per refresh, below
        from rich.live import Live

        with Live(status_table(read()), console=out, refresh_per_second=1) as live:
            while True:
                time.sleep(interval_ms / 1000)
                live.update(status_table(read()))
    while True:
        rows = read()
        if as_json:
            document = {"ok": exit_code(rows) == 0, "topologies": [r.to_json() for r in rows]}
            sys.stdout.write(json.dumps(document) + "\n")
            sys.stdout.flush()
        else:
            if not rows:
                err.print("no topology sent a heartbeat in that time")
            out.print(status_table(rows))
        if not watch:
            raise typer.Exit(exit_code(rows))
        time.sleep(interval_ms / 1000)


def _serve(
    connection: Connection,
    read: Callable[[], list[TopologyStatus]],
    schemas: Path | None,
    host: str,
    port: int,
    interval_ms: int,
) -> None:
    """Serves the status page until interrupted; dead letters decoded with the schema folder."""
    import uvicorn

    from streamline.cli.status_page import DEAD_LETTERS_SHOWN, status_app
    from streamline.ops.consume import RecordPrinter
    from streamline.ops.dlq import newest_dead_letters

    try:
        store = load_store(schemas)
    except (StreamlineError, OSError):
        store = None  # dead letters are then shown as base64
    printer = RecordPrinter(store)

    def dead_letters(topic: str) -> list[dict[str, Any]]:
        letters = newest_dead_letters(connection, topic, DEAD_LETTERS_SHOWN)
        return [d.describe(printer) for d in reversed(letters)]

    app = status_app(read, dead_letters, interval_ms)
    # bound here, so the line below names the port `--port 0` picked
    sock = socket.socket(socket.AF_INET6 if ":" in host else socket.AF_INET)
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    try:
        sock.bind((host, port))
    except OSError as exc:
        sock.close()
        raise StreamlineError(
            f"cannot serve the status page on {host}:{port}: {exc.strerror or exc}"
        ) from exc
    shown = f"[{host}]" if ":" in host else host
    err.print(f"status page on http://{shown}:{sock.getsockname()[1]}/ (Ctrl-C stops it)")
    uvicorn.Server(uvicorn.Config(app, log_level="warning")).run(sockets=[sock])
