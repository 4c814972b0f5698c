"""The Nexmark-style suite on Kafka: input, each system's launch per query, the run.

The persons, auctions and bids of `bench.nexmark` are produced once per run, as
single-object Avro (streamline's `AvroCodec`), to three topics of `PARTITIONS`
partitions; every system reads the same bytes. Each (system, query) cell runs through
`bench.run.run_throughput`, like the classic workloads, and its output is checked
against the generator's oracle.
"""

from __future__ import annotations

import json
import subprocess
import sys
from collections.abc import Callable
from pathlib import Path
from typing import Any

from bench.cluster import KEEP, LOG_APPEND, OutputRecord, create, produce_all
from bench.launch import VENVS, Context, Launch
from bench.nexmark import (
    PARTITIONS,
    Q2_MODULO,
    Q3_CATEGORY,
    Q3_STATES,
    Q7_WINDOW_MS,
    Q8_WITHIN_MS,
    QUERIES,
    NexmarkStream,
    Oracle,
    Row,
    bid_row,
    is_closing,
)
from bench.report import checksum
from streamline.kafka.connection import Connection

SCHEMAS = {
    "persons": "com.example.nexmark.Person",
    "auctions": "com.example.nexmark.Auction",
    "bids": "com.example.nexmark.Bid",
}

# which queries each system has, and why not the others (None: it runs)
NEXMARK_SUPPORTED: dict[str, dict[str, str | None]] = {
    "bare": {q: (None if q == "q0" else "a consume→produce loop of raw bytes") for q in QUERIES},
    "streamline": {
        "q0": None,
        "q1": None,
        "q2": None,
        "q3": None,
        "q7": None,
        "q8": None,
        "q5": "the window is the last stage of a topology: no max over a hopping window's "
        "results in one topology",
    },
    "quix": {
        "q0": None,
        "q1": None,
        "q2": None,
        "q3": None,
        "q7": None,
        "q8": None,
        "q5": "not written: it needs a second window over the hopping window's results, "
        "re-keyed by window",
    },
    "bytewax": {
        "q0": None,
        "q1": None,
        "q2": None,
        "q3": None,
        "q7": None,
        "q8": None,
        "q5": "Bytewax's event clocks are per key: a quiet auction's hopping windows close only "
        "after the clock's wait in wall-clock time, so a max across auctions per window "
        "is not final when emitted",
    },
    "faust": {
        q: "not written for the Nexmark suite (faust runs the classic W1/W2 only)" for q in QUERIES
    },
}

STREAMLINE_SOURCE = """\
  - name: {name}
    topic: {topic}
    schema: {schema}
    event_time: date_time
    partitioned_by: {partitioned_by}
    watermark:
      max_out_of_orderness: 0s
"""

STREAMLINE_STAGES = {
    "q0": ("", "com.example.nexmark.Bid"),
    "q1": ("  - map: bench.nexmark:q1_euro\n", "com.example.nexmark.Bid"),
    "q2": (f'  - filter: "auction % {Q2_MODULO} == 0"\n', "com.example.nexmark.Bid"),
    "q3": (
        f'  - filter: "category == {Q3_CATEGORY}"\n'
        "  - join:\n"
        "      table: persons\n"
        "      on: seller\n"
        "      fields: {name: name, city: city, state: state}\n"
        "      missing: drop\n"
        f'  - filter: "state in [{", ".join(repr(s) for s in Q3_STATES)}]"\n',
        "com.example.nexmark.Q3Result",
    ),
    "q7": (
        "  - key_by: {name: all, expr: \"'all'\"}\n"
        "  - window:\n"
        f"      tumbling: {Q7_WINDOW_MS}ms\n"
        "      aggregate:\n"
        "        max_price: max(price)\n"
        "      emit: final\n",
        "com.example.nexmark.Q7Result",
    ),
    "q8": (
        "  - join:\n"
        "      stream: persons\n"
        "      on: {left: seller, right: id}\n"
        f"      within: {Q8_WITHIN_MS}ms\n"
        "      type: inner\n"
        "      fields: {name: name, person_time: date_time}\n",
        "com.example.nexmark.Q8Result",
    ),
}

# queries whose results come from a repartition topic, after the input offsets commit
REPARTITIONED = ("q7",)

PERSONS_TABLE = """\
tables:
  - name: persons
    topic: {topic}
    schema: com.example.nexmark.Person
    key: id
"""


class NexmarkInput:
    """The run's three topics, their record counts and the oracle's rows per query."""

    def __init__(self, prefix: str) -> None:
        self.topics = {kind: f"{prefix}-nx-{kind}" for kind in SCHEMAS}
        self.counts: dict[str, int] = {}
        self.rows: dict[str, list[Row]] = {}
        self.closing_from_ms = 0

    def produce(
        self, connection: Connection, ctx: Context, events: int, base_ms: int,
        progress: Callable[[str], None],
    ) -> None:  # fmt: skip
        stream = NexmarkStream(events, base_ms)
        oracle = Oracle()
        codecs = {kind: ctx.codec(name) for kind, name in SCHEMAS.items()}
        create(connection, {t: (PARTITIONS, KEEP) for t in self.topics.values()})
        # one pass over the stream; each topic's records are produced in stream order
        buffers: dict[str, list[tuple[int, bytes, bytes, int]]] = {k: [] for k in SCHEMAS}
        for event in stream:
            oracle.add(event)
            buffers[event.topic].append(
                (event.partition, event.key.encode(),
                 codecs[event.topic].encode(event.record, check=False),
                 int(event.record["date_time"]))
            )  # fmt: skip
        for kind, records in buffers.items():
            self.counts[kind] = produce_all(connection, self.topics[kind], records)
            progress(f"  produced {self.counts[kind]:,} {kind} to {self.topics[kind]}")
        self.rows = oracle.rows()
        self.closing_from_ms = stream.base_ms + events * 2

    def counts_of(self, topic: str) -> int:
        """The records produced to one of the run's topics."""
        return next(self.counts[k] for k, t in self.topics.items() if t == topic)

    def expected(self, query: str) -> tuple[list[Row], str, int]:
        rows = self.rows[query]
        return rows, checksum(rows), len(rows)


def _streamline_row(
    query: str, rec: dict[str, Any], closing_from_ms: int
) -> tuple[Any, Row] | None:
    if query in ("q0", "q1", "q2"):
        if is_closing(rec["auction"]):
            return None
        return (rec["auction"], rec["bidder"], rec["date_time"]), bid_row(rec)
    if query == "q3":
        if is_closing(rec["id"]):
            return None
        return rec["id"], (rec["id"], rec["seller"], rec["name"], rec["city"], rec["state"])
    if query == "q8":
        if is_closing(rec["id"]):
            return None
        return rec["id"], (int(rec["seller"]), rec["name"], int(rec["id"]))
    start = int(rec["window_start"])
    if start >= closing_from_ms:
        return None
    return start, (start, int(rec["max_price"]))


def make_nexmark_launch(
    ctx: Context, system: str, query: str, data: NexmarkInput, tag: str = "nx"
) -> tuple[Launch, str]:
    """The launch of `system` on `query`, and the topic its progress is measured on."""
    name = f"{ctx.prefix}-{tag}-{system}-{query}"
    output = f"{name}-out"
    state = ctx.workdir / "state" / name
    outputs = {output: (PARTITIONS, {**LOG_APPEND, **KEEP})}
    ci = ctx.commit_interval_ms
    primary = data.topics["auctions"] if query in ("q3", "q8") else data.topics["bids"]
    closing_from = data.closing_from_ms

    if system == "bare":
        bid = ctx.codec(SCHEMAS["bids"])

        def decode_bare(r: OutputRecord) -> tuple[Any, Row] | None:
            return _streamline_row(query, bid.decode(r.value), closing_from)

        command = [
            sys.executable, "-m", "bench.systems.bare", "--bootstrap", ctx.bootstrap,
            "--input", primary, "--output", output, "--group", name,
            "--commit-interval-ms", str(ci), "--transactional",
        ]  # fmt: skip
        return Launch(system, query, command, ctx.env(), name, output, output, decode_bare,
                      topics=outputs, commit_interval_ms=ci), primary  # fmt: skip

    if system == "streamline":
        stages, sink_schema = STREAMLINE_STAGES[query]
        sources = STREAMLINE_SOURCE.format(
            name="auctions" if query in ("q3", "q8") else "bids",
            topic=primary,
            schema=SCHEMAS["auctions"] if query in ("q3", "q8") else SCHEMAS["bids"],
            partitioned_by="seller" if query in ("q3", "q8") else "auction",
        )
        if query == "q8":
            sources += STREAMLINE_SOURCE.format(
                name="persons", topic=data.topics["persons"], schema=SCHEMAS["persons"],
                partitioned_by="id",
            )  # fmt: skip
        tables = PERSONS_TABLE.format(topic=data.topics["persons"]) if query == "q3" else ""
        text = (
            f'apiVersion: streamline/v1\nname: {name}\nversion: "1"\nsources:\n{sources}'
            f"{tables}stages:{' []' if not stages else ''}\n{stages}"
            f"sink:\n  topic: {output}\n  schema: {sink_schema}\n"
            f"guarantee: exactly_once\ncommit_interval: {ci}ms\n"
        )
        topology = ctx.workdir / "topologies" / f"{name}.yaml"
        topology.parent.mkdir(parents=True, exist_ok=True)
        topology.write_text(text)
        codec = ctx.codec(sink_schema)

        def decode_streamline(r: OutputRecord) -> tuple[Any, Row] | None:
            return _streamline_row(query, codec.decode(r.value), closing_from)

        streamline = [sys.executable, "-m", "streamline"]
        return Launch(
            system, query,
            [*streamline, "run", str(topology), "--instance-id", "bench",
             "--state-dir", str(state), "--metrics-port", "0"],
            ctx.env(), name, output, output, decode_streamline, topics=outputs,
            setup=[[*streamline, "topics", "create", str(topology), "--partitions", str(PARTITIONS)]],
            commit_interval_ms=ci, settle_output=query in REPARTITIONED,
        ), primary  # fmt: skip

    def decode_json(r: OutputRecord) -> tuple[Any, Row] | None:
        rec = json.loads(r.value or b"null")
        if query == "q7" and "start" in rec:  # Quix's window result
            rec = {"window_start": rec["start"], "max_price": rec["max_price"]}
        return _streamline_row(query, rec, closing_from)

    python = str(VENVS / system / "bin" / "python")
    if system == "quix":
        command = [
            python, "-m", "bench.systems.quix_nexmark", "--query", query,
            "--bootstrap", ctx.bootstrap, "--input", primary, "--output", output,
            "--group", name, "--state-dir", str(state), "--schemas", str(ctx.schemas),
            "--commit-interval-ms", str(ci), "--persons", data.topics["persons"],
        ]  # fmt: skip
        return Launch(system, query, command, ctx.env(), name, output, output, decode_json,
                      topics=outputs, commit_interval_ms=ci,
                      settle_output=query in REPARTITIONED), primary  # fmt: skip
    if system == "bytewax":
        return bytewax_launch(ctx, query, name, primary, output, data.topics["persons"],
                              decode_json), primary  # fmt: skip
    raise ValueError(f"no Nexmark launch for {system}")


def bytewax_launch(
    ctx: Context, query: str, name: str, source: str, output: str, persons: str,
    decode: Callable[[OutputRecord], tuple[Any, Row] | None],
) -> Launch:  # fmt: skip
    """Bytewax on a Nexmark query or W1, with its own recovery (snapshots every second)."""
    recovery = ctx.workdir / "state" / name
    recovery.mkdir(parents=True, exist_ok=True)
    python = str(VENVS / "bytewax" / "bin" / "python")
    env = ctx.env()
    env["BENCH_BYTEWAX"] = json.dumps(
        {
            "query": query, "bootstrap": ctx.bootstrap, "input": source, "persons": persons,
            "output": output, "group": name, "schemas": str(ctx.schemas),
            "commit_interval_ms": ctx.commit_interval_ms,
        }
    )  # fmt: skip
    command = [python, "-m", "bytewax.run", "bench.systems.bytewax_app:flow",
               "-r", str(recovery), "-s", "1", "-b", "0"]  # fmt: skip
    return Launch(
        "bytewax", query, command, env, name, output, output, decode,
        topics={output: (PARTITIONS, {**LOG_APPEND, **KEEP})},
        setup=[[python, "-m", "bytewax.recovery", str(recovery), "1"]],
        commit_interval_ms=ctx.commit_interval_ms, settle_output=True, joins_group=False,
        transactional_output=False,
    )  # fmt: skip


def streamline_accepts(ctx: Context, data: NexmarkInput, query: str) -> str | None:
    """None when this build's `streamline validate` accepts the query; else why not."""
    launch, _ = make_nexmark_launch(ctx, "streamline", query, data, "validate")
    topology = launch.command[launch.command.index("run") + 1]
    result = subprocess.run(
        [sys.executable, "-m", "streamline", "validate", topology],
        env=launch.env, capture_output=True, text=True, check=False, cwd=Path(topology).parent,
    )  # fmt: skip
    if result.returncode == 0:
        return None
    first = (result.stdout + result.stderr).strip().splitlines()
    return "not on this build: `validate` refuses it" + (f" ({first[0][:160]})" if first else "")
