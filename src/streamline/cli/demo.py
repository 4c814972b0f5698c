"""`streamline demo`: the sample topology end to end on the local broker."""

from __future__ import annotations

import os
from pathlib import Path

from streamline.cli.console import err, out
from streamline.cli.options import (
    BootstrapOpt,
    KafkaConfigOpt,
    connect,
    load_checked,
    refuse_unsafe_settings,
)
from streamline.cli.render import results_table


def demo(
    bootstrap_servers: BootstrapOpt = None,
    kafka_config: KafkaConfigOpt = None,
) -> None:
    """Start the dev broker if needed, run the sample topology on sample data, print the results."""
    from streamline.ops.demo import run_demo

    root = Path(__file__).resolve().parents[3]
    if bootstrap_servers is None and not os.environ.get("STREAMLINE_BOOTSTRAP_SERVERS"):
        from streamline.dev.broker import DevBroker

        info = DevBroker().start()
        bootstrap_servers = info.bootstrap
    topology = root / "topologies" / "revenue-per-minute.yaml"
    checked, store = load_checked(topology, root / "schemas")
    connection = connect(bootstrap_servers, kafka_config)
    refuse_unsafe_settings(checked, connection)
    connection.check_reachable()
    rows = run_demo(
        connection,
        checked,
        store,
        root / "examples" / "orders.jsonl",
        Path(".streamline/demo-state"),
        lambda line: err.print(line, markup=False),
    )
    out.print(results_table(checked.topology.sink.topic, rows))
