"""`streamline lag`: how far a topology's consumer group is behind."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated

import typer

from streamline.cli.console import out
from streamline.cli.options import BootstrapOpt, KafkaConfigOpt, SchemasOpt, checked_and_connected
from streamline.cli.render import lag_table


def lag(
    topology: Annotated[Path, typer.Argument(help="Topology file.")],
    watch: Annotated[
        bool, typer.Option("--watch", help="Refresh every 2 s until interrupted.")
    ] = False,
    bootstrap_servers: BootstrapOpt = None,
    kafka_config: KafkaConfigOpt = None,
    schemas: SchemasOpt = None,
) -> None:
    """Per partition: committed offset, end offset and lag of the topology's group; totals."""
    import time

    from rich.live import Live
    from rich.table import Table

    from streamline.ops.lag import topology_lag

    checked, connection = checked_and_connected(topology, schemas, bootstrap_servers, kafka_config)

    def render() -> Table:
        return lag_table(checked.topology.group_id, topology_lag(connection, checked.topology))

    if not watch:
        out.print(render())
        return
    with Live(render(), console=out, refresh_per_second=1) as live:
        while True:
            time.sleep(2)
            live.update(render())
