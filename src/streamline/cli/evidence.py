"""`streamline evidence export`: a topology's lineage, dead letters, SLA history and audit events as files."""

from __future__ import annotations

import time
from pathlib import Path
from typing import Annotated

import typer

from streamline.cli.console import err, out
from streamline.cli.options import BootstrapOpt, KafkaConfigOpt, SchemasOpt, connect, load_checked
from streamline.errors import UsageError

evidence_app = typer.Typer(help="Evidence for audits: what a topology did in a time range.")


@evidence_app.command("export")
def evidence_export(
    topology: Annotated[Path, typer.Argument(help="Topology file.")],
    out_dir: Annotated[Path, typer.Option("--out", help="Folder to write the files to.")],
    since: Annotated[
        str,
        typer.Option("--since", help="Start: a duration back from now (24h) or an ISO-8601 time."),
    ] = "24h",
    until: Annotated[
        str | None,
        typer.Option("--until", help="End (default now): a duration back or an ISO-8601 time."),
    ] = None,
    fmt: Annotated[str, typer.Option("--format", help="parquet, csv or jsonl.")] = "parquet",
    bootstrap_servers: BootstrapOpt = None,
    kafka_config: KafkaConfigOpt = None,
    schemas: SchemasOpt = None,
) -> None:
    """Write lineage, decoded dead letters, SLA history and audit events, with a manifest."""
    from rich.progress import Progress, SpinnerColumn, TaskID, TextColumn

    from streamline.ops.evidence import FORMATS, export_evidence
    from streamline.ops.reconcile import parse_time

    if fmt not in FORMATS:
        raise UsageError(f"--format {fmt}: expected one of {', '.join(FORMATS)}")
    checked, store = load_checked(topology, schemas)
    connection = connect(bootstrap_servers, kafka_config)
    connection.check_reachable()
    now_ms = int(time.time() * 1000)
    since_ms = parse_time(since, now_ms)
    until_ms = parse_time(until, now_ms) if until else now_ms
    columns = (
        SpinnerColumn(),
        TextColumn("{task.description}"),
        TextColumn("{task.completed} rows"),
    )
    with Progress(*columns, console=err, transient=True) as bar:
        tasks: dict[str, TaskID] = {}

        def advance(table: str, rows: int) -> None:
            if table not in tasks:
                tasks[table] = bar.add_task(table, total=None)
            bar.advance(tasks[table], rows)

        manifest = export_evidence(
            connection,
            checked,
            store,
            out_dir,
            fmt,
            since_ms,
            until_ms,
            advance,
        )
    for name, entry in manifest["files"].items():
        out.print(f"{name:24} {entry['rows']:>9} rows  sha256 {entry['sha256']}", markup=False)
    out.print(f"manifest: {out_dir / 'manifest.json'}", markup=False)
