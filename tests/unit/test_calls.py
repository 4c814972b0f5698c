"""Concurrent maps: bounded calls in flight, per-key order, outputs in input order, retries."""

from __future__ import annotations

import asyncio
import random
import threading
import time
from pathlib import Path
from typing import Any

import pytest

from streamline.observability.metrics import Metrics
from streamline.reliability.dead_letter import Failure
from streamline.reliability.retry import RetryPolicy
from streamline.runtime.calls import ConcurrentMap, map_stage
from streamline.runtime.record import Record
from streamline.runtime.stages import Map
from streamline.topology.model import MapSpec

POLICY = RetryPolicy(attempts=3, initial_ms=1, multiplier=1.0, max_ms=1, jitter=False)


def batch(n: int, keys: int) -> list[Record]:
    records = []
    for i in range(n):
        record = Record("t", i % 2, i, f"k{i % keys}".encode(), b"", None)
        record.value = {"i": i, "key": f"k{i % keys}"}
        records.append(record)
    return records


def run(stage: Map, records: list[Record]) -> tuple[list[Record], list[Failure]]:
    failures: list[Failure] = []
    out = stage.process(records, lambda r, f: failures.append(f), lambda *a: None)
    return out, failures


def test_async_calls_run_concurrently_bounded_with_per_key_order_and_outputs_in_input_order() -> (
    None
):
    rng = random.Random(7)
    started: dict[str, list[int]] = {}
    live = peak = 0

    async def call(value: dict[str, Any]) -> dict[str, Any]:
        nonlocal live, peak
        started.setdefault(value["key"], []).append(value["i"])
        live += 1
        peak = max(peak, live)
        await asyncio.sleep(rng.uniform(0, 0.01))
        live -= 1
        return {**value, "done": True}

    records = batch(400, keys=37)
    stage = ConcurrentMap("stages[0].map", call, POLICY, concurrency=16)
    began = time.monotonic()
    out, failures = run(stage, records)
    assert time.monotonic() - began < 400 * 0.005 / 4  # far from one call at a time
    assert failures == []
    assert [r.value["i"] for r in out] == list(range(400))
    assert all(r.value["done"] for r in out)
    assert peak == 16
    for key, order in started.items():  # the oracle: each key's calls in offset order
        assert order == [r.value["i"] for r in records if r.value["key"] == key]


def test_threads_run_a_plain_function_concurrently_and_exhausted_calls_fail_in_place() -> None:
    lock = threading.Lock()
    attempts: dict[int, int] = {}
    live = peak = 0

    def call(value: dict[str, Any]) -> dict[str, Any] | None:
        nonlocal live, peak
        with lock:
            attempts[value["i"]] = attempts.get(value["i"], 0) + 1
            live += 1
            peak = max(peak, live)
        time.sleep(0.005)
        with lock:
            live -= 1
        if value["i"] % 10 == 3:
            raise RuntimeError(f"down for {value['i']}")
        if value["i"] % 10 == 4:
            return None
        return value

    retried = []
    stage = ConcurrentMap("stages[1].map", call, POLICY, concurrency=8, threads=8)
    stage.on_retry = lambda: retried.append(1)
    dropped: list[int] = []
    failures: list[tuple[int, Failure]] = []
    out = stage.process(
        batch(50, keys=50),
        lambda r, f: failures.append((r.value["i"], f)),
        lambda stage, reason, n: dropped.append(n),
    )
    assert [r.value["i"] for r in out] == [i for i in range(50) if i % 10 not in (3, 4)]
    assert [i for i, _ in failures] == [3, 13, 23, 33, 43]
    assert all(f.attempts == 3 and "down for" in f.message for _, f in failures)
    assert all(attempts[i] == 3 for i in (3, 13, 23, 33, 43))
    assert len(retried) == 5 * 2
    assert sum(dropped) == 5
    assert 1 < peak <= 8


def test_a_plain_map_without_settings_keeps_the_one_at_a_time_stage() -> None:
    def plain(value: dict[str, Any]) -> dict[str, Any]:
        return value

    async def coro(value: dict[str, Any]) -> dict[str, Any]:
        return value

    assert type(map_stage("m", plain, MapSpec(fn="m:f"), POLICY)) is Map
    assert isinstance(map_stage("m", coro, MapSpec(fn="m:f"), POLICY), ConcurrentMap)
    threaded = map_stage("m", plain, MapSpec(fn="m:f", threads=4), POLICY)
    assert isinstance(threaded, ConcurrentMap) and threaded.concurrency == 4


@pytest.mark.parametrize(
    ("settings", "fn", "message"),
    [
        ("concurrency: 8", "paid_order", "set threads: N"),
        ("threads: 4", "enrich_async", "is async def"),
    ],
)
def test_validate_refuses_settings_that_do_not_fit_the_function(
    settings: str, fn: str, message: str, tmp_path: Path
) -> None:
    from streamline.serde import SchemaStore
    from streamline.topology import check_topology, load_topology
    from tests.support.harness import SCHEMAS

    text = f"""\
apiVersion: streamline/v1
name: calls
version: "1"
sources:
  - {{name: o, topic: o, schema: com.example.Order, event_time: created_at,
     watermark: {{max_out_of_orderness: 1s}}}}
stages:
  - map: {{fn: "tests.support.maps:{fn}", {settings}}}
sink: {{topic: p, schema: com.example.PaidOrder}}
"""
    with pytest.raises(Exception) as info:
        path = tmp_path / "t.yaml"
        path.write_text(text)
        check_topology(load_topology(path), SchemaStore(SCHEMAS))
    assert message in str(info.value)
    assert "stages[0].map." in str(info.value)


def test_a_call_past_its_timeout_is_retried_then_fails_without_holding_the_others() -> None:
    async def call(value: dict[str, Any]) -> dict[str, Any]:
        if value["i"] == 0:
            await asyncio.sleep(10)  # a dependency that never answers
        return value

    stage = map_stage(
        "stages[0].map",
        call,
        MapSpec(fn="m:f", concurrency=4, timeout="50ms", retry={"attempts": 2}),  # type: ignore[arg-type]
        POLICY,
    )
    began = time.monotonic()
    out, failures = run(stage, batch(6, keys=6))
    took = time.monotonic() - began
    assert [r.value["i"] for r in out] == [1, 2, 3, 4, 5]
    assert len(failures) == 1 and failures[0].attempts == 2
    assert "longer than 50 ms" in failures[0].message
    assert took < 1.0  # 2 x 50 ms + one backoff (jittered, at most 100 ms), not 10 s
    metrics = Metrics("t")
    stage.report(metrics)
    assert metrics.value("streamline_retries_total", stage="stages[0].map") == 1


def test_a_plain_function_with_a_timeout_runs_in_a_thread_the_loop_stops_waiting_for() -> None:
    def call(value: dict[str, Any]) -> dict[str, Any]:
        if value["i"] == 1:
            time.sleep(0.5)
        return value

    stage = map_stage(
        "stages[0].map",
        call,
        MapSpec(fn="m:f", timeout="50ms", retry={"attempts": 1}),  # type: ignore[arg-type]
        POLICY,
    )
    assert isinstance(stage, ConcurrentMap)
    out, failures = run(stage, batch(3, keys=1))
    assert [r.value["i"] for r in out] == [0, 2]
    assert [f.attempts for f in failures] == [1]


def test_validate_refuses_a_retry_budget_that_does_not_fit_the_transaction_timeout(
    tmp_path: Path,
) -> None:
    from streamline.serde import SchemaStore
    from streamline.topology import check_topology, load_topology
    from tests.support.harness import SCHEMAS

    def check(settings: str) -> str:
        path = tmp_path / "t.yaml"
        path.write_text(TEXT.format(settings=settings))
        try:
            check_topology(load_topology(path), SchemaStore(SCHEMAS))
        except Exception as exc:
            return str(exc)
        return ""

    problem = check("concurrency: 8, timeout: 4s, retry: {attempts: 3, backoff: {max: 2s}}")
    assert "stages[0].map.timeout" in problem
    assert "3 attempts x (4000 ms timeout + 2000 ms longest backoff) = 18000 ms" in problem
    assert "transaction timeout (30000 ms)" in problem and "within 15000 ms" in problem
    # the topology's retry counts when the stage has none: 3 x (5 s + 5 s)
    assert "= 30000 ms" in check("concurrency: 8, timeout: 5s")
    assert check("concurrency: 8, timeout: 2s, retry: {attempts: 3, backoff: {max: 1s}}") == ""


TEXT = """\
apiVersion: streamline/v1
name: calls
version: "1"
sources:
  - {{name: o, topic: o, schema: com.example.Order, event_time: created_at,
     watermark: {{max_out_of_orderness: 1s}}}}
stages:
  - map: {{fn: "tests.support.maps:enrich_async", {settings}}}
sink: {{topic: p, schema: com.example.PaidOrder}}
"""


def test_a_rate_limit_spaces_the_calls_and_counts_the_wait() -> None:
    starts: list[float] = []

    async def call(value: dict[str, Any]) -> dict[str, Any]:
        starts.append(time.monotonic())
        return value

    spec = MapSpec(fn="m:f", concurrency=8, rate_limit={"per_second": 200, "burst": 2})  # type: ignore[arg-type]
    stage = map_stage("stages[0].map", call, spec, POLICY)
    out, _ = run(stage, batch(101, keys=101))
    assert len(out) == 101
    rate = 100 / (starts[-1] - starts[0])
    assert 160 <= rate <= 220, rate
    metrics = Metrics("t")
    stage.report(metrics)
    throttled = metrics.value("streamline_throttled_seconds_total", stage="stages[0].map")
    assert throttled is not None and throttled > 0.3  # 8 calls waiting ~0.5 s between them


@pytest.mark.parametrize(
    ("settings", "topology_retry", "where", "message"),
    [
        (
            "circuit: {on_open: pause}",
            "retry: {topic_attempts: 1}",
            "circuit.on_open",
            "not supported yet",
        ),
        ("circuit: {min_calls: 5}", "", "circuit", "set retry.topic_attempts to 1 or more"),
    ],
)
def test_validate_refuses_a_circuit_it_cannot_honour(
    settings: str, topology_retry: str, where: str, message: str, tmp_path: Path
) -> None:
    from streamline.serde import SchemaStore
    from streamline.topology import check_topology, load_topology
    from tests.support.harness import SCHEMAS

    path = tmp_path / "t.yaml"
    path.write_text(TEXT.format(settings=settings) + topology_retry + "\n")
    with pytest.raises(Exception) as info:
        check_topology(load_topology(path), SchemaStore(SCHEMAS))
    assert f"stages[0].map.{where}" in str(info.value) and message in str(info.value)


def test_the_enrich_http_example_enriches_through_a_real_server(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    from examples.enrich_http import enrich

    from tests.support.dependency import Dependency, tier_of

    with Dependency(latency=0.0) as dependency:
        monkeypatch.setenv("ENRICH_URL", dependency.url)
        stage = map_stage("stages[1].map", enrich, MapSpec(fn="m:f", concurrency=8), POLICY)
        records = []
        for i in range(20):
            record = Record("orders", 0, i, f"c-{i % 3}".encode(), b"", None)
            record.value = {
                "order_id": f"o-{i}", "customer_id": f"c-{i % 3}", "amount": 10.0,
                "currency": "EUR", "country": "DE", "created_at": i,
            }  # fmt: skip
            records.append(record)
        out, failures = run(stage, records)
        from examples.enrich_http import _sessions

        from streamline.runtime.calls import event_loop

        for session in _sessions.values():
            event_loop().run_until_complete(session.close())
        _sessions.clear()
    assert failures == []
    assert [r.value["country"] for r in out] == [f"DE/{tier_of(f'c-{i % 3}')}" for i in range(20)]
    assert [c.order_id for c in dependency.calls if c.order_id == "c-0"] == ["c-0"] * 7


def test_the_enrich_http_example_topology_validates() -> None:
    from streamline.serde import SchemaStore
    from streamline.topology import check_topology, load_topology
    from tests.support.harness import ROOT, SCHEMAS

    checked = check_topology(
        load_topology(ROOT / "examples" / "enrich-http.yaml"), SchemaStore(SCHEMAS)
    )
    assert checked.topology.stages[1].spec.concurrency == 64  # type: ignore[union-attr]


def test_a_plain_maps_in_line_retries_are_counted_with_its_stage_path() -> None:
    calls: dict[int, int] = {}

    def flaky(value: dict[str, Any]) -> dict[str, Any]:
        calls[value["i"]] = calls.get(value["i"], 0) + 1
        if calls[value["i"]] == 1:
            raise RuntimeError("first call fails")
        return value

    stage = Map("stages[2].map", flaky, POLICY)
    out, failures = run(stage, batch(4, keys=4))
    assert len(out) == 4 and failures == []
    metrics = Metrics("t")
    stage.report(metrics)
    stage.report(metrics)  # counted once
    assert metrics.value("streamline_retries_total", stage="stages[2].map") == 4
