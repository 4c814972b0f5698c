"""`streamline replay`: process a topology's input again from an earlier point."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated

import typer

from streamline.cli.console import out
from streamline.cli.options import BootstrapOpt, KafkaConfigOpt, SchemasOpt, connect, load_checked
from streamline.cli.render import replay_table
from streamline.errors import UsageError


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
    bootstrap_servers: BootstrapOpt = None,
    kafka_config: KafkaConfigOpt = None,
    schemas: SchemasOpt = None,
) -> None:
    """Reset the topology's offsets (and state) so input is processed again; prints the plan."""
    from datetime import UTC, datetime

    from streamline.ops.replay import active_members, apply_replay, plan_replay

    chosen = [o for o in (to_earliest, to_datetime, by_duration, to_offset) if o]
    if len(chosen) != 1:
        raise UsageError(
            "give exactly one of --to-earliest, --to-datetime, --by-duration, --to-offset"
        )
    at = None
    if to_datetime:
        try:
            at = datetime.fromisoformat(to_datetime.replace("Z", "+00:00"))
        except ValueError:
            raise UsageError(f"--to-datetime {to_datetime}: not an ISO-8601 time") from None
        at = at if at.tzinfo else at.replace(tzinfo=UTC)
    checked, _ = load_checked(topology, schemas)
    model = checked.topology
    connection = connect(bootstrap_servers, kafka_config)
    connection.check_reachable()
    members = active_members(connection, model.group_id)
    if members and not dry_run:
        raise UsageError(
            f"the group {model.group_id} has active members ({', '.join(members)}); "
            "stop every instance of the topology first"
        )
    plan = plan_replay(
        connection, model, earliest=to_earliest, at=at, back=by_duration, offset=to_offset
    )
    out.print(replay_table(model.name, plan))
    if plan.reset.truncate:
        out.print(
            "state reset: " + ", ".join(f"{t}/{p}" for t, p, _ in plan.reset.truncate), markup=False
        )
    if dry_run:
        out.print(f"dry run: {plan.total} records would be processed again; nothing changed")
        return
    apply_replay(connection, model, plan)
    out.print(f"offsets reset; {plan.total} records will be processed again when the topology runs")
