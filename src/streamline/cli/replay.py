"""`streamline replay`: process a topology's input again from an earlier point."""

from __future__ import annotations

import json
from pathlib import Path
from typing import TYPE_CHECKING, Annotated, Any

import typer

from streamline.cli.console import out
from streamline.cli.options import BootstrapOpt, KafkaConfigOpt, SchemasOpt, connect, load_checked
from streamline.cli.render import replay_table
from streamline.errors import UsageError

if TYPE_CHECKING:
    from streamline.kafka.connection import Connection
    from streamline.ops.audit import AuditLog
    from streamline.ops.replay import ReplayPlan
    from streamline.topology import CheckedTopology


def replay(
    topology: Annotated[Path, typer.Argument(help="Topology file.")],
    to_earliest: Annotated[
        bool, typer.Option("--to-earliest", help="Restart at the first offset.")
    ] = False,
    to_datetime: Annotated[
        str | None,
        typer.Option(
            "--to-datetime", help="Restart at the first record at or after this ISO time."
        ),
    ] = None,
    by_duration: Annotated[
        str | None, typer.Option("--by-duration", help="Restart this far back from now, e.g. 1h.")
    ] = None,
    to_offset: Annotated[
        str | None, typer.Option("--to-offset", help="TOPIC:PARTITION:OFFSET.")
    ] = None,
    dry_run: Annotated[
        bool, typer.Option("--dry-run", help="Print the plan; change nothing.")
    ] = False,
    plan_out: Annotated[
        Path | None,
        typer.Option(
            "--plan-out", help="Write the plan to this JSON file for review; change nothing."
        ),
    ] = None,
    apply_plan: Annotated[
        Path | None,
        typer.Option(
            "--apply",
            help="Carry out a plan written by --plan-out, exactly; refused (exit 2) if the "
            "group's offsets moved since.",
        ),
    ] = None,
    bootstrap_servers: BootstrapOpt = None,
    kafka_config: KafkaConfigOpt = None,
    schemas: SchemasOpt = None,
) -> None:
    """Reset the topology's offsets (and state) so input is processed again; prints the plan."""
    from streamline.ops.audit import AuditLog
    from streamline.ops.replay import (
        active_members,
        plan_document,
        plan_from_document,
        plan_replay,
    )

    chosen = [o for o in (to_earliest, to_datetime, by_duration, to_offset) if o]
    if apply_plan is not None:
        if chosen or dry_run or plan_out is not None:
            raise UsageError("--apply takes the plan file only: the plan already holds the targets")
        document = _read_plan(apply_plan)
    elif len(chosen) != 1:
        raise UsageError(
            "give exactly one of --to-earliest, --to-datetime, --by-duration, --to-offset"
        )
    checked, _ = load_checked(topology, schemas)
    model = checked.topology
    connection = connect(bootstrap_servers, kafka_config)
    connection.check_reachable()
    review = dry_run or plan_out is not None
    members = active_members(connection, model.group_id)
    audit = None if review else AuditLog(connection)
    if apply_plan is not None:
        plan = plan_from_document(model, checked.fingerprint, document)
    else:
        request = _request(to_earliest, to_datetime, by_duration, to_offset)
        plan = plan_replay(
            connection,
            model,
            earliest=to_earliest,
            at=_datetime(to_datetime),
            back=by_duration,
            offset=to_offset,
        )
        document = plan_document(model, checked.fingerprint, plan, request)
    out.print(replay_table(model.name, plan))
    if plan.reset.truncate:
        out.print(
            "state reset: " + ", ".join(f"{t}/{p}" for t, p, _ in plan.reset.truncate), markup=False
        )
    if plan_out is not None:
        plan_out.write_text(json.dumps(document, indent=2) + "\n")
        out.print(
            f"plan written to {plan_out}: {plan.total} records would be processed again; "
            f"apply it with --apply {plan_out}",
            markup=False,
        )
        return
    if dry_run:
        out.print(f"dry run: {plan.total} records would be processed again; nothing changed")
        return
    assert audit is not None
    _apply(audit, connection, checked, plan, document, members, from_file=apply_plan is not None)
    out.print(f"offsets reset; {plan.total} records will be processed again when the topology runs")


def _apply(
    audit: AuditLog,
    connection: Connection,
    checked: CheckedTopology,
    plan: ReplayPlan,
    document: dict[str, Any],
    members: list[str],
    from_file: bool,
) -> None:
    """Carries out the plan, refusing when instances run or (for a plan file) offsets moved
    since it was made; every outcome is an audit event."""
    from streamline.ops.replay import apply_replay, moved_since

    model = checked.topology

    def record(status: str, detail: Any) -> None:
        audit.record("replay", model.name, checked.fingerprint, document, status, detail)

    if members:
        reason = (
            f"the group {model.group_id} has active members ({', '.join(members)}); "
            "stop every instance of the topology first"
        )
        record("refused", reason)
        raise UsageError(reason)
    if from_file:
        changed = moved_since(connection, model, plan)
        if changed:
            reason = (
                "the group's offsets moved since the plan was made ("
                + "; ".join(changed)
                + "): make a new plan with --plan-out"
            )
            record("refused", reason)
            raise UsageError(reason)
    try:
        apply_replay(connection, model, plan)
    except Exception as exc:
        record("failed", str(exc))
        raise
    record("applied", {"records": plan.total})


def _read_plan(path: Path) -> Any:
    try:
        document = json.loads(path.read_text())
    except OSError as exc:
        raise UsageError(f"--apply {path}: {exc.strerror}") from None
    except ValueError as exc:
        raise UsageError(f"--apply {path}: not JSON: {exc}") from None
    return document


def _request(
    to_earliest: bool, to_datetime: str | None, by_duration: str | None, to_offset: str | None
) -> dict[str, Any]:
    if to_earliest:
        return {"to_earliest": True}
    if to_datetime:
        return {"to_datetime": to_datetime}
    if by_duration:
        return {"by_duration": by_duration}
    return {"to_offset": to_offset}


def _datetime(to_datetime: str | None) -> Any:
    from datetime import UTC, datetime

    if not to_datetime:
        return None
    try:
        at = datetime.fromisoformat(to_datetime.replace("Z", "+00:00"))
    except ValueError:
        raise UsageError(f"--to-datetime {to_datetime}: not an ISO-8601 time") from None
    return at if at.tzinfo else at.replace(tzinfo=UTC)
