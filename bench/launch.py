"""How each system runs each workload: its command, topics, consumer group and output decoder."""

from __future__ import annotations

import json
import os
import sys
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from bench.cluster import KEEP, LOG_APPEND, OutputRecord
from bench.joins import W4_STAGES, W4_TABLES, enriched_row, table_topic
from bench.report import Row
from bench.workload import (
    CLOSING_PREFIX,
    PARTITIONS,
    SESSION_GAP_MS,
    WINDOW_MS,
    paid_row,
    window_row,
)
from streamline.serde import AvroCodec, SchemaStore

ROOT = Path(__file__).resolve().parents[1]
VENVS = ROOT / "bench" / ".venvs"

# which workloads each system has, and why not the others
SUPPORTED: dict[str, dict[str, str | None]] = {
    "bare": {"W0": None, "W0-tx": None},
    "streamline": {"W1": None, "W1-alo": None, "W1-cf": None, "W2": None, "W3": None, "W4": None},
    "quix": {"W1": None, "W2": None, "W3": None, "W4": None},
    "faust": {
        "W1": None,
        "W2": None,
        "W3": "faust has tumbling and hopping windows only, no session windows",
        "W4": "faust has no stream-table join",
    },
    "bytewax": {
        "W1": None,
        "W2": "not written: Bytewax's event clocks are per key, so a customer's last window "
        "closes only a window length of wall-clock time after its last order",
        "W3": "not written (the same per-key clocks as W2)",
        "W4": "not written: Bytewax has no as-of (versioned) table join",
    },
}

STREAMLINE_TOPOLOGY = """\
apiVersion: streamline/v1
name: {name}
version: "1"
sources:
  - name: orders
    topic: {source}
    schema: com.example.Order
    event_time: created_at
    partitioned_by: customer_id
    watermark:
      max_out_of_orderness: 0s
{tables}stages:
{stages}
sink:
  topic: {sink}
  schema: {sink_schema}
guarantee: exactly_once
commit_interval: {commit_interval_ms}ms
"""

W1_STAGES = """\
  - validate:
      rules:
        - name: amount_positive
          expr: "amount > 0.0"
        - name: known_currency
          expr: "currency in ['EUR', 'USD']"
      on_failure: dead_letter
  - filter: "status == 'PAID'"
  - map: examples.orders:to_eur
"""

WINDOW_STAGES = """\
  - key_by: customer_id
  - window:
      {window}
      aggregate:
        order_count: count()
        revenue: sum(amount)
      emit: final
"""

Decoder = Callable[[OutputRecord], tuple[Any, Row] | None]


@dataclass
class Launch:
    """Everything the runner needs to run one system on one workload."""

    system: str
    workload: str
    command: list[str]
    env: dict[str, str]
    group: str
    output_topic: str
    read_topic: str  # where the results are read back (faust W2: the table's changelog)
    decode: Decoder
    compacted: bool = False  # results are a table: the last record per identity counts
    topics: dict[str, tuple[int, dict[str, str]]] = field(default_factory=dict)
    setup: list[list[str]] = field(default_factory=list)  # commands to run before starting
    commit_interval_ms: int = 100
    # its outputs may land after its input offsets commit (Bytewax): read them once settled
    settle_output: bool = False
    joins_group: bool = True  # False: it assigns itself the partitions (Bytewax's source)
    # False: its sink writes without transactions (Bytewax), so the output topic's end
    # offsets count its records and the harness need not read them while it runs
    transactional_output: bool = True


@dataclass
class Context:
    """What every launch of one benchmark run shares."""

    prefix: str
    bootstrap: str
    workdir: Path
    schemas: Path
    commit_interval_ms: int
    store: SchemaStore = field(init=False)
    registry_url: str | None = None  # W1-cf's Schema Registry
    _codecs: dict[str, AvroCodec] = field(default_factory=dict)

    def __post_init__(self) -> None:
        self.store = SchemaStore(self.schemas)
        self._codecs: dict[str, AvroCodec] = {}

    def env(self) -> dict[str, str]:
        env = dict(os.environ)
        env.update(
            {
                "STREAMLINE_BOOTSTRAP_SERVERS": self.bootstrap,
                "STREAMLINE_SCHEMAS": str(self.schemas),
                "PYTHONUNBUFFERED": "1",
                # this checkout's streamline, whichever one the environment has installed
                "PYTHONPATH": os.pathsep.join([str(ROOT), str(ROOT / "src")]),
            }
        )
        return env

    def codec(self, name: str) -> AvroCodec:
        """The codec of a schema, built once (building one compiles its encoder and decoder)."""
        if name not in self._codecs:
            self._codecs[name] = AvroCodec(self.store, self.store.get(name))
        return self._codecs[name]


def _not_closing(key: str) -> bool:
    return not key.startswith(CLOSING_PREFIX)


def make_launch(ctx: Context, system: str, workload: str, source: str, tag: str) -> Launch:
    """The launch of `system` on `workload` reading `source`; `tag` makes names unique."""
    name = f"{ctx.prefix}-{tag}-{system}-{workload.lower()}"
    output = f"{name}-out"
    state = ctx.workdir / "state" / name
    outputs = {output: (PARTITIONS, {**LOG_APPEND, **KEEP})}
    ci = ctx.commit_interval_ms
    if system == "bare":
        order = ctx.codec("com.example.Order")

        def decode_passthrough(r: OutputRecord) -> tuple[Any, Row] | None:
            rec = order.decode(r.value)
            return rec["order_id"], (rec["order_id"], rec["created_at"])

        command = [
            sys.executable, "-m", "bench.systems.bare", "--bootstrap", ctx.bootstrap,
            "--input", source, "--output", output, "--group", name,
            "--commit-interval-ms", str(ci),
        ]  # fmt: skip
        if workload == "W0-tx":
            command.append("--transactional")
        return Launch(system, workload, command, ctx.env(), name, output, output,
                      decode_passthrough, topics=outputs, commit_interval_ms=ci)  # fmt: skip

    if system == "streamline":
        tables = ""
        if workload in ("W1", "W1-alo", "W1-cf"):
            stages, sink_schema = W1_STAGES, "com.example.PaidOrder"
        elif workload == "W4":
            stages, sink_schema = W4_STAGES, "com.example.EnrichedOrder"
            tables = W4_TABLES.format(table=table_topic(source))
        else:
            window = (
                f"tumbling: {WINDOW_MS}ms"
                if workload == "W2"
                else f"session: {{gap: {SESSION_GAP_MS}ms}}"
            )
            stages, sink_schema = (
                WINDOW_STAGES.format(window=window),
                "com.example.bench.CustomerTotals",
            )
        topology = ctx.workdir / "topologies" / f"{name}.yaml"
        topology.parent.mkdir(parents=True, exist_ok=True)
        text = STREAMLINE_TOPOLOGY.format(
            name=name, source=source, sink=output, sink_schema=sink_schema,
            stages=stages.rstrip("\n"), commit_interval_ms=ci, tables=tables,
        )  # fmt: skip
        env = ctx.env()
        if workload == "W1-cf":
            text = text.replace(
                "    partitioned_by:", "    format: confluent-avro\n    partitioned_by:"
            )
            env["STREAMLINE_SCHEMA_REGISTRY_URL"] = ctx.registry_url or ""
        if workload == "W1-alo":
            # no transaction: outputs are flushed, then the input offsets committed
            text = text.replace("guarantee: exactly_once", "guarantee: at_least_once")
        topology.write_text(text)
        codec = ctx.codec(sink_schema)

        def decode_streamline(r: OutputRecord) -> tuple[Any, Row] | None:
            rec = codec.decode(r.value)
            if workload in ("W1", "W1-alo", "W1-cf"):
                return rec["order_id"], paid_row(rec)
            if workload == "W4":
                return rec["order_id"], enriched_row(rec, rec["segment"], rec["customer_country"])
            if not _not_closing(rec["customer_id"]):
                return None
            row = window_row(
                rec["customer_id"], rec["window_start"], rec["order_count"], rec["revenue"]
            )
            return row[:2], row

        streamline = [sys.executable, "-m", "streamline"]
        return Launch(
            system, workload,
            [*streamline, "run", str(topology), "--instance-id", "bench",
             "--state-dir", str(state), "--metrics-port", "0"],
            env, name, output, output, decode_streamline, topics=outputs,
            setup=[[*streamline, "topics", "create", str(topology), "--partitions", str(PARTITIONS)]],
            commit_interval_ms=ci,
        )  # fmt: skip

    if system == "bytewax":
        from bench.nexmark_run import bytewax_launch

        def decode_bytewax(r: OutputRecord) -> tuple[Any, Row] | None:
            rec = json.loads(r.value or b"null")
            return rec["order_id"], paid_row(rec)

        return bytewax_launch(ctx, workload, name, source, output, "", decode_bytewax)

    python = str(VENVS / system / "bin" / "python")
    common = [
        "--workload", workload, "--bootstrap", ctx.bootstrap, "--input", source,
        "--output", output, "--group", name, "--state-dir", str(state),
        "--schema", str(ctx.schemas / "order.avsc"), "--commit-interval-ms", str(ci),
    ]  # fmt: skip
    if workload == "W4":
        common += ["--table", table_topic(source),
                   "--table-schema", str(ctx.schemas / "customer.avsc")]  # fmt: skip
    if system == "quix":

        def decode_quix(r: OutputRecord) -> tuple[Any, Row] | None:
            rec = json.loads(r.value or b"null")
            if workload == "W1":
                return rec["order_id"], paid_row(rec)
            if workload == "W4":
                return rec["order_id"], enriched_row(rec, rec["segment"], rec["customer_country"])
            key = (r.key or b"").decode()
            if not _not_closing(key):
                return None
            row = window_row(key, rec["start"], rec["order_count"], rec["revenue"])
            return row[:2], row

        return Launch(system, workload, [python, "-m", "bench.systems.quix_app", *common],
                      ctx.env(), name, output, output, decode_quix, topics=outputs,
                      commit_interval_ms=ci)  # fmt: skip

    if system == "faust":
        if workload == "W1":

            def decode_faust(r: OutputRecord) -> tuple[Any, Row] | None:
                rec = json.loads(r.value or b"null")
                return rec["order_id"], paid_row(rec)

            return Launch(system, workload, [python, "-m", "bench.systems.faust_app", *common],
                          ctx.env(), name, output, output, decode_faust, topics=outputs,
                          commit_interval_ms=ci)  # fmt: skip
        changelog = f"{name}-totals-changelog"

        def decode_faust_table(r: OutputRecord) -> tuple[Any, Row] | None:
            key, (start, _end) = json.loads(r.key or b"null")
            if not _not_closing(key):
                return None
            count, revenue = json.loads(r.value or b"null")
            row = window_row(key, round(start * 1000), count, revenue)
            return row[:2], row

        topics = {
            **outputs,
            changelog: (PARTITIONS, {**LOG_APPEND, **KEEP, "cleanup.policy": "compact"}),
        }
        return Launch(system, workload, [python, "-m", "bench.systems.faust_app", *common],
                      ctx.env(), name, output, changelog, decode_faust_table, compacted=True,
                      topics=topics, commit_interval_ms=ci)  # fmt: skip
    raise ValueError(f"unknown system {system}")
