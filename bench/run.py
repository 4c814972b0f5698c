"""Benchmarks streamline against a bare confluent-kafka loop, Quix Streams and faust-streaming.

Every system runs every workload it has on the same broker, the same input
bytes and the same machine, in one run, one at a time, as a subprocess:

    python -m bench.run                        # 200,000 events, all systems and workloads
    python -m bench.run --events 50000         # a quick run (~2-3 minutes)
    python -m bench.run --only streamline,quix --workloads W1,W2 --skip-latency

Results go to bench/results/ (results.json, results.md, results.png). The exit
status is 1 when any system's output disagrees with the expected output (and
so with the others') or a system fails.
"""

from __future__ import annotations

import argparse
import importlib.metadata
import json
import math
import os
import platform
import random
import re
import shutil
import subprocess
import sys
import time
from collections import Counter
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import psutil
from confluent_kafka import Producer
from confluent_kafka.admin import AdminClient

from bench import registry_variant, venvs
from bench.cluster import (
    KEEP,
    GroupOffsets,
    OutputReader,
    create,
    delete_groups,
    delete_topics,
    end_offsets,
    produce_all,
)
from bench.file_sink import run_file_sink
from bench.joins import CustomerTable, table_topic
from bench.launch import ROOT, SUPPORTED, Context, Launch, make_launch
from bench.nexmark import QUERIES
from bench.nexmark_suite import NEXMARK_METHOD, run_nexmark
from bench.process import SystemProcess
from bench.repeats import combine, combine_latency, others_share, run_repeated
from bench.report import (
    SYSTEMS,
    WORKLOADS,
    Cell,
    Row,
    checksum,
    percentile,
    render_chart,
    targets,
)
from bench.results_page import record_run, round_two_targets, write_page
from bench.workload import (
    PARTITIONS,
    Expectation,
    OrderStream,
    is_valid,
    partition_of,
)
from streamline.cli.connect import resolve_connection
from streamline.kafka.connection import Connection
from streamline.serde import AvroCodec, SchemaStore

RESULTS = ROOT / "bench" / "results"
DEFAULT_EVENTS = 80_000
DEFAULT_NEXMARK_EVENTS = 200_000
DEFAULT_SUITE = "classic"  # with its repeats and W5: about 14 minutes on a quiet 2-core machine
DEFAULT_REPEATS = 3
DEFAULT_LATENCY_REPEATS = 3
DEFAULT_LATENCY_S = 8.0
REPEAT_LIMIT_S = 20.0
# a cell timed for less than this over its repeats runs again, up to MAX_REPEATS times in all
MIN_TIMED_S = 2.0
MAX_REPEATS = 9
READY_WITHOUT_GROUP_S = 8.0
START_POLL_S = 0.01  # the first commit is looked for this often (not timed: the system is starting)
MIN_TIMED_SHARE = 0.5  # a cell that timed less of its input than this is not judged
WORK = ROOT / "bench" / ".work"
LATENCY_CELLS = {
    ("bare", "W0-tx"),
    ("streamline", "W1"),
    ("streamline", "W1-alo"),
    ("quix", "W1"),
    ("faust", "W1"),
    ("bytewax", "W1"),
}
RUN_PREFIX = re.compile(r"^bench-(\d{14})-")
STALE_AFTER_S = 3 * 3600  # a run's topics left behind (after a crash) are deleted after this

METHOD = """
- Input: one topic per run, 6 partitions, pre-produced before any system starts; every
  system reads the same bytes. Values are single-object Avro (`C3 01`, the 8-byte
  CRC-64-AVRO fingerprint, the Avro body) written with streamline's `AvroCodec`. streamline
  decodes them with its own codec; the peers use a small custom deserializer that skips the
  10-byte header and reads the body with `fastavro.schemaless_reader` and the parsed
  `com.example.Order` schema (bench/systems/wire.py). The peers write JSON outputs (their
  default); streamline writes single-object Avro.
- Keys are 1,000 customers, each always in the same partition; event time (`created_at`,
  also the record timestamp) grows 2 ms per event, so it only increases within a partition.
  Each partition ends with a closing event ten minutes of event time later that fires every real window; its
  own windows are excluded from the checks. One event in 200 has a negative amount and fails
  W1's validation (streamline dead-letters it, the peers drop it).
- All systems run with exactly-once processing (the bare loop: W0 without, W0-tx with
  transactions), committing every `commit_interval` (100 ms unless `--commit-interval-ms`),
  RocksDB state for the windowed workloads, one process each, one at a time. The exception
  is faust's W2, which runs at-least-once: with `exactly_once` faust loses table updates
  (those still in its producer buffer when the input offsets commit: 3 to 57 of 50k-200k
  changelog records missing in five runs, caught by the check), while at-least-once with a
  clean stop gives the right table. streamline's W1-alo is W1 at-least-once (`guarantee:
  at_least_once`: no transaction; outputs flushed, then offsets committed), to compare its
  latency with Bytewax's, whose sink is at-least-once.
- Throughput: input events committed after the start / (end - start). Start: the first
  moment the harness sees a committed offset of the system's consumer group on the input
  (asked every 10 ms; the middle of the request that first sees one); the events committed
  by then are not counted, so process start-up, imports, the group join and the first
  commit interval are left out for every system alike. End: the largest LogAppendTime of
  the output records (the output topics are created with
  `message.timestamp.type=LogAppendTime`); for faust W2, of its table's changelog.
  The run of a system ends when its group has committed the end offset of every input
  partition; then it is stopped (SIGTERM) and its output read back with a read_committed
  consumer and checked.
- Repeats: every cell runs `--repeats` times (default 3) in rounds that interleave the
  systems (each round runs every cell once, workload by workload, every other round in
  reverse order), each repeat with a fresh consumer group, fresh output and internal topics
  (same partitions; deleted once the repeat is checked, so the broker holds the same for
  every repeat: the pre-produced inputs and that repeat's topics) and fresh state. Every
  repeat's output is checked. The figures are the medians of the repeats; the results page
  gives each cell's range and spread ((largest - smallest) / median). A cell timed over more
  than `--repeat-limit-seconds` (default 20) in its first run runs once: a run that long is
  timed well enough once (faust, Quix Streams' W3). A cell timed for less than 2 s over its
  repeats (the bare loop, through 80,000 events in a few tenths of a second) runs again,
  up to 9 times in all, in further interleaved rounds. Latency cells run `--latency-repeats`
  times (default 3), interleaved likewise; p50 and p99 are the medians. A latency cell
  whose first run did not keep up with the feed (faust) runs once.
- Check: the number of output records and a SHA-256 over the sorted result tuples — W0
  (order_id, created_at), W1 (order_id, customer_id, amount_eur, country, created_at), W2/W3
  (key, window_start, count, round(sum, 6)) — against the expectation computed by the harness
  while generating the input; all systems therefore agree with each other when all pass.
  faust's W2 result is its windowed table, read as a table from the changelog (last value per
  key and window), because faust closes windows by wall-clock time and cannot emit final
  event-time windows of historical input. faust sends table updates through a buffer after
  the input offsets commit, so the harness stops it only once the changelog has not grown
  for 3 s; updates missing after that are reported as a mismatch.
- CPU: user + system seconds of the system's process tree between start and the moment the
  run was seen complete, per million of the events counted for throughput; each thread's
  time on the CPU is read from /proc/PID/task/TID/schedstat (nanoseconds; psutil's clock
  ticks of 10 ms were too coarse for the bare loop, which spends a tenth of a second).
  Peak RSS: the largest sum of RSS over the process tree, sampled every 200 ms over the
  whole run.
- W4 (stream-table join): a customers topic of 10,000 customers (the orders' keys are 1,000
  of them) with 20,000 versions (one per customer valid from before the first order, then
  10,000 updates valid from inside the orders' event-time range), produced before the run
  in the orders' partitions and timestamped with `updated_at`. streamline reads it as a
  versioned table (`join` stage; the load happens at assignment, before the first commit);
  Quix Streams uses its own `join_asof` (inner), ordering the two topics of a partition by
  timestamp. Checked tuple: (order_id, customer_id, amount, created_at, segment, country),
  the customer's version as of the order's `created_at`, computed by the harness.
- Latency: a fresh input topic per system and repeat, fed at a fixed rate (default 5,000
  events/s for 8 s) once the system's group is stable; `created_at` is the wall-clock time the event was
  handed to the producer. Latency = the moment a read_committed consumer in the harness
  receives the output - `created_at`, over the outputs of events produced after the first
  second. It includes the producer's linger (1 ms) and the reader's fetch wait (≤ 10 ms).
"""


class Progress:
    def __init__(self) -> None:
        self.started = time.monotonic()

    def __call__(self, message: str) -> None:
        print(f"[{time.monotonic() - self.started:7.1f}s] {message}", flush=True)


def machine_info(connection: Connection) -> dict[str, Any]:
    cpu = "?"
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                cpu = line.split(":", 1)[1].strip()
                break
    except OSError:
        pass
    ram_gb: float | str = "?"
    try:
        for line in Path("/proc/meminfo").read_text().splitlines():
            if line.startswith("MemTotal"):
                ram_gb = round(int(line.split()[1]) / 1024 / 1024, 1)
    except OSError:
        pass
    pom = (ROOT / "kafka" / "pom.xml").read_text() if (ROOT / "kafka" / "pom.xml").exists() else ""
    kafka = re.search(r"<kafka.version>([^<]+)<", pom)
    sha = subprocess.run(
        ["git", "rev-parse", "HEAD"], cwd=ROOT, capture_output=True, text=True, check=False
    ).stdout.strip()
    return {
        "cpu_model": cpu,
        "cores": os.cpu_count(),
        "ram_gb": ram_gb,
        "python": platform.python_version(),
        "platform": platform.platform(),
        "kafka_version": kafka.group(1) if kafka else "?",
        "bootstrap": connection.bootstrap_servers,
        "git_sha": sha or "?",
        "date": datetime.now(UTC).strftime("%Y-%m-%dT%H:%M:%SZ"),
        "load_before": " ".join(f"{x:.2f}" for x in os.getloadavg()),
    }


def prepare_schemas(workdir: Path) -> Path:
    """The run's schema folder: the project's schemas and the benchmark's output schema."""
    folder = workdir / "schemas"
    folder.mkdir(parents=True, exist_ok=True)
    for source in [
        *sorted((ROOT / "schemas").glob("*.avsc")),
        *sorted((ROOT / "bench" / "schemas").glob("*.avsc")),
    ]:
        shutil.copy(source, folder / source.name)
    return folder


def produce_input(
    connection: Connection, topic: str, events: int, store: SchemaStore, progress: Progress
) -> tuple[dict[str, tuple[list[Row], str, int]], int]:
    """Produces the run's input; returns the expected (rows, checksum, count) per workload."""
    codec = AvroCodec(store, store.get("com.example.Order"))
    expectation = Expectation()
    passthrough: list[Row] = []
    base_ms = int(time.time() * 1000) - 2 * 3_600_000
    stream = OrderStream(events, base_ms)
    table = produce_table(connection, table_topic(topic), stream.base_ms, events, store)

    def records() -> Any:
        for partition, key, record in stream:
            expectation.add(record)
            table.add(record)
            passthrough.append((record["order_id"], record["created_at"]))
            yield partition, key.encode(), codec.encode(record, check=False), record["created_at"]

    step = max(events // 5, 1)

    def report(n: int) -> None:
        if n % step == 0:
            progress(f"  produced {n:,} events")

    n = produce_all(connection, topic, records(), report)
    e = expectation.finish()
    windows = e.window_rows()
    expected = {
        "W0": (passthrough, checksum(passthrough), len(passthrough)),
        "W1": (e.paid, checksum(e.paid), len(e.paid)),
        "W1-alo": (e.paid, checksum(e.paid), len(e.paid)),  # the same input, at-least-once
        "W1-cf": (e.paid, checksum(e.paid), len(e.paid)),  # the same input, Confluent Avro
        "W2": (windows, checksum(windows), len(windows)),
        "W3": (e.sessions, checksum(e.sessions), len(e.sessions)),
        "W4": (table.expected, checksum(table.expected), len(table.expected)),
    }
    expected["W0-tx"] = expected["W0"]
    return expected, n


def produce_table(
    connection: Connection, topic: str, base_ms: int, events: int, store: SchemaStore
) -> CustomerTable:
    """W4's customers: every version, in the orders' partitions, timestamped `updated_at`."""
    codec = AvroCodec(store, store.get("com.example.Customer"))
    table = CustomerTable(base_ms, events)
    create(connection, {topic: (PARTITIONS, KEEP)})
    produce_all(
        connection,
        topic,
        (
            (p, key.encode(), codec.encode(row, check=False), row["updated_at"])
            for p, key, row in table.records()
        ),
    )
    return table


def run_throughput(
    connection: Connection,
    launch: Launch,
    source: str,
    events: int,
    expected: tuple[list[Row], str, int],
    log_dir: Path,
    progress: Progress,
    stall_s: float,
) -> Cell:
    cell = Cell(
        launch.system, launch.workload, events=events, commit_interval_ms=launch.commit_interval_ms
    )
    _rows, cell.expected_checksum, cell.expected_records = expected
    create(connection, launch.topics)
    for command in launch.setup:
        subprocess.run(command, cwd=ROOT, env=launch.env, capture_output=True, check=True)
    ends = end_offsets(connection, source)
    offsets = GroupOffsets(connection, launch.group, source, PARTITIONS)
    proc = SystemProcess(launch.command, launch.env, ROOT, log_dir / f"{launch.group}.log").start()
    start = None
    cpu_start = 0.0
    machine_start = (0.0, 0.0)
    first_committed = 0
    deadline = time.monotonic() + 180
    while time.monotonic() < deadline and proc.alive():
        asked = time.time()
        first_committed = sum(offsets.committed().values())
        if first_committed > 0:
            # the broker answered with the offsets of that moment: the middle of the request
            start = (asked + time.time()) / 2
            cpu_start = proc.cpu_seconds()
            machine_start = machine_busy_seconds(), time.monotonic()
            break
        time.sleep(START_POLL_S)
    if start is None:
        proc.stop(30)
        return _failed(cell, "did not commit any input within 180 s", proc)
    progress(f"  {launch.system} {launch.workload}: processing")
    done_at = None
    last_total, last_change = -1, time.monotonic()
    target = sum(ends.values())
    while proc.alive():
        committed = offsets.committed()
        if all(committed.get(p, 0) >= end for p, end in ends.items()):
            done_at = time.time()
            cell.extra["cpu_end"] = proc.cpu_seconds()
            break
        total = sum(committed.values())
        if total != last_total:
            last_total, last_change = total, time.monotonic()
        elif time.monotonic() - last_change > stall_s:
            break
        time.sleep(0.25)
    if done_at is None:
        proc.stop(30)
        return _failed(
            cell, f"stalled: committed {max(last_total, 0):,} of {target:,} input records", proc
        )
    if launch.settle_output:
        wait_for_outputs(connection, launch, cell.expected_records or 0, stall_s)
        cell.extra["cpu_end"] = proc.cpu_seconds()
    cpu = float(cell.extra.pop("cpu_end")) - cpu_start
    busy, wall = machine_busy_seconds() - machine_start[0], time.monotonic() - machine_start[1]
    # the share of the machine's CPU that the rest (broker, harness, other work) used meanwhile
    cell.extra["others_cpu_share"] = others_share(busy, cpu, wall, os.cpu_count() or 1)
    if launch.compacted:
        settle(connection, launch.read_topic)
    exit_code = proc.stop(60)
    measured = max(events - first_committed, 1)
    cell.extra["measured_events"] = measured
    if measured < events * MIN_TIMED_SHARE:
        cell.extra["too_short"] = True
        cell.note = (
            f"too short to time: {first_committed:,} of {events:,} input records were committed "
            "by the first commit seen; run more events"
        )
    cell.peak_rss_mb = proc.peak_rss / 1e6
    cell.cpu_s_per_m = cpu / measured * 1e6
    if exit_code not in (0, -15, 143):
        status = f"exit status {exit_code} after SIGTERM"
        cell.note = f"{cell.note}; {status}" if cell.note else status
    reader = OutputReader(connection, [launch.read_topic])
    try:
        reader.read_to_end(quiet_s=0.5)  # the system has stopped: its output is final
    finally:
        reader.close()
    rows: list[Row] = []
    table: dict[Any, Row] = {}
    identities: set[Any] = set()
    raw = 0
    for record in reader.records:
        decoded = launch.decode(record)
        if decoded is None:
            continue
        raw += 1
        identity, row = decoded
        if launch.compacted:
            table[identity] = row
        else:
            rows.append(row)
            identities.add(identity)
    result = list(table.values()) if launch.compacted else rows
    cell.output_records = len(result)
    cell.output_checksum = checksum(result)
    if launch.compacted:
        cell.extra["changelog_records"] = raw
    end_ms = max((r.append_ms for r in reader.records), default=0)
    if reader.log_append_time and end_ms:
        end = end_ms / 1000
    else:
        end = done_at
        cell.extra["end"] = "completion seen by the harness (outputs without LogAppendTime)"
    cell.seconds = max(end - start, 1e-3)
    cell.events_per_s = measured / cell.seconds
    if (
        cell.output_records != cell.expected_records
        or cell.output_checksum != cell.expected_checksum
    ):
        cell.status = "mismatch"
        cell.note = (
            f"output {cell.output_records:,} records checksum {cell.output_checksum}, "
            f"expected {cell.expected_records:,} records checksum {cell.expected_checksum}"
        )
        missing = Counter(expected[0]) - Counter(result)
        extra = Counter(result) - Counter(expected[0])
        cell.extra["missing_sample"] = [list(r) for r in sorted(missing)[:5]]
        cell.extra["unexpected_sample"] = [list(r) for r in sorted(extra)[:5]]
        cell.note += f"; {sum(missing.values()):,} expected results missing, {sum(extra.values()):,} unexpected"
        if not launch.compacted and len(identities) != len(rows):
            cell.note += f"; {len(rows) - len(identities):,} duplicates"
    if launch.compacted:
        note = f"result read as a table from {raw:,} changelog records"
        cell.note = f"{cell.note}; {note}" if cell.note else note
    # the broker holds the same for every cell: the inputs, and only this cell's own topics
    delete_topics(connection, f"^{re.escape(launch.group)}")
    delete_groups(connection, f"^{re.escape(launch.group)}$")
    return cell


def machine_busy_seconds() -> float:
    """CPU seconds the whole machine has spent busy (not idle, not waiting on I/O; steal
    counts as busy); guest time is already in user time."""
    t = psutil.cpu_times()
    skip = ("idle", "iowait", "guest", "guest_nice")
    return float(sum(v for k, v in t._asdict().items() if k not in skip))


def _failed(cell: Cell, reason: str, proc: SystemProcess) -> Cell:
    cell.status = "failed"
    cell.note = reason
    cell.extra["log_tail"] = proc.log_tail()
    cell.peak_rss_mb = proc.peak_rss / 1e6 or None
    return cell


def settle(connection: Connection, topic: str, quiet_s: float = 3.0, limit_s: float = 60.0) -> None:
    """Waits until `topic` has stopped growing for `quiet_s`: a table whose updates are sent
    after the input offsets commit (faust's changelog) is read only once they have landed."""
    last, since = end_offsets(connection, topic), time.monotonic()
    deadline = since + limit_s
    while time.monotonic() < deadline and time.monotonic() - since < quiet_s:
        time.sleep(0.5)
        now = end_offsets(connection, topic)
        if now != last:
            last, since = now, time.monotonic()


def wait_for_outputs(connection: Connection, launch: Launch, expected: int, stall_s: float) -> None:
    """Waits until `expected` results are readable (or none came for `stall_s`): a system
    whose outputs can land after its input offsets commit (a repartition, a non-transactional
    sink) is stopped only then, and its CPU time counted until then. A sink without
    transactions is watched through its topic's end offsets (every record counts there),
    so the harness does not compete for the CPU by reading the records while it runs."""
    if not launch.transactional_output:
        last_total, last = -1, time.monotonic()
        while time.monotonic() - last < stall_s:
            total = sum(end_offsets(connection, launch.read_topic).values())
            if total >= expected:
                break
            if total != last_total:
                last_total, last = total, time.monotonic()
            time.sleep(0.2)
        settle(connection, launch.read_topic, quiet_s=1.0)
        return
    reader = OutputReader(connection, [launch.read_topic])
    results, last = 0, time.monotonic()
    try:
        while results < expected and time.monotonic() - last < stall_s:
            before = len(reader.records)
            if reader.poll(0.2):
                results += sum(1 for r in reader.records[before:] if launch.decode(r) is not None)
                last = time.monotonic()
    finally:
        reader.close()
    settle(connection, launch.read_topic, quiet_s=1.0)


def latency_event(i: int, now_ms: int, rng: random.Random) -> tuple[str, dict[str, Any]]:
    key = f"c-{rng.randrange(1000):04d}"
    return key, {
        "order_id": f"l-{i:09d}",
        "customer_id": key,
        "amount": round(rng.uniform(1.0, 500.0), 2),
        "currency": "USD" if rng.random() < 0.3 else "EUR",
        "status": "PAID" if rng.random() < 0.8 else "PENDING",
        "country": "DE",
        "created_at": now_ms,
    }


def run_latency(
    connection: Connection,
    ctx: Context,
    cell: Cell,
    rate: int,
    seconds: float,
    log_dir: Path,
    progress: Progress,
    tag: str = "lat",
) -> None:
    source = f"{ctx.prefix}-{tag}-{cell.system}-{cell.workload.lower()}-in"
    create(connection, {source: (PARTITIONS, KEEP)})
    launch = make_launch(ctx, cell.system, cell.workload, source, tag)
    create(connection, launch.topics)
    for command in launch.setup:
        subprocess.run(command, cwd=ROOT, env=launch.env, capture_output=True, check=True)
    proc = SystemProcess(launch.command, launch.env, ROOT, log_dir / f"{launch.group}.log").start()
    offsets = GroupOffsets(connection, launch.group, source, PARTITIONS)
    deadline = time.monotonic() + 180
    if not launch.joins_group:
        # it assigns itself every partition from the start (Bytewax): give it time to start
        deadline = time.monotonic() + READY_WITHOUT_GROUP_S
        while time.monotonic() < deadline and proc.alive():
            time.sleep(0.2)
        deadline = time.monotonic() + 1
    while (
        time.monotonic() < deadline
        and proc.alive()
        and launch.joins_group
        and offsets.stable_members() == 0
    ):
        time.sleep(0.2)
    if not proc.alive() or time.monotonic() >= deadline:
        proc.stop(30)
        cell.latency_note = "latency: the system did not join its group within 180 s"
        return
    time.sleep(2.0)
    reader = OutputReader(connection, [launch.output_topic]).start()
    codec = ctx.codec("com.example.Order")
    producer = Producer(
        connection.config(**{"enable.idempotence": True, "linger.ms": 1}, log_level=0)
    )
    rng = random.Random(11)
    feed_start_ms = int(time.time() * 1000)
    expected = 0
    total = int(rate * seconds)
    started = time.monotonic()
    progress(f"  {cell.system} {cell.workload}: feeding {rate:,} events/s for {seconds:.0f} s")
    for i in range(total):
        now_ms = int(time.time() * 1000)
        key, record = latency_event(i, now_ms, rng)
        if cell.workload.startswith("W0") or (is_valid(record) and record["status"] == "PAID"):
            expected += 1
        producer.produce(
            source, codec.encode(record, check=False), key.encode(),
            partition=partition_of(key), timestamp=now_ms,
        )  # fmt: skip
        if i % 50 == 0:
            producer.poll(0)
            ahead = i / rate - (time.monotonic() - started)
            if ahead > 0:
                time.sleep(ahead)
    fed = time.monotonic()
    producer.flush(30)
    wait_until = time.monotonic() + 30
    while time.monotonic() < wait_until and len(reader.records) < expected:
        time.sleep(0.2)
    reader.close()
    drained = time.monotonic()
    proc.stop(60)
    cell.extra["latency_phases_s"] = {
        "feed": round(fed - started, 1),
        "outputs_after_feed": round(drained - fed, 1),
        "stop": round(time.monotonic() - drained, 1),
    }
    progress(f"  {cell.system} {cell.workload}: phases {cell.extra['latency_phases_s']}")
    warm_ms = feed_start_ms + 1000
    latencies = []
    for r in reader.records:
        created = _created_at(ctx, cell.system, cell.workload, r.value)
        if created is not None and created >= warm_ms:
            latencies.append(r.seen_at * 1000 - created)
    cell.latency_samples = len(latencies)
    cell.p50_ms = percentile(latencies, 0.5)
    cell.p99_ms = percentile(latencies, 0.99)
    if len(reader.records) < expected:
        cell.latency_note = (
            f"latency: only {len(reader.records):,} of {expected:,} outputs arrived within 30 s "
            "after the feed ended"
        )
    if cell.events_per_s is not None and cell.events_per_s < rate:
        slow = f"its throughput ({cell.events_per_s:,.0f} events/s) is below the input rate, so latency grows with the run"
        cell.latency_note = (
            f"{cell.latency_note}; {slow}" if cell.latency_note else f"latency: {slow}"
        )


def _created_at(ctx: Context, system: str, workload: str, value: bytes | None) -> int | None:
    if value is None:
        return None
    if system == "bare":
        return int(ctx.codec("com.example.Order").decode(value)["created_at"])
    if system == "streamline":
        return int(ctx.codec("com.example.PaidOrder").decode(value)["created_at"])
    return int(json.loads(value)["created_at"])


def stale_runs(connection: Connection) -> str | None:
    """A pattern for the topics of runs started long ago (never those of a run going on now)."""
    admin = AdminClient(connection.config(log_level=0))
    now = datetime.now(UTC)
    prefixes = set()
    for topic in admin.list_topics(timeout=10).topics:
        match = RUN_PREFIX.match(topic)
        if match is None:
            continue
        started = datetime.strptime(match.group(1), "%Y%m%d%H%M%S").replace(tzinfo=UTC)
        if (now - started).total_seconds() > STALE_AFTER_S:
            prefixes.add(re.escape(f"bench-{match.group(1)}"))
    return "|".join(sorted(prefixes)) or None


def parse_list(text: str | None, allowed: tuple[str, ...], what: str) -> list[str]:
    if not text:
        return list(allowed)
    chosen = [x.strip() for x in text.split(",") if x.strip()]
    lookup = {a.lower(): a for a in allowed}
    unknown = [c for c in chosen if c.lower() not in lookup]
    if unknown:
        raise SystemExit(f"unknown {what} {', '.join(unknown)}; choose from {', '.join(allowed)}")
    return [lookup[c.lower()] for c in chosen]


def main() -> int:
    parser = argparse.ArgumentParser(
        description=__doc__.split("\n", 1)[0], formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument(
        "--events",
        type=int,
        default=DEFAULT_EVENTS,
        help=f"classic input events (default {DEFAULT_EVENTS:,})",
    )
    parser.add_argument("--only", help=f"systems, comma-separated: {','.join(SYSTEMS)}")
    parser.add_argument("--workloads", help=f"workloads, comma-separated: {','.join(WORKLOADS)}")
    parser.add_argument("--skip-latency", action="store_true", help="skip the fixed-rate runs")
    parser.add_argument("--latency-rate", type=int, default=5000, help="events/s (default 5000)")
    parser.add_argument("--latency-seconds", type=float, default=DEFAULT_LATENCY_S,
                        help=f"seconds of each fixed-rate feed (default {DEFAULT_LATENCY_S:g})")  # fmt: skip
    parser.add_argument("--commit-interval-ms", type=int, default=100)
    parser.add_argument("--stall-seconds", type=float, default=90.0)
    parser.add_argument("--results", type=Path, default=RESULTS)
    parser.add_argument("--repeats", type=int, default=DEFAULT_REPEATS,
                        help=f"runs of each cell, interleaved; figures are their medians "
                        f"(default {DEFAULT_REPEATS})")  # fmt: skip
    parser.add_argument("--repeat-limit-seconds", type=float, default=REPEAT_LIMIT_S,
                        help="a cell timed over longer than this in its first run is not "
                        f"repeated (default {REPEAT_LIMIT_S:g})")  # fmt: skip
    parser.add_argument("--latency-repeats", type=int, default=DEFAULT_LATENCY_REPEATS,
                        help=f"fixed-rate runs per latency cell (default {DEFAULT_LATENCY_REPEATS})")  # fmt: skip
    parser.add_argument("--suite", choices=["classic", "nexmark", "all"], default=DEFAULT_SUITE,
                        help="classic (default): W0-W4; nexmark: the Nexmark-style queries; all")  # fmt: skip
    parser.add_argument("--queries", help=f"Nexmark queries, comma-separated: {','.join(QUERIES)}")
    parser.add_argument("--nexmark-events", type=int, default=DEFAULT_NEXMARK_EVENTS,
                        help=f"Nexmark events (default {DEFAULT_NEXMARK_EVENTS:,})")  # fmt: skip
    args = parser.parse_args()
    systems = parse_list(args.only, SYSTEMS, "system")
    workloads = parse_list(args.workloads, WORKLOADS, "workload")
    queries = parse_list(args.queries, QUERIES, "query")
    classic = args.suite in ("classic", "all")
    nexmark = args.suite in ("nexmark", "all")
    if not classic:
        workloads = []
    progress = Progress()

    connection = resolve_connection()
    connection.check_reachable()
    machine = machine_info(connection)
    progress(f"broker {connection.bootstrap_servers}; load average {machine['load_before']}")
    versions: dict[str, str] = {"streamline": "0.1.0 (this tree)"}
    for peer, package in (
        ("quix", "quixstreams"),
        ("faust", "faust-streaming"),
        ("bytewax", "bytewax"),
    ):
        if peer in systems:
            progress(f"virtual environment for {peer} (bench/.venvs/{peer})")
            venvs.ensure(peer)
            versions[package] = venvs.version(peer, package)
    versions["confluent-kafka (bare, streamline)"] = importlib.metadata.version("confluent-kafka")
    machine["versions"] = versions

    stale = stale_runs(connection)
    if stale:
        old = delete_topics(connection, stale)
        delete_groups(connection, stale)
        progress(f"deleted {len(old)} topics of runs older than {STALE_AFTER_S // 3600} h")
    prefix = f"bench-{datetime.now(UTC).strftime('%Y%m%d%H%M%S')}"
    workdir = WORK / prefix
    log_dir = workdir / "logs"
    ctx = Context(
        prefix,
        connection.bootstrap_servers,
        workdir,
        prepare_schemas(workdir),
        args.commit_interval_ms,
    )

    cells: list[Cell] = []
    plan: list[tuple[str, str]] = []
    for system in systems:
        for workload in workloads:
            if workload not in SUPPORTED[system]:
                continue
            reason = SUPPORTED[system][workload]
            if reason:
                cells.append(Cell(system, workload, status="n/a", note=reason))
            else:
                plan.append((system, workload))
    failed = False
    nexmark_cells: list[Cell] = []
    nexmark_info: dict[str, Any] = {}
    registry = registry_variant.RegistryForRun(workdir)
    if any(w == registry_variant.WORKLOAD for _, w in plan):
        registry.__enter__()
        if registry.url is None:
            plan.remove(("streamline", registry_variant.WORKLOAD))
            cells.append(Cell("streamline", registry_variant.WORKLOAD, status="n/a",
                              note=registry.reason or "no Schema Registry"))  # fmt: skip
        ctx.registry_url = registry.url
    try:
        source = f"{prefix}-orders"
        expected: dict[str, tuple[list[Row], str, int]] = {}
        produced = 0
        if plan:
            create(connection, {source: (PARTITIONS, KEEP)})
            progress(f"producing {args.events:,} events (+{PARTITIONS} closing) to {source}")
            expected, produced = produce_input(connection, source, args.events, ctx.store, progress)
            progress(
                f"produced {produced:,} events; expected W1 {expected['W1'][2]:,} records, "
                f"W2 {expected['W2'][2]:,} windows, W3 {expected['W3'][2]:,} sessions, "
                f"W4 {expected['W4'][2]:,} enriched orders"
            )
        sources = {w: source for w in WORKLOADS}
        if ctx.registry_url and ("streamline", registry_variant.WORKLOAD) in plan:
            sources[registry_variant.WORKLOAD] = registry_variant.prepare_input(
                connection, ctx.store, source, ctx.registry_url, progress
            )

        def run_one(item: tuple[str, str], r: int) -> Cell:
            system, workload = item
            progress(f"{system} {workload}: starting (repeat {r + 1})")
            launch = make_launch(ctx, system, workload, sources[workload], f"tp{r + 1}")
            cell = run_throughput(
                connection, launch, sources[workload], produced, expected[workload], log_dir, progress,
                args.stall_seconds,
            )  # fmt: skip
            progress(f"{system} {workload}: {_summary(cell)}")
            if cell.status != "ok":
                print(cell.extra.get("log_tail", ""), file=sys.stderr)
            return cell

        plan.sort(key=lambda sw: (WORKLOADS.index(sw[1]), SYSTEMS.index(sw[0])))
        runs = run_repeated(plan, args.repeats, args.repeat_limit_seconds, run_one,
                            MIN_TIMED_S, MAX_REPEATS)  # fmt: skip
        cells.extend(combine(r) for r in runs.values())
        file_sink = run_file_sink_cell(connection, ctx, plan, cells, source, produced,
                                       expected, log_dir, progress, args.stall_seconds)  # fmt: skip
        if not args.skip_latency:
            latency_cells = [c for c in cells if (c.system, c.workload) in LATENCY_CELLS
                             and c.status != "n/a"]  # fmt: skip

            def run_latency_once(i: int, r: int) -> Cell:
                cell = latency_cells[i]
                progress(f"{cell.system} {cell.workload}: latency (repeat {r + 1} of "
                         f"{args.latency_repeats})")  # fmt: skip
                one = Cell(cell.system, cell.workload, events_per_s=cell.events_per_s)
                run_latency(
                    connection, ctx, one, args.latency_rate, args.latency_seconds, log_dir,
                    progress, tag=f"lat{r + 1}",
                )  # fmt: skip
                # a system that did not keep up with the feed (outputs still missing after it,
                # or a throughput below the rate) has no steady latency to repeat: it runs once
                one.seconds = math.inf if one.latency_note else args.latency_seconds
                progress(
                    f"{cell.system} {cell.workload}: p50 {_ms(one.p50_ms)} p99 {_ms(one.p99_ms)} "
                    f"({one.latency_samples or 0:,} samples)"
                )
                return one

            by_cell = run_repeated(range(len(latency_cells)), args.latency_repeats,
                                   args.latency_seconds, run_latency_once)  # fmt: skip
            for i, repeats in by_cell.items():
                combine_latency(latency_cells[i], repeats)
        if nexmark:
            nexmark_cells, nexmark_info = run_nexmark(
                connection, ctx, systems, queries, args.nexmark_events, log_dir, progress,
                args.stall_seconds, args.repeats, args.repeat_limit_seconds,
            )  # fmt: skip
    finally:
        registry.__exit__()
        progress("deleting this run's topics and state")
        delete_topics(connection, re.escape(prefix))
        delete_groups(connection, re.escape(prefix))
        shutil.rmtree(workdir / "state", ignore_errors=True)

    order = {(s, w): i for i, (s, w) in enumerate((s, w) for s in SYSTEMS for w in WORKLOADS)}
    cells.sort(key=lambda c: order.get((c.system, c.workload), 99))
    machine["load_after"] = " ".join(f"{x:.2f}" for x in os.getloadavg())
    settings = {
        "events": args.events,
        "partitions": PARTITIONS,
        "commit_interval_ms": args.commit_interval_ms,
        "repeats": args.repeats,
        "repeat_limit_s": args.repeat_limit_seconds,
        "latency_repeats": None if args.skip_latency else args.latency_repeats,
        "latency_rate": None if args.skip_latency else args.latency_rate,
        "latency_seconds": None if args.skip_latency else args.latency_seconds,
        "method": METHOD,
        "file_sink": file_sink,
    }
    if classic:
        write_results(args.results, cells, machine, settings)
    if nexmark:
        nexmark_info.update(date=machine["date"], load_before=machine["load_before"],
                            load_after=machine["load_after"])  # fmt: skip
        (args.results / "nexmark.json").write_text(json.dumps({
            "machine": machine, "settings": nexmark_info, "method": NEXMARK_METHOD,
            "cells": [c.as_dict() for c in nexmark_cells],
        }, indent=2) + "\n")  # fmt: skip
    run_targets = round_two_targets([*cells, *nexmark_cells])
    history_path = args.results / "runs.json"
    history = json.loads(history_path.read_text()) if history_path.exists() else []
    history = record_run(history, {
        "date": machine["date"], "suite": args.suite, "git_sha": machine["git_sha"],
        "load": f"{machine['load_before']} / {machine['load_after']}",
        "events": {"classic": args.events if classic else None,
                   "nexmark": args.nexmark_events if nexmark else None},
        "repeats": args.repeats,
        "ratios": {t.name: t.value for t in run_targets if t.met is not None},
    })  # fmt: skip
    history_path.write_text(json.dumps(history, indent=2) + "\n")
    write_page(args.results)
    progress(
        f"results in {args.results.relative_to(ROOT) if args.results.is_relative_to(ROOT) else args.results}/"
    )
    for t in [*targets(cells), *run_targets]:
        verdict = "-" if t.met is None else ("met" if t.met else "MISSED")
        progress(f"target {t.name}: {t.value} (goal {t.goal}): {verdict}")
    cells = [*cells, *nexmark_cells]
    failed = any(c.status in ("mismatch", "failed") for c in cells)
    if file_sink and file_sink["status"] != "ok":
        print(
            f"benchmark FAILED: streamline W1 into files ({file_sink['status']})", file=sys.stderr
        )
        return 1
    if failed:
        bad = ", ".join(
            f"{c.system} {c.workload} ({c.status})"
            for c in cells
            if c.status in ("mismatch", "failed")
        )
        print(f"benchmark FAILED: {bad}", file=sys.stderr)
        return 1
    return 0


def run_file_sink_cell(
    connection: Connection, ctx: Context, plan: list[tuple[str, str]], cells: list[Cell],
    source: str, produced: int, expected: dict[str, tuple[list[Row], str, int]],
    log_dir: Path, progress: Progress, stall_s: float,
) -> dict[str, Any] | None:  # fmt: skip
    """streamline's W1 into Parquet files, beside its W1 topic-sink cell (bench/file_sink.py)."""
    if ("streamline", "W1") not in plan:
        return None
    progress("streamline W1 into Parquet files: starting")
    try:
        result = run_file_sink(connection, ctx, source, produced, expected["W1"], log_dir, stall_s)
    except subprocess.CalledProcessError as exc:
        # reported, and the run goes on: the other cells' results are still written
        output = (exc.stderr or b"").decode(errors="replace").strip().splitlines()
        result = {"status": "failed", "roll": "-",
                  "reason": f"{' '.join(exc.cmd[2:4])} failed: {output[-1] if output else exc}"}  # fmt: skip
        progress(f"streamline W1 into Parquet files: FAILED, {result['reason']}")
        return result
    topic = next((c for c in cells if (c.system, c.workload) == ("streamline", "W1")), None)
    if topic is not None and topic.events_per_s and result.get("events_per_s"):
        result["topic_sink_events_per_s"] = topic.events_per_s
        result["ratio_to_topic_sink"] = result["events_per_s"] / topic.events_per_s
    progress(
        f"streamline W1 into Parquet files: {result['status']}, "
        f"{result.get('events_per_s', 0):,.0f} events/s "
        f"({result.get('ratio_to_topic_sink', 0):.0%} of the topic sink's W1), "
        f"{result.get('files', 0)} files"
    )
    return result


def _ms(value: float | None) -> str:
    return "-" if value is None else f"{value:.0f} ms"


def _summary(cell: Cell) -> str:
    if cell.status not in ("ok", "mismatch"):
        return f"{cell.status.upper()}: {cell.note}"
    text = (
        f"{cell.events_per_s or 0:,.0f} events/s, {cell.cpu_s_per_m or 0:.1f} CPU s/M, "
        f"peak RSS {cell.peak_rss_mb or 0:.0f} MB, {cell.output_records or 0:,} results"
    )
    return text if cell.status == "ok" else f"{text}: MISMATCH {cell.note}"


def write_results(
    folder: Path, cells: list[Cell], machine: dict[str, Any], settings: dict[str, Any]
) -> None:
    folder.mkdir(parents=True, exist_ok=True)
    payload = {
        "method": settings.get("method"),
        "machine": machine,
        "settings": {k: v for k, v in settings.items() if k != "method"},
        "cells": [c.as_dict() for c in cells],
        "targets": [t.__dict__ for t in targets(cells)],
    }
    (folder / "results.json").write_text(json.dumps(payload, indent=2) + "\n")
    render_chart(cells, folder / "results.png")


if __name__ == "__main__":
    sys.exit(main())
