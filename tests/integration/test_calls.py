"""Concurrent maps against a real HTTP dependency (starlette + uvicorn), end to end.

Throughput against the same map run one call at a time, per-key order of the calls and
of the outputs against the input, and SIGKILLs with calls in flight.
"""

from __future__ import annotations

import json
import os
import random
import time
import urllib.error
import urllib.request
from pathlib import Path
from typing import Any

import pytest
from confluent_kafka import Producer

from streamline.kafka.admin import create_topics
from streamline.kafka.connection import Connection
from streamline.ops.topics import topology_topics
from streamline.serde import AvroCodec, SchemaStore
from streamline.topology import load_topology
from tests.helpers import read_all
from tests.support.dependency import Dependency, tier_of
from tests.support.harness import (
    SCHEMAS,
    InputFeeder,
    StreamlineProcess,
    await_started,
    process_env,
)

pytestmark = pytest.mark.kafka

FULL = os.environ.get("STREAMLINE_ACCEPTANCE_SCALE") == "full"
STORE = SchemaStore(SCHEMAS)
ORDER = AvroCodec(STORE, STORE.get("com.example.Order"))
PAID = AvroCodec(STORE, STORE.get("com.example.PaidOrder"))

TOPOLOGY = """\
apiVersion: streamline/v1
name: {name}
version: "1"
sources:
  - {{name: orders, topic: {source}, schema: com.example.Order, event_time: created_at,
     watermark: {{max_out_of_orderness: 1s}}}}
stages:
  - map: {map}
sink: {{topic: {sink}, schema: com.example.PaidOrder}}
commit_interval: 200ms
retry:
  attempts: 3
  backoff: {{initial: 10ms, multiplier: 2.0, max: 50ms, jitter: false}}
"""


def orders(n: int, keys: int, start: int = 0) -> list[dict[str, Any]]:
    rng = random.Random(start + n)
    return [
        {
            "order_id": f"o-{i}",
            "customer_id": f"c-{rng.randrange(keys)}",
            "amount": float(1 + i % 50),
            "currency": "EUR",
            "status": "PAID",
            "country": rng.choice(["DE", "FR", "NL"]),
            "created_at": 1_767_225_600_000 + i,
        }
        for i in range(start, start + n)
    ]


def oracle(order: dict[str, Any]) -> dict[str, Any]:
    """The enriched order, computed without the runtime."""
    return {
        "order_id": order["order_id"],
        "customer_id": order["customer_id"],
        "amount_eur": order["amount"],
        "country": f"{order['country']}/{tier_of(order['order_id'])}",
        "created_at": order["created_at"],
    }


def produce(kafka: Connection, topic: str, batch: list[dict[str, Any]]) -> None:
    producer = Producer(kafka.config(**{"linger.ms": 5}))
    for order in batch:
        producer.produce(topic, key=order["customer_id"].encode(), value=ORDER.encode(order))
    assert producer.flush(30) == 0


def setup(
    tmp_path: Path, kafka: Connection, unique: str, map_setting: str, partitions: int = 3
) -> tuple[Path, str, str]:
    name, source, sink = f"calls-{unique}", f"orders-{unique}", f"enriched-{unique}"
    path = tmp_path / f"{name}.yaml"
    path.write_text(TOPOLOGY.format(name=name, source=source, sink=sink, map=map_setting))
    create_topics(kafka, {t: (partitions, {}) for t in (source, sink, f"{name}.dlq")})
    create_topics(kafka, {"streamline.lineage": (3, {}), "streamline.heartbeats": (1, {})})
    return path, source, sink


def env(kafka: Connection, dependency: Dependency) -> dict[str, str]:
    return {**process_env(kafka), "STREAMLINE_TEST_DEPENDENCY": dependency.url}


def await_calls(dependency: Dependency, n: int, timeout: float) -> None:
    deadline = time.monotonic() + timeout
    while sum(1 for c in dependency.calls if c.finished) < n:
        assert time.monotonic() < deadline, f"{len(dependency.calls)} calls of {n}"
        time.sleep(0.05)


def call_rate(dependency: Dependency) -> float:
    """Completed calls per second, first call started to last call finished."""
    calls = [c for c in dependency.calls if c.finished]
    return len(calls) / (max(c.finished for c in calls) - min(c.started for c in calls))


def assert_per_key_order(
    input_orders: list[dict[str, Any]], order_ids: list[str], what: str
) -> None:
    """Each key's order ids appear in `order_ids` in input order (first occurrence each)."""
    key_of = {o["order_id"]: o["customer_id"] for o in input_orders}
    seen: dict[str, list[str]] = {}
    done: set[str] = set()
    for order_id in order_ids:
        if order_id not in done:
            done.add(order_id)
            seen.setdefault(key_of[order_id], []).append(order_id)
    expected: dict[str, list[str]] = {}
    for order in input_orders:
        expected.setdefault(order["customer_id"], []).append(order["order_id"])
    assert seen == expected, f"{what} out of per-key order"


def test_concurrent_async_calls_beat_one_at_a_time_30x_in_per_key_order(
    kafka: Connection, unique: str, tmp_path: Path
) -> None:
    sequential_n, concurrent_n = (200, 20_000) if FULL else (60, 3000)
    with Dependency(latency=0.02) as dependency:
        path, source, sink = setup(
            tmp_path, kafka, unique + "s", "tests.support.maps:enrich_async", partitions=1
        )
        proc = StreamlineProcess(path, "seq", env(kafka, dependency), tmp_path).start()
        try:
            await_started(proc)
            produce(kafka, source, orders(sequential_n, keys=50))
            await_calls(dependency, sequential_n, 60)
        finally:
            proc.kill()
        sequential = call_rate(dependency)

    with Dependency(latency=0.02) as dependency:
        path, source, sink = setup(
            tmp_path,
            kafka,
            unique,
            '{fn: "tests.support.maps:enrich_async", concurrency: 64}',
            partitions=1,
        )
        batch = orders(concurrent_n, keys=500)
        proc = StreamlineProcess(path, "conc", env(kafka, dependency), tmp_path).start()
        try:
            await_started(proc)
            produce(kafka, source, batch)
            await_calls(dependency, concurrent_n, 120)
            outputs = read_all(kafka, sink, timeout=60, expected=concurrent_n)
        finally:
            proc.kill()
        concurrent = call_rate(dependency)
        calls = [c.order_id for c in dependency.calls]

    print(f"sequential {sequential:.0f} calls/s, concurrency 64 {concurrent:.0f} calls/s")
    # 30x holds on a quiet machine (STREAMLINE_ACCEPTANCE_SCALE=full); the suite shares its
    # cores with everything else, so there it asks for a third of that
    assert concurrent >= (30 if FULL else 10) * sequential, (sequential, concurrent)
    values = [PAID.decode(m.value()) for m in outputs]
    assert sorted(v["order_id"] for v in values) == sorted(o["order_id"] for o in batch)
    assert {v["order_id"]: v for v in values} == {o["order_id"]: oracle(o) for o in batch}
    assert len(calls) == concurrent_n  # nothing failed, nothing called twice
    assert_per_key_order(batch, calls, "calls")
    assert_per_key_order(batch, [v["order_id"] for v in values], "outputs")


def test_a_slow_call_holds_back_only_its_own_partition_while_calls_go_on(
    kafka: Connection, unique: str, tmp_path: Path
) -> None:
    path, source, sink = setup(
        tmp_path,
        kafka,
        unique,
        '{fn: "tests.support.maps:enrich_async", concurrency: 16, timeout: 8s, '
        "retry: {attempts: 1}}",
        partitions=2,
    )
    first = orders(40, keys=20)
    first[0]["order_id"] = "slow-0"  # its call hangs until the 8 s timeout
    second = orders(40, keys=20, start=40)
    for order in second:  # keys of its own: no call here waits for the slow one's key
        order["customer_id"] = "d" + order["customer_id"][1:]
    producer = Producer(kafka.config(**{"linger.ms": 5}))

    def produce_to(partition: int, batch: list[dict[str, Any]]) -> None:
        for order in batch:
            key = order["customer_id"].encode()
            producer.produce(source, key=key, value=ORDER.encode(order), partition=partition)
        assert producer.flush(30) == 0

    with Dependency(latency=0.01, hang_prefix="slow-") as dependency:
        # the client waits longer than the stage's timeout: the stage's timeout ends the call
        slow_env = {**env(kafka, dependency), "STREAMLINE_TEST_DEPENDENCY_TIMEOUT": "30"}
        proc = StreamlineProcess(path, "slow", slow_env, tmp_path).start()
        try:
            await_started(proc)
            produce_to(0, first)
            deadline = time.monotonic() + 30
            while not any(c.order_id == "slow-0" for c in dependency.calls):
                assert time.monotonic() < deadline, "the slow call never started"
                time.sleep(0.01)
            produce_to(1, second)  # arrives while the slow call runs
            early = read_all(kafka, sink, timeout=6, expected=len(second))
            called_early = {c.order_id for c in dependency.calls}
            slow_started = next(c.started for c in dependency.calls if c.order_id == "slow-0")
            assert time.monotonic() - slow_started < 7.5  # read before the slow call ended
            late = read_all(kafka, sink, timeout=60, expected=len(first) - 1 + len(second))
            dead = read_all(kafka, f"calls-{unique}.dlq", timeout=10, expected=1)
        finally:
            proc.kill()

    committed_early = {PAID.decode(m.value())["order_id"] for m in early}
    # the other partition went on, its calls and its commits; the slow call's partition
    # waited behind it (its calls went on, its outputs waited)
    assert committed_early == {o["order_id"] for o in second}
    slow_key = first[0]["customer_id"]
    behind = {o["order_id"] for o in first[1:] if o["customer_id"] != slow_key}
    assert behind <= called_early
    values = [PAID.decode(m.value()) for m in late]
    assert {v["order_id"]: v for v in values} == {
        o["order_id"]: oracle(o) for o in first[1:] + second
    }
    assert len(values) == len(first) - 1 + len(second)
    assert [m.headers() and dict(m.headers()).get("streamline.error.type") for m in dead] == [
        b"map"
    ]


@pytest.mark.slow
def test_sigkill_with_64_calls_in_flight_three_times_still_gives_exact_output(
    kafka: Connection, unique: str, tmp_path: Path
) -> None:
    n = 20_000 if FULL else 3000
    with Dependency(latency=0.15) as dependency:
        path, source, sink = setup(
            tmp_path, kafka, unique, '{fn: "tests.support.maps:enrich_async", concurrency: 64}'
        )
        batch = orders(n, keys=400)
        proc = StreamlineProcess(path, "crash", env(kafka, dependency), tmp_path).start()
        produce(kafka, source, batch)
        kills = 0
        try:
            for _ in range(3):
                await_started(proc)
                deadline = time.monotonic() + 60
                while dependency.inflight < 64:
                    assert time.monotonic() < deadline, "never 64 calls in flight"
                    time.sleep(0.005)
                proc.kill()
                kills += 1
                proc.start()
            outputs = read_all(kafka, sink, timeout=120, expected=n)
        finally:
            proc.kill()
        calls = [c.order_id for c in dependency.calls]

    assert kills == 3
    values = [PAID.decode(m.value()) for m in outputs]
    assert len(values) == n  # no duplicates
    assert {v["order_id"]: v for v in values} == {o["order_id"]: oracle(o) for o in batch}
    # calls ran again after each kill (at-least-once side effects), outputs did not
    assert len(calls) > n
    assert_per_key_order(batch, [v["order_id"] for v in values], "outputs")


CIRCUIT_MAP = (
    '{fn: "tests.support.maps:enrich_async", concurrency: 16, timeout: 500ms, '
    "retry: {attempts: 2, backoff: {initial: 50ms, max: 100ms}}, "
    "circuit: {failure_rate: 50%, min_calls: 10, window: 5s, open_for: 2s}}"
)


def _get(port: int, path: str, accept: str = "") -> tuple[int, str]:
    request = urllib.request.Request(
        f"http://127.0.0.1:{port}{path}", headers={"Accept": accept} if accept else {}
    )
    try:
        with urllib.request.urlopen(request, timeout=5) as response:
            return int(response.status), response.read().decode()
    except urllib.error.HTTPError as exc:
        return int(exc.code), exc.read().decode()


def _metric(port: int, name: str) -> float:
    _, text = _get(port, "/metrics")
    return sum(
        float(line.rsplit(" ", 1)[1])
        for line in text.splitlines()
        if line.startswith(name + "{") or line.startswith(name + " ")
    )


@pytest.mark.slow
def test_a_dependency_down_mid_stream_opens_the_circuit_and_loses_nothing(
    kafka: Connection, unique: str, tmp_path: Path
) -> None:
    outage_s = 30.0 if FULL else 8.0
    n, rate = (12_000, 300.0) if FULL else (3000, 200.0)
    name, source, sink = f"calls-{unique}", f"orders-{unique}", f"enriched-{unique}"
    path = tmp_path / f"{name}.yaml"
    path.write_text(
        TOPOLOGY.format(name=name, source=source, sink=sink, map=CIRCUIT_MAP).replace(
            "retry:\n  attempts: 3", "retry:\n  topic_attempts: 3\n  attempts: 3"
        )
    )
    create_topics(kafka, topology_topics(load_topology(path), 3))
    create_topics(kafka, {"streamline.lineage": (3, {}), "streamline.heartbeats": (1, {})})
    batch = orders(n, keys=300)
    stream = [(o["customer_id"].encode(), ORDER.encode(o)) for o in batch]
    with Dependency(latency=0.01) as dependency:
        proc = StreamlineProcess(path, "circuit", env(kafka, dependency), tmp_path).start()
        port = proc.metrics_port
        try:
            await_started(proc)
            feeder = InputFeeder(kafka, source, stream, rate=rate)
            feeder.start()
            await_calls(dependency, n // 4, 60)
            dependency.down = True
            down_at = time.monotonic()
            opened_after = None
            health: set[int] = set()
            while time.monotonic() - down_at < outage_s:
                health.add(_get(port, "/healthz")[0])
                status, body = _get(port, "/readyz", "application/json")
                if opened_after is None and json.loads(body)["circuits"] == {
                    "stages[0].map": "open"
                }:
                    opened_after = time.monotonic() - down_at
                    assert status == 200  # an open circuit is not a readiness failure
                time.sleep(0.1)
            dependency.down = False
            feeder.join(120)
            outputs = read_all(kafka, sink, timeout=120, expected=n)
            dead = read_all(kafka, f"{name}.dlq", timeout=2)
            aborts = _metric(port, "streamline_transaction_aborts_total")
            _, text = _get(port, "/metrics")
            opened = sum(
                float(line.rsplit(" ", 1)[1])
                for line in text.splitlines()
                if line.startswith("streamline_circuit_transitions_total{") and 'to="open"' in line
            )
        finally:
            proc.kill()

    print(f"circuit open {opened_after} s after the outage began; {opened:.0f} openings")
    # the failure rate is over `window` (5 s): the successes before the outage leave it
    # within the window, plus the 500 ms call timeout and the probe's polling
    assert opened_after is not None and opened_after <= 5.0 + 0.5 + 1.0
    assert health == {200}
    values = [PAID.decode(m.value()) for m in outputs]
    assert len(values) == n
    assert {v["order_id"]: v for v in values} == {o["order_id"]: oracle(o) for o in batch}
    assert dead == []
    assert aborts == 0


def test_a_rate_limit_holds_the_call_rate_within_10_percent_over_10_s(
    kafka: Connection, unique: str, tmp_path: Path
) -> None:
    per_second = 50
    path, source, _sink = setup(
        tmp_path,
        kafka,
        unique,
        '{fn: "tests.support.maps:enrich_async", concurrency: 16, '
        f"rate_limit: {{per_second: {per_second}, burst: 5}}}}",
    )
    batch = orders(1200, keys=300)
    with Dependency(latency=0.01) as dependency:
        proc = StreamlineProcess(path, "rate", env(kafka, dependency), tmp_path).start()
        try:
            await_started(proc)
            produce(kafka, source, batch)  # a backlog: the limit is all that holds the calls
            await_calls(dependency, 50, 60)
            begin = time.monotonic()
            time.sleep(10)
            end = time.monotonic()
            calls = [c.started for c in dependency.calls if begin <= c.started < end]
        finally:
            proc.kill()
    rate = len(calls) / (end - begin)
    print(f"rate limit {per_second}/s: measured {rate:.1f} calls/s over 10 s")
    assert abs(rate - per_second) <= 0.1 * per_second
