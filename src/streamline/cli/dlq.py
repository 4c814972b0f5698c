"""`streamline dlq list|show|replay`: a topology's dead letters."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Annotated, Any

import typer

from streamline.cli.console import err, out
from streamline.cli.options import (
    BootstrapOpt,
    KafkaConfigOpt,
    SchemasOpt,
    checked_and_connected,
    connect,
    load_checked,
)
from streamline.cli.render import dead_letter_table

dlq_app = typer.Typer(
    help="A topology's dead letters: count and show them, replay chosen ones to its source."
)


@dlq_app.command("list")
def dlq_list(
    topology: Annotated[Path, typer.Argument(help="Topology file.")],
    bootstrap_servers: BootstrapOpt = None,
    kafka_config: KafkaConfigOpt = None,
    schemas: SchemasOpt = None,
) -> None:
    """Count the committed dead letters by error type, stage and rule."""
    from streamline.ops.dlq import count_dead_letters

    checked, connection = checked_and_connected(topology, schemas, bootstrap_servers, kafka_config)
    dlq = checked.topology.dead_letter_topic
    counts = count_dead_letters(connection, dlq)
    if not counts:
        out.print(f"no dead letters in {dlq}", markup=False)
        return
    out.print(dead_letter_table(dlq, counts))


@dlq_app.command("show")
def dlq_show(
    topology: Annotated[Path, typer.Argument(help="Topology file.")],
    limit: Annotated[
        int, typer.Option("--limit", min=1, help="How many of the newest to print.")
    ] = 20,
    bootstrap_servers: BootstrapOpt = None,
    kafka_config: KafkaConfigOpt = None,
    schemas: SchemasOpt = None,
) -> None:
    """Print the newest dead letters as JSON lines: where and why they failed, the decoded value."""
    from streamline.ops.consume import RecordPrinter
    from streamline.ops.dlq import newest_dead_letters

    checked, store = load_checked(topology, schemas)
    connection = connect(bootstrap_servers, kafka_config)
    connection.check_reachable()
    printer = RecordPrinter(store)
    dlq = checked.topology.dead_letter_topic
    letters = newest_dead_letters(connection, dlq, limit)
    if not letters:
        err.print(f"no dead letters in {dlq}", markup=False)
    for letter in letters:
        print(json.dumps(letter.describe(printer)), flush=True)


@dlq_app.command("replay")
def dlq_replay(
    topology: Annotated[Path, typer.Argument(help="Topology file.")],
    error_type: Annotated[
        str | None, typer.Option("--error-type", help="Only this error type (default: all).")
    ] = None,
    dry_run: Annotated[
        bool, typer.Option("--dry-run", help="Print what would be sent; send nothing.")
    ] = False,
    bootstrap_servers: BootstrapOpt = None,
    kafka_config: KafkaConfigOpt = None,
    schemas: SchemasOpt = None,
) -> None:
    """Re-produce dead letters not replayed before to the source topic, original bytes, replay headers."""
    from streamline.ops.audit import AuditLog
    from streamline.ops.dlq import replay_dead_letters

    checked, connection = checked_and_connected(topology, schemas, bootstrap_servers, kafka_config)
    model = checked.topology
    audit = None if dry_run else AuditLog(connection)
    plan = {"dead_letter_topic": model.dead_letter_topic, "error_type": error_type or "all"}
    try:
        report = replay_dead_letters(connection, model, error_type, dry_run)
    except Exception as exc:
        if audit is not None:
            audit.record("dlq-replay", model.name, checked.fingerprint, plan, "failed", str(exc))
        raise
    if audit is not None:
        result = {"sent": dict(report.sent), "skipped_already_replayed": dict(report.skipped)}
        audit.record("dlq-replay", model.name, checked.fingerprint, plan, "applied", result)

    def by_type(counts: Any) -> str:
        return ", ".join(f"{kind} {n}" for kind, n in sorted(counts.items()))

    if dry_run:
        for entry in report.sample:
            print(json.dumps(entry))
    total = sum(report.sent.values())
    verb = "would replay" if dry_run else "replayed"
    targets = ", ".join(sorted(report.targets)) or checked.topology.source.topic
    out.print(
        f"{verb} {total} dead letters to {targets}"
        + (f" ({by_type(report.sent)})" if total else ""),
        markup=False,
    )
    if report.skipped:
        out.print(
            f"skipped {sum(report.skipped.values())} already replayed ({by_type(report.skipped)}) "
            f"per the offsets of consumer groups {', '.join(report.position_groups)}",
            markup=False,
        )
    if report.other_types:
        out.print(
            f"left {sum(report.other_types.values())} of other error types "
            f"({by_type(report.other_types)})",
            markup=False,
        )
