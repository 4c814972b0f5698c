"""Failover: how long output pauses, and how long state takes to restore, when instances come and go.

A windowed topology (tumbling one-day windows, so every key's window stays open and
its state stays in the stores) runs on two instances, each with its own state
directory. ``--keys`` distinct keys are loaded first (1M by default), then input flows
at ``--rate`` events/s over the same keys while, one after the other:

- (a) an instance is SIGKILLed and restarted at once with the same id;
- (b) it is stopped with SIGTERM and restarted (a rolling update);
- (c) it is SIGKILLed and never comes back;
- (d) the lost instance is started again, then a third one joins (2 -> 3 instances).

For each scenario (and the machine's load average when it starts): the **output
pause**, the longest time any source partition's committed offset did not move (the
topology commits its output with its input offsets, in one transaction, so a partition
whose offset does not move writes nothing), and the **restore time**: the longest
restore of one partition's store, the sum of the restores (one instance restores its
partitions one after the other) and the records they replayed. Committed offsets are read every 100 ms, so a pause
is exact to ~0.1 s plus the commit interval (200 ms). In (d) the pause is given
apart for the partitions that moved and those that stayed.

    python -m bench.failover [--keys 1000000] [--rate 2000] [--scenarios abcd]
        [--membership static|dynamic] [--topology-line "standby_replicas: 1"]

Results go to ``bench/results/failover.json``; the instances' logs to a temporary
directory printed at the start (kept with ``--keep``).
"""

from __future__ import annotations

import argparse
import itertools
import json
import os
import random
import re
import shutil
import signal
import subprocess
import sys
import tempfile
import threading
import time
from dataclasses import dataclass, field
from datetime import datetime
from pathlib import Path
from typing import Any

from confluent_kafka import Producer

from bench.cluster import GroupOffsets, delete_groups, delete_topics, end_offsets
from streamline.kafka.admin import create_topics
from streamline.kafka.connection import Connection
from streamline.ops.topics import topology_topics
from streamline.serde import AvroCodec, SchemaStore
from streamline.topology import load_topology

ROOT = Path(__file__).resolve().parents[1]
SCHEMAS = ROOT / "schemas"
RESULTS = ROOT / "bench" / "results" / "failover.json"
BASE = 1_767_225_600_000  # 2026-01-01T00:00:00Z, the start of a day window
POLL_S = 0.1

TOPOLOGY = """\
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
      max_out_of_orderness: 5s
stages:
  - key_by: customer_id
  - window:
      tumbling: 1d
      aggregate:
        order_count: count()
        revenue: sum(amount)
        max_amount: max(amount)
        min_amount: min(amount)
        avg_amount: avg(amount)
        first_order: first(order_id)
        last_order: last(order_id)
sink:
  topic: {sink}
  schema: com.example.CustomerRevenue
guarantee: exactly_once
commit_interval: 200ms
{extra}"""

LINE = re.compile(r"^(\d{4}-\d\d-\d\d \d\d:\d\d:\d\d,\d{3}) \w+ [\w.]+: (.*)$")
RESTORED = re.compile(
    r"restored \w+ partition (\d+): (\d+) changelog records from offset \d+ in ([\d.]+)s"
)
ASSIGNED = re.compile(r"'([^']+)/(\d+)'")


class Instance:
    """`streamline run` as a child process with its own state directory and log."""

    def __init__(
        self, topology: Path, name: str, workdir: Path, env: dict[str, str], extra: list[str]
    ) -> None:
        self.topology, self.name, self.env, self.extra = topology, name, env, extra
        self.state_dir = workdir / "state" / name
        self.log_path = workdir / f"{name}.log"
        self.proc: subprocess.Popen[bytes] | None = None

    def start(self) -> None:
        log = open(self.log_path, "ab")  # noqa: SIM115 - the child writes it for its lifetime
        self.proc = subprocess.Popen(
            [sys.executable, "-m", "streamline", "run", str(self.topology),
             "--instance-id", self.name, "--state-dir", str(self.state_dir), "--metrics-port", "0",
             *self.extra],
            cwd=ROOT, env=self.env, stdout=log, stderr=subprocess.STDOUT,
        )  # fmt: skip

    def signal(self, sig: int) -> None:
        assert self.proc is not None
        self.proc.send_signal(sig)
        self.proc.wait(120)

    def alive(self) -> bool:
        return self.proc is not None and self.proc.poll() is None

    def lines(self, since: float) -> list[tuple[float, str]]:
        out: list[tuple[float, str]] = []
        if not self.log_path.exists():
            return out
        for line in self.log_path.read_text(errors="replace").splitlines():
            match = LINE.match(line)
            if match:
                at = datetime.strptime(match.group(1), "%Y-%m-%d %H:%M:%S,%f").timestamp()
                if at >= since:
                    out.append((at, match.group(2)))
        return out


class Feeder(threading.Thread):
    """Orders at a steady rate over the loaded keys, event time following the wall clock."""

    def __init__(
        self, connection: Connection, topic: str, codec: AvroCodec, keys: int, rate: float
    ) -> None:
        super().__init__(daemon=True)
        self.topic, self.codec, self.keys, self.rate = topic, codec, keys, rate
        self.producer = Producer(connection.config(**{"enable.idempotence": True, "linger.ms": 10}))
        self.halt = threading.Event()
        self.sent = 0

    def run(self) -> None:
        rng = random.Random(7)
        started = time.monotonic()
        while not self.halt.is_set():
            key = f"c-{rng.randrange(self.keys)}"
            at = BASE + 60_000 + int((time.monotonic() - started) * 1000)
            produce(self.producer, self.topic, self.codec, key, self.sent, at)
            self.sent += 1
            if self.sent % 50 == 0:
                self.producer.poll(0)
                ahead = self.sent / self.rate - (time.monotonic() - started)
                if ahead > 0:
                    time.sleep(ahead)
        self.producer.flush(60)


def produce(producer: Producer, topic: str, codec: AvroCodec, key: str, i: int, at: int) -> None:
    value = codec.encode(
        {"order_id": f"o-{i}", "customer_id": key, "amount": 1.0 + i % 100, "currency": "EUR",
         "status": "PAID", "country": "DE", "created_at": at},
        check=False,
    )  # fmt: skip
    while True:
        try:
            producer.produce(topic, key=key.encode(), value=value)
            return
        except BufferError:
            producer.poll(0.05)


class Progress(threading.Thread):
    """The group's committed offset of each source partition, and when each one moved."""

    def __init__(self, connection: Connection, group: str, topic: str, partitions: int) -> None:
        super().__init__(daemon=True)
        self.offsets = GroupOffsets(connection, group, topic, partitions)
        self.partitions = partitions
        self.moves: dict[int, list[float]] = {p: [] for p in range(partitions)}
        self.last: dict[int, int] = {}
        self.halt = threading.Event()

    def run(self) -> None:
        while not self.halt.is_set():
            at = time.time()
            for p, offset in self.offsets.committed().items():
                if self.last.get(p) != offset:
                    self.last[p] = offset
                    self.moves[p].append(at)
            self.halt.wait(POLL_S)

    def moved_since(self, at: float) -> bool:
        return all(any(t > at for t in self.moves[p]) for p in range(self.partitions))

    def longest_gap(self, partition: int, start: float, end: float) -> float:
        """The longest stretch in [start, end] without a move, from the last move before start."""
        times = self.moves[partition]
        before = [t for t in times if t <= start]
        marks = [before[-1] if before else start, *(t for t in times if start < t <= end), end]
        return max(b - a for a, b in itertools.pairwise(marks))


@dataclass
class Scenario:
    name: str
    what: str
    triggered_at: float = 0.0
    settled_at: float = 0.0
    pause_s: float = 0.0
    pause_unmoved_s: float | None = None
    pause_moved_s: float | None = None
    pause_by_partition: dict[int, float] = field(default_factory=dict)
    restores: list[dict[str, Any]] = field(default_factory=list)
    load_average: float = 0.0  # the machine's 1-minute load average when triggered

    def summary(self) -> dict[str, Any]:
        out: dict[str, Any] = {
            "scenario": self.name,
            "what": self.what,
            "output_pause_s": round(self.pause_s, 2),
            "settled_after_s": round(self.settled_at - self.triggered_at, 2),
            "restore_s": round(max((r["seconds"] for r in self.restores), default=0.0), 2),
            "restore_total_s": round(sum(r["seconds"] for r in self.restores), 2),
            "restored_records": sum(r["records"] for r in self.restores),
            "output_pause_by_partition_s": self.pause_by_partition,
            "load_average": round(self.load_average, 1),
            "restores": self.restores,
        }
        if self.pause_moved_s is not None:
            out["output_pause_moved_s"] = round(self.pause_moved_s, 2)
            out["output_pause_unmoved_s"] = round(self.pause_unmoved_s or 0.0, 2)
        return out


class Bench:
    def __init__(self, args: argparse.Namespace, connection: Connection, workdir: Path) -> None:
        self.args, self.connection, self.workdir = args, connection, workdir
        self.unique = unique = f"{os.getpid()}-{int(time.time())}"
        self.name = f"failover-{unique}"
        self.source = f"failover-orders-{unique}"
        folder = workdir / "topologies"
        folder.mkdir(parents=True)
        self.path = folder / f"{self.name}.yaml"
        extra = "".join(f"{line}\n" for line in args.topology_line)
        self.path.write_text(
            TOPOLOGY.format(
                name=self.name, source=self.source, sink=f"failover-out-{unique}", extra=extra
            )
        )
        self.topology = load_topology(self.path)
        store = SchemaStore(SCHEMAS)
        self.codec = AvroCodec(store, store.get("com.example.Order"))
        self.env = dict(os.environ)
        self.env.update({
            "STREAMLINE_BOOTSTRAP_SERVERS": connection.bootstrap_servers,
            "STREAMLINE_SCHEMAS": str(SCHEMAS),
            "STREAMLINE_KAFKA_SESSION_TIMEOUT_MS": str(args.session_timeout_ms),
            "PYTHONUNBUFFERED": "1",
        })  # fmt: skip
        membership = [f"--{args.membership}-membership"]
        self.instances = {
            n: Instance(self.path, n, workdir, self.env, membership) for n in ("a", "b", "c")
        }
        self.progress = Progress(connection, self.topology.group_id, self.source, args.partitions)
        self.owner: dict[int, str] = {}

    # --- setup -------------------------------------------------------------------------

    def setup(self) -> None:
        create_topics(self.connection, topology_topics(self.topology, self.args.partitions))
        create_topics(
            self.connection, {"streamline.lineage": (3, {}), "streamline.heartbeats": (1, {})}
        )
        for n in ("a", "b"):
            self.instances[n].start()
        self.await_owners({"a", "b"}, since=0.0)
        self.progress.start()
        started = time.monotonic()
        producer = Producer(
            self.connection.config(**{"enable.idempotence": True, "linger.ms": 50, "batch.size": 1_000_000,
                                      "compression.type": "lz4", "queue.buffering.max.messages": 1_000_000})
        )  # fmt: skip
        for i in range(self.args.keys):
            produce(producer, self.source, self.codec, f"c-{i}", i, BASE + i % 60_000)
            if i % 10_000 == 0:
                producer.poll(0)
        producer.flush(300)
        ends = end_offsets(self.connection, self.source)
        deadline = time.monotonic() + self.args.load_timeout
        while any(self.progress.last.get(p, 0) < end for p, end in ends.items()):
            if time.monotonic() > deadline:
                raise SystemExit(
                    f"state not loaded within {self.args.load_timeout}s: {self.progress.last} < {ends}"
                )
            time.sleep(0.5)
        print(f"loaded {self.args.keys:,} keys in {time.monotonic() - started:.1f}s", flush=True)

    def assignments(self, since: float) -> dict[int, str]:
        """Each source partition's owner by the latest `assigned` lines of the live instances."""
        owner: dict[int, tuple[float, str]] = {}
        for inst in self.instances.values():
            if not inst.alive():
                continue
            for at, message in inst.lines(since):
                if message.startswith("assigned "):
                    for topic, p in ASSIGNED.findall(message):
                        if topic == self.source and (int(p) not in owner or owner[int(p)][0] <= at):
                            owner[int(p)] = (at, inst.name)
                elif message.startswith("revoked "):
                    for topic, p in ASSIGNED.findall(message):
                        held = owner.get(int(p))
                        mine = held is not None and held[1] == inst.name and held[0] <= at
                        if topic == self.source and mine:  # revoked since its last assignment here
                            del owner[int(p)]
        return {p: name for p, (_at, name) in owner.items()}

    def await_owners(
        self, members: set[str], since: float, timeout: float = 300.0
    ) -> dict[int, str]:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            owner = self.assignments(since)
            if len(owner) == self.args.partitions and set(owner.values()) == members:
                return owner
            time.sleep(0.2)
        raise SystemExit(f"{members} did not hold every partition within {timeout}s")

    # --- scenarios ---------------------------------------------------------------------

    def run(self, scenario: Scenario, trigger: Any, members: set[str]) -> Scenario:
        time.sleep(self.args.steady_s)
        before = dict(self.owner) or self.assignments(0.0)
        scenario.triggered_at = time.time()
        scenario.load_average = os.getloadavg()[0]
        trigger()
        deadline = time.monotonic() + self.args.settle_timeout
        while True:
            owner = self.assignments(0.0)
            last_assigned = max(
                (at for inst in self.instances.values() if inst.alive()
                 for at, m in inst.lines(scenario.triggered_at) if m.startswith("assigned ")),
                default=scenario.triggered_at,
            )  # fmt: skip
            if (
                len(owner) == self.args.partitions
                and set(owner.values()) == members
                and self.progress.moved_since(last_assigned + 0.5)
            ):
                break
            if time.monotonic() > deadline:
                raise SystemExit(
                    f"{scenario.name}: not settled within {self.args.settle_timeout}s: {owner}"
                )
            time.sleep(0.2)
        time.sleep(2.0)  # a quiet stretch after the last move, so a late pause would show
        scenario.settled_at = time.time()
        self.owner = owner
        gaps = {
            p: self.progress.longest_gap(p, scenario.triggered_at, scenario.settled_at)
            for p in range(self.args.partitions)
        }
        scenario.pause_s = max(gaps.values())
        scenario.pause_by_partition = {p: round(g, 2) for p, g in gaps.items()}
        if scenario.name == "d":
            moved = [p for p in gaps if before.get(p) != owner.get(p)]
            stayed = [p for p in gaps if p not in moved]
            scenario.pause_moved_s = max((gaps[p] for p in moved), default=0.0)
            scenario.pause_unmoved_s = max((gaps[p] for p in stayed), default=0.0)
        for inst in self.instances.values():
            for at, message in inst.lines(scenario.triggered_at):
                match = RESTORED.match(message)
                if match and at <= scenario.settled_at:
                    scenario.restores.append({
                        "instance": inst.name, "partition": int(match.group(1)),
                        "records": int(match.group(2)), "seconds": float(match.group(3)),
                    })  # fmt: skip
        print(
            json.dumps({k: v for k, v in scenario.summary().items() if k != "restores"}), flush=True
        )
        return scenario

    def scenarios(self) -> list[Scenario]:
        b, c = self.instances["b"], self.instances["c"]
        wanted = self.args.scenarios
        out = []

        def kill_restart() -> None:
            b.signal(signal.SIGKILL)
            b.start()

        def term_restart() -> None:
            b.signal(signal.SIGTERM)
            b.start()

        if "a" in wanted:
            out.append(
                self.run(
                    Scenario("a", "SIGKILL b, restart it with the same id"),
                    kill_restart,
                    {"a", "b"},
                )
            )
        if "b" in wanted:
            out.append(
                self.run(
                    Scenario("b", "SIGTERM b, restart it (rolling update)"),
                    term_restart,
                    {"a", "b"},
                )
            )
        if "c" in wanted or "d" in wanted:
            lost = self.run(
                Scenario("c", "SIGKILL b, never restarted"), lambda: b.signal(signal.SIGKILL), {"a"}
            )
            if "c" in wanted:
                out.append(lost)
        if "d" in wanted:
            self.run(Scenario("d0", "b started again"), b.start, {"a", "b"})
            out.append(
                self.run(Scenario("d", "a third instance joins (2 -> 3)"), c.start, {"a", "b", "c"})
            )
        return out

    def stop(self) -> None:
        for inst in self.instances.values():
            if inst.alive():
                assert inst.proc is not None
                inst.proc.send_signal(signal.SIGTERM)
        for inst in self.instances.values():
            if inst.proc is not None:
                try:
                    inst.proc.wait(60)
                except subprocess.TimeoutExpired:
                    inst.proc.kill()
        self.progress.halt.set()


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(
        prog="python -m bench.failover", description=__doc__.splitlines()[0]
    )
    parser.add_argument(
        "--bootstrap", default=os.environ.get("STREAMLINE_BOOTSTRAP_SERVERS", "127.0.0.1:9092")
    )
    parser.add_argument("--keys", type=int, default=1_000_000, help="distinct keys of window state")
    parser.add_argument(
        "--rate", type=float, default=2000.0, help="input events/s during the scenarios"
    )
    parser.add_argument("--partitions", type=int, default=6)
    parser.add_argument("--scenarios", default="abcd")
    parser.add_argument("--session-timeout-ms", type=int, default=10000)
    parser.add_argument(
        "--membership", choices=["static", "dynamic"], default="static", help="of the instances"
    )
    parser.add_argument(
        "--topology-line", action="append", default=[], help="a line added to the topology"
    )
    parser.add_argument(
        "--steady-s", type=float, default=5.0, help="steady input before each scenario"
    )
    parser.add_argument("--settle-timeout", type=float, default=300.0)
    parser.add_argument("--load-timeout", type=float, default=1800.0)
    parser.add_argument("--label", default="", help="a name for this run in the results file")
    parser.add_argument("--out", type=Path, default=RESULTS)
    parser.add_argument("--keep", action="store_true", help="keep the logs and state directories")
    args = parser.parse_args(argv)
    connection = Connection(args.bootstrap)
    workdir = Path(tempfile.mkdtemp(prefix="streamline-failover-"))
    print(f"logs and state under {workdir}", flush=True)
    bench = Bench(args, connection, workdir)
    feeder = Feeder(connection, bench.source, bench.codec, args.keys, args.rate)
    try:
        bench.setup()
        feeder.start()
        results = bench.scenarios()
    finally:
        feeder.halt.set()
        bench.stop()
        delete_topics(connection, re.escape(bench.unique))
        delete_groups(connection, re.escape(bench.name))
        if not args.keep:
            shutil.rmtree(workdir, ignore_errors=True)
    record = {
        "label": args.label,
        "at": datetime.now().isoformat(timespec="seconds"),
        "keys": args.keys,
        "rate": args.rate,
        "partitions": args.partitions,
        "session_timeout_ms": args.session_timeout_ms,
        "membership": args.membership,
        "topology_lines": args.topology_line,
        "scenarios": [s.summary() for s in results],
    }
    previous = json.loads(args.out.read_text()) if args.out.exists() else []
    args.out.write_text(json.dumps([*previous, record], indent=2) + "\n")
    print(f"wrote {args.out}")


if __name__ == "__main__":
    main()
