"""Drives `streamline run` as real processes and computes what their output must be, independently."""

from __future__ import annotations

import os
import random
import re
import signal
import subprocess
import sys
import threading
import time
from collections import Counter
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from confluent_kafka import Producer

from streamline.kafka.admin import create_topics
from streamline.kafka.connection import Connection
from streamline.serde import AvroCodec, SchemaStore
from tests.helpers import ROOT

SCHEMAS = ROOT / "schemas"
SERVING = re.compile(r"metrics on http://\S+:(\d+)/metrics")
"""The `running` line's address: the port the process bound (`--metrics-port 0` picks one)."""
RATES = {"EUR": 1.0, "USD": 0.9}

TOPOLOGY = """\
apiVersion: streamline/v1
name: {name}
version: "1"
sources:
  - name: orders
    topic: {source}
    schema: com.example.Order
    event_time: created_at
    watermark:
      max_out_of_orderness: 5s
stages:
  - validate:
      rules:
        - name: amount_positive
          expr: "amount > 0.0"
        - name: known_currency
          expr: "currency in ['EUR', 'USD']"
  - filter: "status == 'PAID'"
  - map: tests.support.maps:to_eur_or_fail
sink:
  topic: {sink}
  schema: com.example.PaidOrder
guarantee: {guarantee}
commit_interval: 100ms
retry:
  attempts: 3
  backoff: {{initial: 1ms, multiplier: 1.0, max: 1ms, jitter: false}}
"""


@dataclass
class Expected:
    """What the topology must write: outputs by order id, dead letters by their original bytes."""

    outputs: dict[str, dict[str, Any]] = field(default_factory=dict)
    dead_letters: dict[bytes, tuple[str, str | None]] = field(default_factory=dict)
    filtered: int = 0
    produced: int = 0


def order_stream(
    n: int, seed: int = 1
) -> list[tuple[bytes, bytes, str, str | None, dict[str, Any] | None]]:
    """(key, value bytes, category, rule, record) for n orders with bad records mixed in."""
    store = SchemaStore(SCHEMAS)
    codec = AvroCodec(store, store.get("com.example.Order"))
    rng = random.Random(seed)
    out: list[tuple[bytes, bytes, str, str | None, dict[str, Any] | None]] = []
    for i in range(n):
        customer = f"c-{rng.randrange(200)}"
        record = {
            "order_id": f"o-{i}",
            "customer_id": customer,
            "amount": round(rng.uniform(1, 500), 2),
            "currency": "USD" if i % 3 == 0 else "EUR",
            "status": "PENDING" if i % 7 == 0 else "PAID",
            "country": rng.choice(["DE", "FR", "NL"]),
            "created_at": 1767225600000 + i * 10,
        }
        key = customer.encode()
        if i % 97 == 5:
            out.append((key, f"garbage-{i}".encode(), "decode", None, None))
        elif i % 101 == 7:
            body = codec.encode(record)[10:]
            out.append((key, b"\xc3\x01" + rng.randbytes(8) + body, "schema", None, None))
        elif i % 53 == 3:
            record["amount"] = -1.0
            out.append((key, codec.encode(record), "validation", "amount_positive", record))
        elif i % 89 == 4:
            record["currency"] = "GBP"
            out.append((key, codec.encode(record), "validation", "known_currency", record))
        elif i % 61 == 2 and record["status"] == "PAID":
            record["order_id"] += "-boom"
            out.append((key, codec.encode(record), "map", None, record))
        else:
            out.append((key, codec.encode(record), "ok", None, record))
    return out


def expectation(
    stream: list[tuple[bytes, bytes, str, str | None, dict[str, Any] | None]],
) -> Expected:
    expected = Expected(produced=len(stream))
    for _key, value, category, rule, record in stream:
        if category == "ok":
            assert record is not None
            if record["status"] != "PAID":
                expected.filtered += 1
                continue
            expected.outputs[record["order_id"]] = {
                "order_id": record["order_id"],
                "customer_id": record["customer_id"],
                "amount_eur": record["amount"] * RATES[record["currency"]],
                "country": record["country"],
                "created_at": record["created_at"],
            }
        else:
            expected.dead_letters[value] = (category, rule)
    return expected


class InputFeeder(threading.Thread):
    """Produces the stream to the source topic at a steady rate, recording where each record went."""

    def __init__(self, connection: Connection, topic: str, stream: list[Any], rate: float) -> None:
        super().__init__(daemon=True)
        self.connection = connection
        self.topic = topic
        self.stream = stream
        self.rate = rate
        self.positions: dict[bytes, tuple[int, int]] = {}
        self.error: str | None = None

    def run(self) -> None:
        producer = Producer(self.connection.config(**{"enable.idempotence": True, "linger.ms": 5}))

        def delivered(err: Any, msg: Any) -> None:
            if err is not None:
                self.error = str(err)
            else:
                self.positions[msg.value()] = (msg.partition(), msg.offset())

        started = time.monotonic()
        for i, (key, value, *_rest) in enumerate(self.stream):
            producer.produce(self.topic, key=key, value=value, on_delivery=delivered)
            if i % 500 == 0:
                producer.poll(0)
                ahead = i / self.rate - (time.monotonic() - started)
                if ahead > 0:
                    time.sleep(ahead)
        producer.flush(60)


class StreamlineProcess:
    """`streamline run TOPOLOGY` as a child process that tests can kill, freeze and stop."""

    def __init__(
        self,
        topology: Path,
        instance_id: str,
        env: dict[str, str],
        log_dir: Path,
        metrics_port: int = 0,
        state_dir: Path | None = None,
        extra_args: list[str] | None = None,
    ) -> None:
        """`metrics_port` 0 (the default) lets the process bind a free port itself and name
        it in its `running` line (`metrics_port` then reads it): a port picked free here
        could be taken by another process before the child binds it."""
        self.topology = topology
        self.extra_args = extra_args or []
        self.state_dir = state_dir or log_dir / "state" / instance_id
        self.instance_id = instance_id
        self.env = env
        self.log_path = log_dir / f"{instance_id}.log"
        self.requested_port = metrics_port
        self.proc: subprocess.Popen[bytes] | None = None
        self._log_start = 0

    def start(self) -> StreamlineProcess:
        self._log_start = self.log_path.stat().st_size if self.log_path.exists() else 0
        log = open(self.log_path, "ab")  # noqa: SIM115 - owned by the child for its lifetime
        self.proc = subprocess.Popen(
            [
                sys.executable,
                "-m",
                "streamline",
                "run",
                str(self.topology),
                "--instance-id",
                self.instance_id,
                "--metrics-port",
                str(self.requested_port),
                "--state-dir",
                str(self.state_dir),
                *self.extra_args,
            ],
            cwd=ROOT,
            env=self.env,
            stdout=log,
            stderr=subprocess.STDOUT,
        )
        return self

    def current_log(self) -> str:
        """What the latest start has written so far."""
        return self.log()[self._log_start :]

    def served_port(self) -> int | None:
        """The port the latest start serves metrics on, once it is running (else None)."""
        if not self.log_path.exists():
            return None
        match = SERVING.search(self.current_log())
        return int(match.group(1)) if match else None

    @property
    def metrics_port(self) -> int:
        """The port the latest start serves metrics on: waits for its `running` line."""
        deadline = time.monotonic() + 60
        while time.monotonic() < deadline:
            port = self.served_port()
            if port is not None:
                return port
            if self.proc is not None and self.proc.poll() is not None:
                break
            time.sleep(0.05)
        raise AssertionError(
            f"{self.instance_id} serves no metrics (exit {self.proc and self.proc.poll()}):\n"
            f"{self.current_log()[-3000:]}"
        )

    def kill(self) -> None:
        assert self.proc is not None
        self.proc.send_signal(signal.SIGKILL)
        self.proc.wait(10)

    def freeze(self) -> None:
        assert self.proc is not None
        self.proc.send_signal(signal.SIGSTOP)

    def thaw(self) -> None:
        assert self.proc is not None
        self.proc.send_signal(signal.SIGCONT)

    def stop(self, timeout: float = 60) -> int:
        """SIGTERM once the process runs (its handler is installed), then the clean exit's status."""
        assert self.proc is not None
        deadline = time.monotonic() + timeout
        while self.proc.poll() is None and time.monotonic() < deadline:
            if "running " in self.current_log():
                break
            time.sleep(0.1)
        if self.proc.poll() is None:
            self.proc.send_signal(signal.SIGTERM)
        return self.proc.wait(timeout)

    def log(self) -> str:
        return self.log_path.read_text(errors="replace")


def await_started(proc: StreamlineProcess, timeout: float = 60) -> None:
    """Waits until the most recent start of `proc` has partitions assigned (and restored)."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        log = proc.log()
        current = proc.current_log()  # an earlier run's lines must not count
        since = current[current.find("running ") :] if "running " in current else ""
        if "assigned" in since and ("restored windows" in since or "windows" not in log):
            return
        time.sleep(0.2)
    raise AssertionError(
        f"{proc.instance_id} did not start processing within {timeout}s:\n{proc.log()[-3000:]}"
    )


def crash_repeatedly(
    proc: StreamlineProcess, rng: random.Random, times: int = 3, before_restart: Any = None
) -> None:
    """SIGKILLs `proc` at a random moment after each start has begun processing, and restarts it."""
    for i in range(times):
        await_started(proc)
        time.sleep(rng.uniform(0.5, 2.5))
        proc.kill()
        if before_restart is not None:
            before_restart(i)
        proc.start()


def process_env(connection: Connection) -> dict[str, str]:
    env = dict(os.environ)
    env.update(
        {
            "STREAMLINE_BOOTSTRAP_SERVERS": connection.bootstrap_servers,
            "STREAMLINE_SCHEMAS": str(SCHEMAS),
            "STREAMLINE_KAFKA_SESSION_TIMEOUT_MS": "6000",
            "PYTHONUNBUFFERED": "1",
        }
    )
    return env


def make_topology(
    tmp: Path,
    connection: Connection,
    unique: str,
    guarantee: str = "exactly_once",
    partitions: int = 3,
) -> tuple[Path, str, str, str]:
    """Writes the test topology and creates its topics: (path, source, sink, dead-letter topic)."""
    name = f"crash-{unique}"
    source, sink = f"orders-{unique}", f"paid-{unique}"
    folder = tmp / "topologies"
    folder.mkdir(exist_ok=True)
    path = folder / f"{name}.yaml"
    path.write_text(TOPOLOGY.format(name=name, source=source, sink=sink, guarantee=guarantee))
    dlq = f"{name}.dlq"
    create_topics(connection, {t: (partitions, {}) for t in (source, sink, dlq)})
    create_topics(connection, {"streamline.lineage": (3, {}), "streamline.heartbeats": (1, {})})
    return path, source, sink, dlq


def duplicates(values: list[str]) -> list[str]:
    return [v for v, n in Counter(values).items() if n > 1]


ORDER_CODEC = AvroCodec(SchemaStore(SCHEMAS), SchemaStore(SCHEMAS).get("com.example.Order"))
"""Single-object Avro of com.example.Order."""


def produce_orders(connection: Connection, topic: str, n: int) -> list[dict[str, Any]]:
    """`n` valid PAID orders, a third each in DE, FR and NL, written to `topic` (keyed by id)."""
    orders = [
        {
            "order_id": f"o{i}", "customer_id": f"c{i % 3}", "amount": 10.0 + i,
            "currency": "EUR", "status": "PAID", "country": ("DE", "FR", "NL")[i % 3],
            "created_at": 1_700_000_000_000 + i,
        }
        for i in range(n)
    ]  # fmt: skip
    producer = Producer(connection.config())
    for order in orders:
        producer.produce(topic, key=order["order_id"].encode(), value=ORDER_CODEC.encode(order))
    assert producer.flush(30) == 0
    return orders
