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


def test_a_second_checkout_reuses_a_dev_broker_on_its_port_or_picks_a_free_one(
    tmp_path,  # type: ignore[no-untyped-def]
) -> None:
    import os
    import socket

    first_dir = tmp_path / "first" / "broker"
    with socket.socket() as squatter:  # the default port, held by something else
        squatter.bind(("127.0.0.1", 0))
        squatter.listen()
        taken = squatter.getsockname()[1]
        env = dict(os.environ, STREAMLINE_DEV_BROKER_PORT=str(taken))
        first = run_cli("dev-broker", "start", "--data-dir", str(first_dir), env=env)
    try:
        assert first.returncode == 0, first.stderr
        assert f"port {taken} is taken by another process; chose a free port" in first.stderr
        address = first.stdout.strip()
        port = int(address.rsplit(":", 1)[1])
        assert address.startswith("127.0.0.1:") and port != taken
        Producer({"bootstrap.servers": address}).list_topics(timeout=30)

        env["STREAMLINE_DEV_BROKER_PORT"] = str(port)  # a second checkout, same default port
        second_dir = tmp_path / "second" / "broker"
        second = run_cli("dev-broker", "start", "--data-dir", str(second_dir), env=env, timeout=30)
        assert second.returncode == 0, second.stderr
        assert second.stdout.strip() == address
        assert f"reusing the dev broker of {first_dir} on {address}" in second.stderr
        assert not (second_dir / "broker.json").exists()  # nothing of its own was started
        # commands of the second checkout find the reused broker without being told
        second_env = dict(env, STREAMLINE_HOME=str(second_dir.parent))
        second_env.pop("STREAMLINE_BOOTSTRAP_SERVERS", None)
        found = run_cli("consume", "none-such", "--max", "1", "--timeout", "1", env=second_env)
        assert "no Kafka broker configured" not in found.stderr, found.stderr
        chosen = run_cli(
            "dev-broker", "start", "--port", str(port), "--data-dir", str(second_dir), env=env
        )
        assert chosen.returncode == 1
        assert f"port {port} on 127.0.0.1 is taken by the streamline dev broker of {first_dir}" in (
            chosen.stderr
        )
        stop = run_cli("dev-broker", "stop", "--data-dir", str(second_dir), env=env)
        assert stop.stdout.strip() == "no dev broker running"  # the first one is not its own
    finally:
        stopped = run_cli("dev-broker", "stop", "--data-dir", str(first_dir), timeout=60)
    assert stopped.stdout.strip() == "dev broker stopped"
