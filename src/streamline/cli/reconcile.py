"""`streamline reconcile`: every input of a time range accounted for, from lineage."""

from __future__ import annotations

import json
import time
from pathlib import Path
from typing import Annotated

import typer

from streamline.cli.console import err, out
from streamline.cli.options import (
    BootstrapOpt,
    KafkaConfigOpt,
    SchemasOpt,
    checked_and_connected,
    load_store,
)
from streamline.cli.render import reconcile_table

UNBALANCED = 3
"""Exit status when some input is not accounted for."""


def reconcile(
    topology: Annotated[Path, typer.Argument(help="Topology file.")],
    since: Annotated[
        str,
        typer.Option("--since", help="Start: a duration back from now (1h) or an ISO-8601 time."),
    ],
    until: Annotated[
        str | None,
        typer.Option("--until", help="End (default now): a duration back or an ISO-8601 time."),
    ] = None,
    as_json: Annotated[bool, typer.Option("--json", help="Print the result as JSON.")] = False,
    bootstrap_servers: BootstrapOpt = None,
    kafka_config: KafkaConfigOpt = None,
    schemas: SchemasOpt = None,
) -> None:
    """Prove every input of the transactions committed in a time range is accounted for.

    Per source partition: inputs = outputs + dead letters + late + drops + records waiting
    in the retry topic, each input read once. Exit 0 when balanced, 3 when not.
    """
    from streamline.ops.reconcile import parse_time
    from streamline.ops.reconcile import reconcile as run_reconcile

    checked, connection = checked_and_connected(topology, schemas, bootstrap_servers, kafka_config)
    now_ms = int(time.time() * 1000)
    since_ms = parse_time(since, now_ms)
    until_ms = parse_time(until, now_ms) if until else now_ms
    readers = None
    if checked.topology.window is not None:
        from streamline.ops.reconcile_windows import window_readers
        from streamline.serde import AvroCodec

        store = load_store(schemas, topology)
        readers = window_readers(
            AvroCodec(store, checked.source_schema).decode,
            AvroCodec(store, checked.sink_schema).decode,
            checked.topology.source.event_time,
        )
    result = run_reconcile(connection, checked.topology, since_ms, until_ms, readers)
    if as_json:
        print(json.dumps(result.as_dict(), indent=2))
    else:
        if not result.transactions:
            err.print(
                f"no committed transaction of {result.topology} in the range: nothing to reconcile",
                markup=False,
            )
        out.print(reconcile_table(result))
        for problem in result.output_problems:
            err.print(f"outputs: {problem}", markup=False)
        for p in result.partitions:
            where = f"{p.topic}/{p.partition}"
            for problem in p.problems:
                err.print(f"{where}: {problem}", markup=False)
            if p.unexplained:
                shown = ", ".join(str(o) for o in p.unexplained_offsets)
                err.print(
                    f"{where}: {p.unexplained} input records unexplained, first: {shown}",
                    markup=False,
                )
    if not result.balanced:
        raise typer.Exit(UNBALANCED)
