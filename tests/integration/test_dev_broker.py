"""The dev broker is real Apache Kafka: started once, found again, transactional."""

from __future__ import annotations

import uuid

from confluent_kafka import Producer

from streamline.dev.broker import free_port
from streamline.kafka.connection import Connection
from tests.helpers import read_all, run_cli


def test_start_twice_gives_one_broker_and_stop_stops_it(tmp_path) -> None:  # type: ignore[no-untyped-def]
    data_dir = str(tmp_path / "broker")
    port = free_port()
    first = run_cli("dev-broker", "start", "--port", str(port), "--data-dir", data_dir)
    assert first.returncode == 0, first.stderr
    assert first.stdout.strip() == f"127.0.0.1:{port}"
    try:
        second = run_cli("dev-broker", "start", "--data-dir", data_dir, timeout=20)
        assert second.returncode == 0, second.stderr
        assert second.stdout.strip() == f"127.0.0.1:{port}"
        assert "already running" in second.stderr
        status = run_cli("dev-broker", "status", "--data-dir", data_dir)
        assert status.returncode == 0
        assert f"127.0.0.1:{port}" in status.stdout
    finally:
        stopped = run_cli("dev-broker", "stop", "--data-dir", data_dir, timeout=60)
    assert stopped.stdout.strip() == "dev broker stopped"
    after = run_cli("dev-broker", "status", "--data-dir", data_dir)
    assert after.returncode == 1
    assert "no dev broker running" in after.stdout


def test_read_committed_sees_only_committed_transactions(kafka: Connection, make_topic) -> None:  # type: ignore[no-untyped-def]
    topic = make_topic("txn")
    producer = Producer(
        kafka.config(**{"transactional.id": f"test-{uuid.uuid4().hex}"}, log_level=0)
    )
    producer.init_transactions(30)
    producer.begin_transaction()
    producer.produce(topic, value=b"aborted-1")
    producer.produce(topic, value=b"aborted-2")
    producer.flush(10)
    producer.abort_transaction(30)
    producer.begin_transaction()
    producer.produce(topic, value=b"committed-1")
    producer.commit_transaction(30)

    committed = read_all(kafka, topic, "read_committed")
    assert [m.value() for m in committed] == [b"committed-1"]
    uncommitted = read_all(kafka, topic, "read_uncommitted")
    assert [m.value() for m in uncommitted] == [b"aborted-1", b"aborted-2", b"committed-1"]
