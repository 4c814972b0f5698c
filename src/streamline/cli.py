"""The `streamline` command (shared contract: docs in README.md)."""

from __future__ import annotations

import json
import os
import signal
import sys
from pathlib import Path
from typing import Annotated, Any

import typer
from rich.console import Console

from streamline.connection import Connection, resolve_connection
from streamline.errors import StreamlineError, UsageError

app = typer.Typer(
    name="streamline",
    help="Kafka-native stream processing: exactly-once, watermark-correct, traceable.",
    no_args_is_help=True,
    pretty_exceptions_enable=False,
    add_completion=False,
)
broker_app = typer.Typer(help="The local single-node Apache Kafka broker (KRaft, loopback).")
app.add_typer(broker_app, name="dev-broker")

err = Console(stderr=True, highlight=False, soft_wrap=True)
out = Console(highlight=False, soft_wrap=True, width=None if sys.stdout.isatty() else 200)

BootstrapOpt = Annotated[
    str | None,
    typer.Option(
        "--bootstrap-servers",
        "-b",
        help="Kafka address (else STREAMLINE_BOOTSTRAP_SERVERS, else the dev broker).",
    ),
]
KafkaConfigOpt = Annotated[
    Path | None,
    typer.Option(
        "--kafka-config", help="librdkafka settings, key=value lines (security, SASL, TLS)."
    ),
]
SchemasOpt = Annotated[
    Path | None,
    typer.Option(
        "--schemas", help="Folder of .avsc files (else STREAMLINE_SCHEMAS, else ./schemas)."
    ),
]
DataDirOpt = Annotated[
    Path | None,
    typer.Option("--data-dir", help="Broker storage and logs (default .streamline/broker)."),
]


def schemas_dir(explicit: Path | None, topology: Path | None = None) -> Path:
    """--schemas, else STREAMLINE_SCHEMAS, else schemas/ beside the topology's folder, else ./schemas."""
    if explicit is not None:
        return explicit
    env = os.environ.get("STREAMLINE_SCHEMAS")
    if env:
        return Path(env)
    if topology is not None:
        beside = topology.resolve().parent.parent / "schemas"
        if beside.is_dir():
            return beside
    return Path("schemas")


def load_store(explicit: Path | None, topology: Path | None = None) -> Any:
    from streamline.serde import SchemaStore

    return SchemaStore(schemas_dir(explicit, topology))


def connect(bootstrap: str | None, kafka_config: Path | None) -> Connection:
    return resolve_connection(bootstrap, kafka_config)


# --- dev-broker ---------------------------------------------------------------------------


@broker_app.command("start")
def broker_start(
    port: Annotated[int | None, typer.Option(help="Listener port (default 9092).")] = None,
    data_dir: DataDirOpt = None,
    sasl: Annotated[
        bool,
        typer.Option(
            "--sasl", help="SASL/SCRAM-SHA-256 (and -512) listener, ACLs on, an admin super user."
        ),
    ] = False,
    tls: Annotated[
        bool,
        typer.Option("--tls", help="TLS listener with a throwaway CA (with --sasl: SASL_SSL)."),
    ] = False,
    admin_user: Annotated[
        str,
        typer.Option(
            "--admin-user", envvar="STREAMLINE_DEV_BROKER_USER", help="The SASL super user."
        ),
    ] = "admin",
    admin_password: Annotated[
        str | None,
        typer.Option(
            "--admin-password",
            envvar="STREAMLINE_DEV_BROKER_PASSWORD",
            help="Its password (default: random, kept in DATA_DIR/client.properties).",
        ),
    ] = None,
    users: Annotated[
        list[str] | None,
        typer.Option(
            "--user", help="A further SCRAM user without ACLs, NAME:PASSWORD (repeatable)."
        ),
    ] = None,
) -> None:
    """Start the broker in the background (or reuse the running one) and print its address."""
    from streamline.dev.broker import DevBroker, Security

    extra: list[tuple[str, str]] = []
    for user in users or []:
        name, colon, password = user.partition(":")
        if not (name and colon and password):
            raise UsageError(f"--user {name or user}: expected NAME:PASSWORD")
        extra.append((name, password))
    if extra and not sasl:
        raise UsageError("--user needs --sasl")
    security = Security(sasl, tls, admin_user, admin_password, tuple(extra))
    broker = DevBroker(data_dir)
    already = broker.info()
    if already is None:
        err.print(f"starting Apache Kafka (KRaft) from {broker.data_dir} ...")
    info = broker.start(port, security=security)
    note = "already running" if already else f"started (pid {info.pid})"
    err.print(f"dev broker {note}; logs in {broker.log_file}")
    if info.client:
        shown: dict[str, str] = {}
        for key, value in info.client.items():
            shown[key] = value
            if key == "sasl.username":  # the password itself is only in client.properties
                shown["sasl.password"] = "***"
        err.print(
            f"{info.security} listener; clients set "
            + " ".join(f"{k}={v}" for k, v in shown.items())
            + f"; every setting, with the password: --kafka-config {info.client_config_file}",
            markup=False,
        )
    print(info.bootstrap)


@broker_app.command("stop")
def broker_stop(data_dir: DataDirOpt = None) -> None:
    """Stop the broker gracefully (killed after 30 s)."""
    from streamline.dev.broker import DevBroker

    stopped = DevBroker(data_dir).stop()
    print("dev broker stopped" if stopped else "no dev broker running")


@broker_app.command("status")
def broker_status(data_dir: DataDirOpt = None) -> None:
    """Say whether the broker runs and where; exit status 1 when it does not."""
    from streamline.dev.broker import DevBroker

    broker = DevBroker(data_dir)
    info = broker.info()
    if info is None:
        print(f"no dev broker running from {broker.data_dir}")
        raise typer.Exit(1)
    print(
        f"dev broker running at {info.bootstrap} (pid {info.pid}, data {info.data_dir}, "
        f"{info.security})"
    )


# --- produce / consume --------------------------------------------------------------------


@app.command()
def produce(
    topic: Annotated[str, typer.Argument(help="Topic to write to.")],
    schema: Annotated[
        str, typer.Option("--schema", help="Full Avro name, e.g. com.example.Order.")
    ],
    file: Annotated[
        Path | None,
        typer.Option("--file", "-f", help="JSON lines, or CSV by extension; default stdin."),
    ] = None,
    key_field: Annotated[
        str | None, typer.Option("--key-field", help="Field whose value becomes the record key.")
    ] = None,
    rate: Annotated[
        float | None, typer.Option("--rate", help="At most N records per second.")
    ] = None,
    bootstrap_servers: BootstrapOpt = None,
    kafka_config: KafkaConfigOpt = None,
    schemas: SchemasOpt = None,
) -> None:
    """Validate JSON lines or CSV against a schema and produce them as single-object Avro."""
    from streamline.ops.produce import produce as run_produce

    store = load_store(schemas)
    connection = connect(bootstrap_servers, kafka_config)
    report = run_produce(
        connection,
        topic,
        store,
        schema,
        file,
        key_field=key_field,
        rate=rate,
        progress=sys.stderr.isatty(),
        on_invalid=lambda n, reason: err.print(f"line {n}: {reason}", markup=False),
    )
    invalid = len(report.invalid)
    err.print(
        f"sent {report.sent} records to {topic}"
        + (f"; {invalid} invalid lines not sent" if invalid else "")
    )
    if invalid:
        raise typer.Exit(2)


@app.command()
def consume(
    topic: Annotated[str, typer.Argument(help="Topic to read.")],
    from_beginning: Annotated[
        bool, typer.Option("--from-beginning", help="Start at the earliest offset.")
    ] = False,
    max_records: Annotated[int | None, typer.Option("--max", help="Stop after N records.")] = None,
    timeout: Annotated[
        float | None, typer.Option("--timeout", help="Stop after S seconds without a new record.")
    ] = None,
    headers: Annotated[bool, typer.Option("--headers", help="Print record headers too.")] = False,
    reader_schema: Annotated[
        str | None,
        typer.Option("--schema", help="Read values as this schema (default: the writer's)."),
    ] = None,
    bootstrap_servers: BootstrapOpt = None,
    kafka_config: KafkaConfigOpt = None,
    schemas: SchemasOpt = None,
) -> None:
    """Print committed records as JSON lines, decoding single-object Avro with the schema store."""
    from streamline.ops.consume import RecordPrinter, read_topic

    store = (
        load_store(schemas)
        if (schemas or Path("schemas").is_dir() or os.environ.get("STREAMLINE_SCHEMAS"))
        else None
    )
    printer = RecordPrinter(store, reader_schema)
    connection = connect(bootstrap_servers, kafka_config)
    connection.check_reachable()
    for msg in read_topic(connection, topic, from_beginning, max_records, timeout):
        print(json.dumps(printer.to_json(msg, headers)), flush=True)


# --- topologies ---------------------------------------------------------------------------


def load_checked(path: Path, schemas: Path | None) -> tuple[Any, Any]:
    """The topology at `path`, type-checked: (CheckedTopology, SchemaStore)."""
    from streamline.topology import check_topology, load_topology

    topology = load_topology(path)
    store = load_store(schemas, path)
    return check_topology(topology, store), store


def checked_and_connected(
    topology: Path, schemas: Path | None, bootstrap: str | None, kafka_config: Path | None
) -> tuple[Any, Connection]:
    """The checked topology and a connection to a broker that answers."""
    checked, _ = load_checked(topology, schemas)
    connection = connect(bootstrap, kafka_config)
    connection.check_reachable()
    return checked, connection


@app.command()
def validate(
    topologies: Annotated[list[Path], typer.Argument(help="Topology files.")],
    schemas: SchemasOpt = None,
) -> None:
    """Load and type-check topologies; print each stage chain with its schemas and the fingerprint."""
    from streamline.topology import render_chain

    failed = 0
    for path in topologies:
        try:
            checked, _ = load_checked(path, schemas)
        except UsageError as exc:
            err.print(f"error: {exc}", markup=False)
            failed += 1
            continue
        out.print(render_chain(checked), markup=False)
    if failed:
        raise typer.Exit(2)


topics_app = typer.Typer(help="Topics of a topology.")
app.add_typer(topics_app, name="topics")


@topics_app.command("create")
def topics_create(
    topology: Annotated[Path, typer.Argument(help="Topology file.")],
    partitions: Annotated[int, typer.Option("--partitions", help="Partitions of new topics.")] = 3,
    replication_factor: Annotated[int, typer.Option("--replication-factor")] = 1,
    bootstrap_servers: BootstrapOpt = None,
    kafka_config: KafkaConfigOpt = None,
    schemas: SchemasOpt = None,
) -> None:
    """Create the source, sink and owned topics (dlq, retry, late, changelog, lineage, heartbeats)."""
    from streamline.ops.topics import create_topics, existing_topics, topology_topics

    checked, connection = checked_and_connected(topology, schemas, bootstrap_servers, kafka_config)
    existing = existing_topics(connection)
    wanted = topology_topics(checked.topology, partitions, existing)
    created = set(create_topics(connection, wanted, replication_factor))
    for name, (wanted_count, configs) in wanted.items():
        state = "created" if name in created else "exists"
        count = existing.get(name, wanted_count)
        extra = " (compacted)" if "compact" in configs.get("cleanup.policy", "") else ""
        out.print(f"{state:8} {name} [{count} partitions]{extra}", markup=False)


@app.command()
def run(
    topology: Annotated[Path, typer.Argument(help="Topology file.")],
    instance_id: Annotated[
        str | None,
        typer.Option("--instance-id", help="Stable id of this instance (default: host name)."),
    ] = None,
    state_dir: Annotated[
        Path, typer.Option("--state-dir", help="Local state (RocksDB, checkpoints).")
    ] = Path(".streamline/state"),
    metrics_port: Annotated[
        int, typer.Option("--metrics-port", help="Prometheus /metrics port (0: any free).")
    ] = 9400,
    metrics_host: Annotated[
        str, typer.Option("--metrics-host", help="Address /metrics binds to.")
    ] = "127.0.0.1",
    stall_timeout: Annotated[
        float,
        typer.Option(
            "--stall-timeout",
            min=0,
            help="Seconds without progress (a stuck map, a hung call) after which /healthz "
            "answers 503, so a liveness probe restarts the process; 0: never.",
        ),
    ] = 120.0,
    bootstrap_servers: BootstrapOpt = None,
    kafka_config: KafkaConfigOpt = None,
    schemas: SchemasOpt = None,
) -> None:
    """Run a topology until SIGTERM/SIGINT; then commit or abort and leave the group cleanly."""
    import logging
    import socket

    from streamline.connection import RedactingFilter
    from streamline.runtime.processor import RunOptions
    from streamline.runtime.runner import run_topology

    logging.basicConfig(
        level=os.environ.get("STREAMLINE_LOG_LEVEL", "INFO").upper(),
        format="%(asctime)s %(levelname)s %(name)s: %(message)s",
        stream=sys.stderr,
    )
    for handler in logging.getLogger().handlers:
        handler.addFilter(RedactingFilter())
    checked, store = load_checked(topology, schemas)
    connection = connect(bootstrap_servers, kafka_config)
    options = RunOptions(
        instance_id=instance_id or socket.gethostname(),
        state_dir=state_dir,
        stall_timeout_s=stall_timeout,
    )
    run_topology(checked, store, connection, options, metrics_host, metrics_port)


@app.command()
def demo(
    bootstrap_servers: BootstrapOpt = None,
    kafka_config: KafkaConfigOpt = None,
) -> None:
    """Start the dev broker if needed, run the sample topology on sample data, print the results."""
    from streamline.ops.demo import run_demo

    root = Path(__file__).resolve().parents[2]
    if bootstrap_servers is None and not os.environ.get("STREAMLINE_BOOTSTRAP_SERVERS"):
        from streamline.dev.broker import DevBroker

        info = DevBroker().start()
        bootstrap_servers = info.bootstrap
    topology = root / "topologies" / "revenue-per-minute.yaml"
    checked, store = load_checked(topology, root / "schemas")
    connection = connect(bootstrap_servers, kafka_config)
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


def results_table(title: str, rows: list[dict[str, Any]]) -> Any:
    """Output records as a table; window bounds as UTC times, numbers rounded."""
    from datetime import UTC, datetime

    from rich.table import Table

    table = Table(title=f"{title}: {len(rows)} records")
    fields = list(rows[0]) if rows else []
    for name in fields:
        table.add_column(name, justify="right" if name not in ("customer_id",) else "left")

    def cell(name: str, value: Any) -> str:
        if name.startswith("window_") and isinstance(value, int):
            return datetime.fromtimestamp(value / 1000, UTC).strftime("%H:%M:%S")
        if isinstance(value, float):
            return f"{value:.2f}"
        return str(value)

    order = sorted(rows, key=lambda r: (r.get("window_start", 0), str(r.get(fields[0]))))
    for row in order:
        table.add_row(*(cell(f, row[f]) for f in fields))
    return table


@app.command()
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

    from rich.table import Table

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
    table = Table(title=f"replay plan for {model.name} (state generation {plan.generation})")
    for column in ("topic", "partition", "current", "target", "to reprocess"):
        table.add_column(column, justify="left" if column == "topic" else "right")
    for p in plan.partitions:
        current = "-" if p.current is None else str(p.current)
        table.add_row(p.topic, str(p.partition), current, str(p.target), str(p.reprocess))
    out.print(table)
    if plan.truncate:
        out.print(
            "state reset: " + ", ".join(f"{t}/{p}" for t, p, _ in plan.truncate), markup=False
        )
    if dry_run:
        out.print(f"dry run: {plan.total} records would be processed again; nothing changed")
        return
    apply_replay(connection, model, plan)
    out.print(f"offsets reset; {plan.total} records will be processed again when the topology runs")


@app.command()
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
        from datetime import UTC, datetime

        rows = topology_lag(connection, checked.topology)
        now_ms = time.time() * 1000
        table = Table(title=f"lag of {checked.topology.group_id}")
        for column in (
            "topic",
            "partition",
            "committed",
            "end",
            "lag",
            "watermark",
            "staleness",
            "sla",
        ):
            table.add_column(column, justify="left" if column in ("topic", "sla") else "right")
        for r in rows:
            committed = "-" if r.committed is None else str(r.committed)
            watermark = staleness = "-"
            if r.watermark is not None:
                watermark = datetime.fromtimestamp(r.watermark / 1000, UTC).strftime(
                    "%Y-%m-%d %H:%M:%S"
                )
                staleness = f"{(now_ms - r.watermark) / 1000:.1f}s"
            table.add_row(
                r.topic,
                str(r.partition),
                committed,
                str(r.end),
                str(r.lag),
                watermark,
                staleness,
                r.status or "-",
            )
        table.add_row(
            "total",
            "",
            "",
            str(sum(r.end for r in rows)),
            str(sum(r.lag for r in rows)),
            "",
            "",
            "",
        )
        return table

    if not watch:
        out.print(render())
        return
    with Live(render(), console=out, refresh_per_second=1) as live:
        while True:
            time.sleep(2)
            live.update(render())


# --- dead letters -------------------------------------------------------------------------

dlq_app = typer.Typer(
    help="A topology's dead letters: count and show them, replay chosen ones to its source."
)
app.add_typer(dlq_app, name="dlq")


@dlq_app.command("list")
def dlq_list(
    topology: Annotated[Path, typer.Argument(help="Topology file.")],
    bootstrap_servers: BootstrapOpt = None,
    kafka_config: KafkaConfigOpt = None,
    schemas: SchemasOpt = None,
) -> None:
    """Count the committed dead letters by error type, stage and rule."""
    from streamline.ops.dlq import count_dead_letters, summary_table

    checked, connection = checked_and_connected(topology, schemas, bootstrap_servers, kafka_config)
    dlq = checked.topology.dead_letter_topic
    counts = count_dead_letters(connection, dlq)
    if not counts:
        out.print(f"no dead letters in {dlq}", markup=False)
        return
    out.print(summary_table(dlq, counts))


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
    from streamline.ops.dlq import replay_dead_letters

    checked, connection = checked_and_connected(topology, schemas, bootstrap_servers, kafka_config)
    report = replay_dead_letters(connection, checked.topology, error_type, dry_run)

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


lineage_app = typer.Typer(help="Lineage of records across topologies.")
app.add_typer(lineage_app, name="lineage")


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


# --- security -----------------------------------------------------------------------------


@app.command()
def acls(
    topology: Annotated[Path, typer.Argument(help="Topology file.")],
    principal: Annotated[
        str, typer.Option("--principal", help="Who runs the topology, e.g. User:orders-app.")
    ],
    apply: Annotated[
        bool, typer.Option("--apply", help="Create them (as a user allowed to ALTER the cluster).")
    ] = False,
    bootstrap_servers: BootstrapOpt = None,
    kafka_config: KafkaConfigOpt = None,
    schemas: SchemasOpt = None,
) -> None:
    """The ACLs a principal needs to run a topology; --apply creates them."""
    from streamline.ops.acls import create_acls, render, topology_acls

    if ":" not in principal:
        raise UsageError(f"--principal {principal}: expected TYPE:NAME, e.g. User:orders-app")
    checked, _ = load_checked(topology, schemas)
    wanted = topology_acls(checked.topology)
    for line in render(wanted, principal):
        out.print(line, markup=False)
    if apply:
        connection = connect(bootstrap_servers, kafka_config)
        connection.check_reachable()
        create_acls(connection, wanted, principal)
        out.print(f"created {len(wanted)} ACLs for {principal}", markup=False)


# --- entry point --------------------------------------------------------------------------


def main() -> None:
    """Runs the command; an error the user caused prints one line and no traceback.

    Known secret values are masked in that line, and a Kafka client error that no command
    turned into a message of its own still prints as one line.
    """
    from confluent_kafka import KafkaException

    from streamline.connection import redact

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
