"""`streamline lineage trace`: the input offsets that formed a record, upstream."""

from __future__ import annotations

from typing import Annotated

import typer

from streamline.cli.console import out
from streamline.cli.options import BootstrapOpt, KafkaConfigOpt, connect

lineage_app = typer.Typer(help="Lineage of records across topologies.")


@lineage_app.command("trace")
def lineage_trace(
    topic: Annotated[str, typer.Argument(help="Topic of the record.")],
    partition: Annotated[int, typer.Argument(help="Its partition.")],
    offset: Annotated[int, typer.Argument(help="Its offset.")],
    depth: Annotated[
        int, typer.Option("--depth", help="How many topologies upstream to follow.")
    ] = 1,
    bootstrap_servers: BootstrapOpt = None,
    kafka_config: KafkaConfigOpt = None,
) -> None:
    """The input offset ranges that formed a record, followed upstream across topologies."""
    from streamline.ops.lineage import trace

    connection = connect(bootstrap_servers, kafka_config)
    connection.check_reachable()
    for step in trace(connection, topic, partition, offset, depth):
        jobs = ", ".join(sorted(step.jobs)) or "-"
        out.print(f"depth {step.depth} (written by {jobs}):", markup=False)
        for t, p, first, last in step.ranges:
            out.print(
                f"  {t}/{p} offsets {first}-{last} ({last - first + 1} records)", markup=False
            )
