"""The `streamline` command (shared contract: docs in README.md).

One module per command group holds its commands; `app` below wires them up, in the order
`streamline --help` lists them. Every rich table is drawn in `streamline.cli.render`;
`streamline.ops` returns the data and prints nothing.
"""

from __future__ import annotations

import signal
import sys

import typer

from streamline.cli import (
    acls,
    broker,
    demo,
    dlq,
    evidence,
    ingest,
    lag,
    lineage,
    reconcile,
    records,
    replay,
    status,
    testing,
    topics,
    topologies,
)
from streamline.cli.console import err
from streamline.errors import StreamlineError, UsageError

app = typer.Typer(
    name="streamline",
    help="Kafka-native stream processing: exactly-once, watermark-correct, traceable.",
    no_args_is_help=True,
    pretty_exceptions_enable=False,
    add_completion=False,
)
# in the order `streamline --help` lists them
for command in (
    records.produce,
    records.consume,
    topologies.validate,
    topologies.run,
    testing.test,
    demo.demo,
    replay.replay,
    lag.lag,
    status.status,
    reconcile.reconcile,
    acls.acls,
):
    app.command()(command)
app.add_typer(broker.broker_app, name="dev-broker")
app.add_typer(topics.topics_app, name="topics")
app.add_typer(dlq.dlq_app, name="dlq")
app.add_typer(lineage.lineage_app, name="lineage")
app.add_typer(evidence.evidence_app, name="evidence")
app.add_typer(ingest.ingest_app, name="ingest")


def main() -> None:
    """Runs the command; an error the user caused prints one line and no traceback.

    Known secret values are masked in that line, and a Kafka client error that no command
    turned into a message of its own still prints as one line.
    """
    from confluent_kafka import KafkaException

    from streamline.kafka.redaction import redact

    signal.signal(signal.SIGPIPE, signal.SIG_DFL)
    try:
        app()
    except StreamlineError as exc:
        err.print(f"error: {redact(str(exc))}", markup=False)
        sys.exit(exc.exit_code)
    except KafkaException as exc:
        error = exc.args[0] if exc.args else None
        text = error.str() if error is not None and hasattr(error, "str") else str(exc)
        err.print(f"error: Kafka: {redact(text)}", markup=False)
        sys.exit(1)
    except KeyboardInterrupt:
        sys.exit(130)


__all__ = ["UsageError", "app", "main"]
