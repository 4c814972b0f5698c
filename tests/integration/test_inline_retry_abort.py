"""What in-line retries against a dependency that is down do to the open transaction.

A map whose calls time out, retried in line, can keep a batch busy for longer than the
producer's `transaction.timeout.ms`. The broker's clock for a transaction starts at its
first write, and a batch writes only after its calls, so a batch alone never times out;
a batch of hanging calls that joins a transaction an earlier batch already wrote to
(within `commit_interval`) does. This test measures what follows with a plain map (no
`timeout`, no circuit): the broker fences the producer while /healthz says 200, since
every call that times out counts as progress.
"""

from __future__ import annotations

import logging
import os
import re
import threading
import time
import urllib.error
import urllib.request
from collections.abc import Callable
from pathlib import Path

import pytest
from confluent_kafka import Producer

from streamline.kafka.admin import create_topics
from streamline.kafka.connection import Connection
from streamline.runtime.processor import RunOptions
from streamline.runtime.runner import run_topology
from streamline.serde import AvroCodec, SchemaStore
from streamline.topology import check_topology, load_topology
from tests.helpers import read_all
from tests.support.dependency import Dependency
from tests.support.harness import SCHEMAS

pytestmark = [
    pytest.mark.kafka,
    pytest.mark.slow,
    pytest.mark.skipif(
        os.environ.get("STREAMLINE_ACCEPTANCE_SCALE") != "full",
        reason="~45 s, most of it the broker's 10 s check of timed-out transactions: "
        "runs with STREAMLINE_ACCEPTANCE_SCALE=full",
    ),
]

TOPOLOGY = """\
apiVersion: streamline/v1
name: abortloop-{unique}
version: "1"
sources:
  - {{name: orders, topic: orders-{unique}, schema: com.example.Order, event_time: created_at,
     watermark: {{max_out_of_orderness: 1s}}}}
stages:
  - map: tests.support.maps:enrich_sync
sink: {{topic: enriched-{unique}, schema: com.example.PaidOrder}}
commit_interval: 1s
retry:
  attempts: 3
  backoff: {{initial: 100ms, multiplier: 2.0, max: 200ms, jitter: false}}
"""


def _healthz(port: int) -> int:
    try:
        with urllib.request.urlopen(f"http://127.0.0.1:{port}/healthz", timeout=5) as response:
            return int(response.status)
    except urllib.error.HTTPError as exc:
        return int(exc.code)
    except OSError:
        return 0


def _metric(port: int, name: str) -> float:
    with urllib.request.urlopen(f"http://127.0.0.1:{port}/metrics", timeout=5) as response:
        text = response.read().decode()
    return sum(
        float(line.rsplit(" ", 1)[1])
        for line in text.splitlines()
        if line.startswith(name + "{") or line.startswith(name + " ")
    )


def test_inline_retries_past_the_transaction_timeout_abort_the_transaction_while_healthz_says_200(
    kafka: Connection,
    unique: str,
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
    caplog: pytest.LogCaptureFixture,
) -> None:
    path = tmp_path / "abortloop.yaml"
    path.write_text(TOPOLOGY.format(unique=unique))
    source, sink = f"orders-{unique}", f"enriched-{unique}"
    topology = load_topology(path)
    dlq = topology.dead_letter_topic
    create_topics(kafka, {t: (1, {}) for t in (source, sink, dlq)})
    create_topics(kafka, {"streamline.lineage": (3, {}), "streamline.heartbeats": (1, {})})
    store = SchemaStore(SCHEMAS)
    codec = AvroCodec(store, store.get("com.example.Order"))
    producer = Producer(kafka.config())

    def produce(order_ids: list[str]) -> None:
        for i, order_id in enumerate(order_ids):
            order = {
                "order_id": order_id, "customer_id": f"c-{i}", "amount": 10.0, "currency": "EUR",
                "status": "PAID", "country": "DE", "created_at": 1_767_225_600_000 + i,
            }  # fmt: skip
            producer.produce(source, key=order["customer_id"].encode(), value=codec.encode(order))
        assert producer.flush(30) == 0

    hanging = [f"hang-{i}" for i in range(SLOW)]
    with Dependency(hang_prefix="hang-") as dependency:
        monkeypatch.setenv("STREAMLINE_TEST_DEPENDENCY", dependency.url)
        monkeypatch.setenv("STREAMLINE_TEST_DEPENDENCY_TIMEOUT", "1")
        caplog.set_level(logging.INFO, logger="streamline.runtime")  # the `running` line
        stop = threading.Event()
        options = RunOptions(
            instance_id="abortloop", transaction_timeout_ms=3000, state_dir=tmp_path / "state"
        )
        worker = threading.Thread(
            target=run_topology,
            kwargs={
                "checked": check_topology(topology, store),
                "store": store,
                "connection": kafka,
                "options": options,
                "metrics_port": 0,  # the run binds a free port and names it
                "stop": stop,
            },
        )
        worker.start()
        try:
            port = served_port(caplog)
            await_port(port)
            time.sleep(3)  # assigned
            # a fast record opens a transaction and writes its output; the hanging records
            # arrive within the commit interval and join that transaction, which the broker
            # times out while their in-line retries run
            produce(["fast-0"])
            await_condition(lambda: any(c.finished for c in dependency.calls), 30)
            produce(hanging)
            # /healthz while the hanging batch runs, up to the broker's fencing of the producer
            before_fence: list[int] = []
            deadline = time.monotonic() + 60
            while "fenced" not in caplog.text and time.monotonic() < deadline:
                before_fence.append(_healthz(port))
                time.sleep(0.25)
            fenced_after = len(before_fence) * 0.25
            # what follows the fencing: the run goes on (a rewind) or the loop ends
            after: list[int] = []
            until = time.monotonic() + 8
            while time.monotonic() < until:
                after.append(_healthz(port))
                time.sleep(0.5)
            outputs = read_all(kafka, sink, timeout=2)
            dead = read_all(kafka, dlq, timeout=2)
            calls = [c.order_id for c in dependency.calls]
            loop_alive = worker.is_alive()
        finally:
            stop.set()
            worker.join(60)

    print(
        f"fenced after ~{fenced_after:.1f} s of hanging calls; /healthz before: {set(before_fence)}, "
        f"after: {after}; loop alive after: {loop_alive}; calls {len(calls)}, "
        f"outputs {len(outputs)}, dead letters {len(dead)}"
    )
    # the broker timed the transaction out while the in-line retries ran: the producer was fenced
    assert "fenced" in caplog.text, f"calls: {calls}"
    # and liveness did not notice: /healthz answered 200 through the whole hanging batch
    assert before_fence and set(before_fence) == {200}
    # the output of the fast record, written before the hanging calls, went with the
    # transaction. No abort loop follows: the rewind after the fenced producer fails
    # ("Failed to get committed offsets"), nothing runs again and /healthz turns 503,
    # so the process is restarted and the batch runs again from the committed offsets
    assert len(calls) == 1 + SLOW * 3
    assert after[-1] == 503
    assert outputs == [] and dead == []


SLOW = (
    4  # 4 records x (3 attempts x 1 s + 0.3 s backoff) = ~13 s: past 3 s + the broker's 10 s check
)


def served_port(caplog: pytest.LogCaptureFixture, timeout: float = 30) -> int:
    """The port the run's `running` line names (`metrics_port=0` lets it bind a free one)."""
    found: list[int] = []

    def running() -> bool:
        for record in caplog.records:
            match = re.search(r"metrics on http://\S+:(\d+)/metrics", record.getMessage())
            if match:
                found.append(int(match.group(1)))
        return bool(found)

    await_condition(running, timeout)
    return found[0]


def await_port(port: int, timeout: float = 30) -> None:
    await_condition(lambda: _healthz(port) != 0, timeout)


def await_condition(condition: Callable[[], bool], timeout: float) -> None:
    deadline = time.monotonic() + timeout
    while not condition():
        assert time.monotonic() < deadline, "timed out"
        time.sleep(0.05)
