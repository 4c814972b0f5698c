"""The webhook sink's sender against a real local HTTP server (no Kafka): batches, keys,
retries, and dead letters with the status and the start of the body."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest
from pydantic import ValidationError

from streamline.observability.metrics import Metrics
from streamline.reliability.dead_letter import Failure
from streamline.runtime.record import Record
from streamline.runtime.sinks.webhook import WebhookSender
from streamline.serde import SchemaStore
from streamline.topology.errors import problems_from_validation_error
from streamline.topology.model import Topology, WebhookSpec
from tests.support.webhook_receiver import Receiver

PROJECT = Path(__file__).resolve().parents[2]


def sender(url: str, **spec: Any) -> WebhookSender:
    settings = WebhookSpec.model_validate(
        {"url": url, "batch": 3, "headers": {"x-token": "t"}, **spec}
    )
    schema = SchemaStore(PROJECT / "schemas").get("com.example.Order")
    return WebhookSender("notify", settings, schema, sleep=lambda s: None)


def records(n: int) -> list[Record]:
    out = []
    for i in range(n):
        record = Record("orders", 1, 100 + i, None, b"raw", None)
        record.value = {
            "order_id": f"o-{i}", "customer_id": "c", "amount": 1.0, "currency": "EUR",
            "status": "PAID", "country": "DE", "created_at": 1, "extra": "left out",
        }  # fmt: skip
        out.append(record)
    return out


def test_batches_carry_idempotency_keys_and_headers() -> None:
    receiver = Receiver()
    try:
        failures: list[tuple[Record, Failure]] = []
        assert sender(receiver.url).add(records(7), lambda r, f: failures.append((r, f))) == 7
    finally:
        receiver.close()
    assert failures == []
    assert receiver.requests == 3  # batches of 3, 3, 1
    assert [k for k, _ in receiver.received] == [f"orders-1-{100 + i}" for i in range(7)]
    assert "extra" not in receiver.received[0][1] and receiver.received[0][1]["order_id"] == "o-0"
    assert receiver.headers[0]["x-token"] == "t"


def test_a_refused_batch_becomes_dead_letters_with_status_and_body() -> None:
    receiver = Receiver(refuse=400)
    try:
        failures: list[tuple[Record, Failure]] = []
        assert sender(receiver.url).add(records(2), lambda r, f: failures.append((r, f))) == 0
    finally:
        receiver.close()
    assert receiver.requests == 1  # a 400 is not retried
    assert len(failures) == 2
    failure = failures[0][1]
    assert failure.error_type == "sink" and failure.stage == "sinks.notify"
    assert failure.message.startswith("HTTP 400: bad record: amount must be positive")
    assert len(failure.message) == len("HTTP 400: ") + 200


def test_unavailable_receivers_are_retried_then_dead_lettered() -> None:
    receiver = Receiver(refuse=503)
    try:
        failures: list[tuple[Record, Failure]] = []
        send = sender(receiver.url, retry={"attempts": 4})
        assert send.add(records(1), lambda r, f: failures.append((r, f))) == 0
    finally:
        receiver.close()
    assert receiver.requests == 4 and send.retries == 3
    assert failures[0][1].message.startswith("HTTP 503: ")


def test_a_refused_connection_is_retried(tmp_path: Path) -> None:
    receiver = Receiver()
    receiver.close()  # nobody listens
    failures: list[tuple[Record, Failure]] = []
    send = sender(receiver.url, retry={"attempts": 2})
    assert send.add(records(1), lambda r, f: failures.append((r, f))) == 0
    assert send.posts == 2 and "ConnectError" in failures[0][1].message


def test_a_down_endpoint_opens_the_circuit_and_batches_become_dead_letters_at_once() -> None:
    receiver = Receiver(refuse=503)
    now = [0.0]
    settings = WebhookSpec.model_validate(
        {
            "url": receiver.url,
            "batch": 3,
            "retry": {"attempts": 5},
            "circuit": {"failure_rate": "50%", "min_calls": 2, "open_for": "10s", "probes": 1},
        }
    )
    schema = SchemaStore(PROJECT / "schemas").get("com.example.Order")
    send = WebhookSender("notify", settings, schema, sleep=lambda s: None, clock=lambda: now[0])
    metrics = Metrics("t")
    try:
        failures: list[tuple[Record, Failure]] = []
        assert send.add(records(12), lambda r, f: failures.append((r, f))) == 0
        send.report(metrics)
        # two failed POSTs open it: no third retry, and no POST for the other 3 batches
        assert receiver.requests == 2
        assert len(failures) == 12 and {f.stage for _, f in failures} == {"sinks.notify"}
        opened = f"circuit open: {receiver.url} mostly fails; POSTs resume in 10.0 s"
        last = "HTTP 503: bad record: amount must be positive " + "x" * 500
        assert failures[0][1].message == f"{opened}; last: {last}"[:200]
        assert failures[3][1].message == opened
        assert metrics.value("streamline_circuit_state", stage="sinks.notify") == 2
        # the endpoint is back: after open_for one probe POST closes the circuit
        receiver.refuse = None
        now[0] = 10.0
        assert send.add(records(4), lambda r, f: failures.append((r, f))) == 4
        send.report(metrics)
    finally:
        receiver.close()
    assert receiver.requests == 4 and len(failures) == 12
    assert [k for k, _ in receiver.received] == [f"orders-1-{100 + i}" for i in range(4)]
    assert metrics.value("streamline_circuit_state", stage="sinks.notify") == 0
    assert (
        metrics.value("streamline_circuit_transitions_total", stage="sinks.notify", to="open") == 1
    )


def test_a_refusal_of_the_records_does_not_open_the_circuit() -> None:
    receiver = Receiver(refuse=400)
    settings = WebhookSpec.model_validate(
        {"url": receiver.url, "batch": 1, "circuit": {"min_calls": 2}}
    )
    schema = SchemaStore(PROJECT / "schemas").get("com.example.Order")
    send = WebhookSender("notify", settings, schema, sleep=lambda s: None)
    try:
        failures: list[tuple[Record, Failure]] = []
        send.add(records(5), lambda r, f: failures.append((r, f)))
    finally:
        receiver.close()
    assert receiver.requests == 5  # the endpoint answers: every batch is POSTed
    assert all(f.message.startswith("HTTP 400: ") for _, f in failures)


def test_webhook_settings_are_checked() -> None:
    with pytest.raises(ValidationError) as info:
        Topology.model_validate(
            {
                "name": "h", "version": "1",
                "sources": [{"name": "o", "topic": "o", "schema": "com.example.Order",
                             "event_time": "created_at",
                             "watermark": {"max_out_of_orderness": "1s"}}],
                "sinks": {"notify": {"schema": "com.example.Order",
                                     "webhook": {"url": "ftp://x", "batch": 0}}},
            }
        )  # fmt: skip
    problems = {(p.path, p.message) for p in problems_from_validation_error(info.value)}
    assert {path for path, _ in problems} == {
        "sinks.notify.webhook.url",
        "sinks.notify.webhook.batch",
    }
