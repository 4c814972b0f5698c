"""Continuous input, and what running instances say about rebalances: metrics samples and log lines."""

from __future__ import annotations

import itertools
import random
import re
import threading
import time
import urllib.error
import urllib.request
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any

from confluent_kafka import Producer

from streamline.kafka.connection import Connection
from streamline.serde import AvroCodec
from tests.support.harness import StreamlineProcess
from tests.support.windows_oracle import BASE, Event, order


def order_value(codec: AvroCodec, e: Event) -> bytes:
    """The event as a PAID order in EUR."""
    return codec.encode(
        order(e),
        check=False,
    )


class ContinuousOrders(threading.Thread):
    """Produces orders at a steady rate until stopped, recording exactly what was produced.

    Event time advances by `step_ms` per event, each event delayed by less than
    `disorder_ms`, so windows keep closing while the test runs. Records are keyed by
    customer, or by order id when the topology has to repartition them.
    """

    def __init__(
        self,
        connection: Connection,
        topic: str,
        codec: AvroCodec,
        rate: float,
        keys: int,
        step_ms: int,
        disorder_ms: int,
        key_by_order: bool,
        seed: int = 5,
    ) -> None:
        super().__init__(daemon=True)
        self.connection = connection
        self.topic = topic
        self.codec = codec
        self.rate = rate
        self.keys = keys
        self.step_ms = step_ms
        self.disorder_ms = disorder_ms
        self.key_by_order = key_by_order
        self.rng = random.Random(seed)
        self.events: list[Event] = []
        self.errors: list[str] = []
        self.delivered = 0
        self._halt = threading.Event()
        self._used: set[int] = set()
        self.producer = Producer(connection.config(**{"enable.idempotence": True, "linger.ms": 20}))

    def _on_delivery(self, err: Any, _msg: Any) -> None:
        if err is not None:
            self.errors.append(str(err))
        else:
            self.delivered += 1

    def _produce(self, e: Event, key: str, partition: int = -1) -> None:
        while True:
            try:
                self.producer.produce(
                    self.topic,
                    key=key.encode(),
                    value=order_value(self.codec, e),
                    partition=partition,
                    on_delivery=self._on_delivery,
                )
                break
            except BufferError:
                self.producer.poll(0.05)
        self.events.append(e)

    def run(self) -> None:
        started = time.monotonic()
        i = 0
        while not self._halt.is_set():
            t = BASE + i * self.step_ms - self.rng.randrange(self.disorder_ms)
            while t in self._used:  # distinct event times: first/last never depend on arrival
                t -= 1
            self._used.add(t)
            key = f"k-{self.rng.randrange(self.keys)}"
            amount = round(self.rng.uniform(1, 100), 2)
            e = Event(key, f"o-{i}", amount, t, i)
            self._produce(e, e.order_id if self.key_by_order else e.key)
            i += 1
            if i % 100 == 0:
                self.producer.poll(0)
                ahead = i / self.rate - (time.monotonic() - started)
                if ahead > 0:
                    time.sleep(ahead)

    def halt(self) -> None:
        """Stops producing and waits until what was produced is delivered."""
        self._halt.set()
        if self.is_alive():
            self.join(30)
        self.producer.flush(60)

    def finish(self, partitions: int, beyond_ms: int) -> list[Event]:
        """Stops producing, then sends one event per partition `beyond_ms` past the newest.

        Those closing events move every partition's watermark past every window that
        holds a produced event; their own windows stay open.
        """
        self.halt()
        newest = max(e.t for e in self.events)
        closing = []
        for p in range(partitions):
            n = len(self.events)
            e = Event(f"close-{p}", f"o-{n}", 1.0, newest + beyond_ms + p, n)
            self._produce(e, e.order_id if self.key_by_order else e.key, partition=p)
            closing.append(e)
        assert self.producer.flush(60) == 0
        return closing


@dataclass
class Sample:
    """One scrape of an instance: when, what it holds and how far it has committed."""

    at: float
    port: int
    """The metrics port scraped: a restarted instance serves another, its counters from 0."""
    assigned: int
    ready: bool
    records_in: float
    records_out: float
    restored: float
    rebalances: float


def scrape(port: int, source: str) -> Sample | None:
    """The instance's /metrics and /readyz now, or None while it does not answer."""
    at = time.time()
    try:
        with urllib.request.urlopen(f"http://127.0.0.1:{port}/metrics", timeout=2) as response:
            text = response.read().decode()
        try:
            with urllib.request.urlopen(f"http://127.0.0.1:{port}/readyz", timeout=2) as r:
                ready = r.status == 200
        except urllib.error.HTTPError:
            ready = False
    except (OSError, urllib.error.URLError):
        return None
    assigned = records_in = records_out = restored = rebalances = 0.0
    for line in text.splitlines():
        if line.startswith("#"):
            continue
        name, _, value = line.rpartition(" ")
        if name.startswith("streamline_assigned_partitions"):
            assigned = float(value)
        elif name.startswith("streamline_records_in_total{") and f'topic="{source}"' in name:
            records_in += float(value)
        elif name.startswith("streamline_records_out_total{"):
            records_out += float(value)
        elif name.startswith("streamline_restore_records_total{"):
            restored += float(value)
        elif name.startswith("streamline_rebalances_total{"):
            rebalances += float(value)
    return Sample(at, port, int(assigned), ready, records_in, records_out, restored, rebalances)


class Sampler(threading.Thread):
    """Scrapes every live instance a few times a second, keeping the timeline."""

    def __init__(self, source: str, interval: float = 0.25) -> None:
        super().__init__(daemon=True)
        self.source = source
        self.interval = interval
        self.procs: dict[str, StreamlineProcess] = {}
        self.timeline: dict[str, list[Sample]] = {}
        self._halt = threading.Event()
        self._lock = threading.Lock()

    def watch(self, instance: str, proc: StreamlineProcess) -> None:
        """Scrapes `proc` from now on, at the port its latest start serves (restarts too)."""
        with self._lock:
            self.procs[instance] = proc
            self.timeline.setdefault(instance, [])

    def unwatch(self, instance: str) -> None:
        with self._lock:
            self.procs.pop(instance, None)

    def run(self) -> None:
        while not self._halt.is_set():
            with self._lock:
                procs = dict(self.procs)
            for instance, proc in procs.items():
                port = proc.served_port()
                sample = scrape(port, self.source) if port is not None else None
                if sample is not None:
                    with self._lock:
                        self.timeline[instance].append(sample)
            self._halt.wait(self.interval)

    def stop(self) -> None:
        self._halt.set()
        self.join(10)

    def latest(self, instance: str) -> Sample | None:
        with self._lock:
            samples = self.timeline.get(instance) or []
            return samples[-1] if samples else None

    def samples(self, instance: str, since: float) -> list[Sample]:
        with self._lock:
            return [s for s in self.timeline.get(instance, []) if s.at >= since]


LINE = re.compile(r"^(\d{4}-\d\d-\d\d \d\d:\d\d:\d\d,\d{3}) \w+ [\w.]+: (.*)$")
RESTORED = re.compile(
    r"restored (\w+) partition (\d+): (\d+) changelog records from offset (\d+) in "
    r"([\d.]+)s \((.*)\)"
)


@dataclass(frozen=True)
class LogLine:
    at: float
    message: str


def log_lines(proc: StreamlineProcess) -> list[LogLine]:
    """The instance's log lines with their time (epoch seconds)."""
    out = []
    for line in proc.log().splitlines():
        match = LINE.match(line)
        if match:
            at = datetime.strptime(match.group(1), "%Y-%m-%d %H:%M:%S,%f").timestamp()
            out.append(LogLine(at, match.group(2)))
    return out


@dataclass
class Rebalance:
    """What one scaling step cost: how long processing paused, and each partition's restore."""

    name: str
    members: list[str]
    triggered_at: float
    began_at: float = 0.0
    settled_at: float = 0.0
    resumed_at: float = 0.0
    stall_s: float = 0.0
    restores: list[dict[str, Any]] = field(default_factory=list)
    # what /metrics counted meanwhile, over every instance: rebalance callbacks, records restored
    callbacks: int = 0
    restored_metric: int = 0

    @property
    def pause_s(self) -> float:
        """From the first partition stopping (revoked, or its owner told to stop) to every
        remaining instance committing input again."""
        return self.resumed_at - self.began_at

    def summary(self) -> dict[str, Any]:
        moved = [r for r in self.restores if r["moved"]]
        return {
            "step": self.name,
            "members": self.members,
            "trigger_to_first_stop_s": round(self.began_at - self.triggered_at, 3),
            "pause_s": round(self.pause_s, 3),
            "revoke_to_restored_s": round(self.settled_at - self.began_at, 3),
            "longest_stall_s": round(self.stall_s, 3),
            "moved_partitions": len(moved),
            "restored_records": sum(r["records"] for r in moved),
            "max_restore_s": max((r["seconds"] for r in moved), default=0.0),
            "rebalance_callbacks": self.callbacks,
            "restore_records_total": self.restored_metric,
            "restores": self.restores,
        }


def settle(
    step: Rebalance,
    sampler: Sampler,
    procs: dict[str, StreamlineProcess],
    total_partitions: int,
    previous_owner: dict[int, str],
    timeout: float,
) -> dict[int, str]:
    """Waits until the members hold every partition, restored, and each commits input again.

    Fills in `step` from the metrics timeline and the instances' logs; returns the new
    owner of each window partition.
    """
    deadline = time.monotonic() + timeout
    members = step.members
    while True:
        latest = {m: sampler.latest(m) for m in members}
        if (
            all(
                s is not None and s.at > step.triggered_at and s.ready and s.assigned > 0
                for s in latest.values()
            )
            and sum(s.assigned for s in latest.values() if s is not None) == total_partitions
        ):
            step.settled_at = max(s.at for s in latest.values() if s is not None)
            break
        if time.monotonic() > deadline:
            raise AssertionError(f"{step.name}: not settled within {timeout}s: {latest}")
        time.sleep(0.1)
    base = {m: s.records_in for m, s in latest.items() if s is not None}
    while True:
        now = {m: sampler.latest(m) for m in members}
        if all(s is not None and s.records_in > base[m] for m, s in now.items()):
            step.resumed_at = max(
                next(s.at for s in sampler.samples(m, 0) if s.records_in > base[m]) for m in members
            )
            break
        if time.monotonic() > deadline:
            raise AssertionError(f"{step.name}: no input committed after the rebalance: {now}")
        time.sleep(0.1)

    lines = {
        m: [x for x in log_lines(p) if x.at >= step.triggered_at - 0.5] for m, p in procs.items()
    }
    stops = [
        x.at
        for xs in lines.values()
        for x in xs
        if x.message.startswith("revoked ") or x.message.startswith("received SIGTERM")
    ]
    step.began_at = min(stops, default=step.triggered_at)
    # the restored lines of the last assignment each member received
    owner: dict[int, str] = {}
    for m in members:
        own = [x for x in lines[m] if x.at <= step.settled_at + 0.5]
        last = max((i for i, x in enumerate(own) if x.message.startswith("assigned ")), default=-1)
        if last < 0:
            continue
        for x in own[last + 1 :]:
            match = RESTORED.match(x.message)
            if match is None:
                continue
            partition = int(match.group(2))
            owner[partition] = m
            step.restores.append(
                {
                    "instance": m,
                    "partition": partition,
                    "records": int(match.group(3)),
                    "from_offset": int(match.group(4)),
                    "seconds": float(match.group(5)),
                    "how": match.group(6),
                    "moved": previous_owner.get(partition) != m,
                }
            )
    step.restores.sort(key=lambda r: r["partition"])
    step.stall_s = longest_stall(sampler, list(procs), step.triggered_at, step.resumed_at)
    for m in procs:
        before = [s for s in sampler.samples(m, 0) if s.at < step.triggered_at]
        after = [s for s in sampler.samples(m, 0) if s.at <= step.resumed_at]
        if after:
            first = before[-1] if before else None
            step.callbacks += int(after[-1].rebalances - (first.rebalances if first else 0))
            step.restored_metric += int(after[-1].restored - (first.restored if first else 0))
    return owner


def longest_stall(sampler: Sampler, instances: list[str], start: float, end: float) -> float:
    """The longest stretch in [start, end] in which no instance committed any input."""
    progress: list[float] = []
    for m in instances:
        samples = sampler.samples(m, start - 1)
        progress += [b.at for a, b in itertools.pairwise(samples) if b.records_in > a.records_in]
    marks = [start, *sorted(t for t in progress if start <= t <= end), end]
    return max(b - a for a, b in itertools.pairwise(marks))
