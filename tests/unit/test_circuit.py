"""The circuit breaker's states, on a fake clock."""

from __future__ import annotations

from typing import Any

from streamline.observability.metrics import Metrics
from streamline.reliability.dead_letter import CIRCUIT_OPEN, Failure
from streamline.reliability.retry import RetryPolicy
from streamline.runtime.calls import ConcurrentMap, circuits
from streamline.runtime.circuit import CLOSED, HALF_OPEN, OPEN, CircuitBreaker
from streamline.runtime.record import Record
from streamline.topology.model import CircuitSpec


class Clock:
    def __init__(self) -> None:
        self.now = 0.0

    def __call__(self) -> float:
        return self.now


def test_opens_at_the_failure_rate_after_min_calls_then_probes_decide() -> None:
    clock = Clock()
    moves: list[str] = []
    breaker = CircuitBreaker(0.5, 4, 30, 10, probes=2, clock=clock, on_transition=moves.append)
    for ok in (True, False, True):  # 1 of 3 failed: below min_calls
        assert breaker.allow()
        breaker.record(ok)
    assert breaker.state == CLOSED
    breaker.allow()
    breaker.record(False)  # 2 of 4 failed: 50%
    assert breaker.state == OPEN and not breaker.allow()
    assert breaker.reopens_in_s() == 10
    clock.now = 10
    assert breaker.allow() and breaker.state == HALF_OPEN
    assert breaker.allow()
    assert not breaker.allow()  # both probes out
    breaker.record(True)
    breaker.record(False)  # one probe failed: open again for open_for
    assert breaker.state == OPEN and breaker.reopens_in_s() == 10
    clock.now = 20
    assert breaker.allow() and breaker.allow()
    breaker.record(True)
    breaker.record(True)
    assert breaker.state == CLOSED
    assert moves == [OPEN, HALF_OPEN, OPEN, HALF_OPEN, CLOSED]


def test_outcomes_older_than_the_window_do_not_count() -> None:
    clock = Clock()
    breaker = CircuitBreaker(0.5, 4, 30, 10, clock=clock)
    for _ in range(3):
        breaker.allow()
        breaker.record(False)
    clock.now = 31
    breaker.allow()
    breaker.record(False)  # the three old failures expired: 1 call in the window
    assert breaker.state == CLOSED


def test_an_open_circuit_makes_no_calls_and_sends_records_to_wait_with_the_reopen_time() -> None:
    calls = 0

    async def down(value: dict[str, Any]) -> dict[str, Any]:
        nonlocal calls
        calls += 1
        raise ConnectionError("refused")

    spec = CircuitSpec(min_calls=5, open_for="2s")  # type: ignore[arg-type]
    policy = RetryPolicy(attempts=1, initial_ms=1, max_ms=1, jitter=False)
    stage = ConcurrentMap("stages[0].map", down, policy, concurrency=1, circuit=spec)
    records = []
    for i in range(20):
        record = Record("t", 0, i, b"k", b"", None)
        record.value = {"i": i}
        records.append(record)
    failures: list[Failure] = []
    out = stage.process(records, lambda r, f: failures.append(f), lambda *a: None)
    assert out == [] and calls == 5  # the circuit opened after min_calls failures
    assert [f.error_type for f in failures] == ["map"] * 5 + [CIRCUIT_OPEN] * 15
    assert all(1500 <= f.retry_after_ms <= 2000 for f in failures[5:])
    assert circuits([stage]) == {"stages[0].map": OPEN}
    metrics = Metrics("t")
    stage.report(metrics)
    assert metrics.value("streamline_circuit_state", stage="stages[0].map") == 2
    assert (
        metrics.value("streamline_circuit_transitions_total", stage="stages[0].map", to=OPEN) == 1
    )
    assert metrics.value("streamline_call_seconds_count", stage="stages[0].map") == 5


def test_readyz_shows_the_circuits_as_json_when_asked_and_stays_text_otherwise() -> None:
    import json
    import urllib.request

    from streamline.observability.http import MetricsServer

    server = MetricsServer(
        Metrics("t"),
        port=0,
        ready=lambda: True,
        details=lambda: {"circuits": {"stages[1].map": OPEN}},
    )
    server.start()
    try:
        json_request = urllib.request.Request(
            f"{server.url}/readyz", headers={"Accept": "application/json"}
        )
        with urllib.request.urlopen(json_request, timeout=5) as response:
            assert response.status == 200
            assert response.headers["Content-Type"] == "application/json"
            assert json.loads(response.read()) == {
                "ready": True,
                "circuits": {"stages[1].map": "open"},
            }
        with urllib.request.urlopen(f"{server.url}/readyz?format=json", timeout=5) as response:
            assert json.loads(response.read())["circuits"] == {"stages[1].map": "open"}
        with urllib.request.urlopen(f"{server.url}/readyz", timeout=5) as response:
            assert response.read() == b"ready\n"
    finally:
        server.stop()
