"""A producer fenced by another with the same transactional.id (a second process started
with the same --instance-id) stops the instance with one line saying why; its open
transaction never becomes visible, and a restart completes the output exactly once."""

from __future__ import annotations

import time
from pathlib import Path

import pytest
from confluent_kafka import Producer

from streamline.kafka.connection import Connection
from tests.helpers import read_all
from tests.integration.test_dlq import PAID_ORDER
from tests.support.harness import (
    InputFeeder,
    StreamlineProcess,
    await_started,
    duplicates,
    expectation,
    make_topology,
    order_stream,
    process_env,
)

pytestmark = pytest.mark.slow


def test_a_fenced_producer_stops_the_instance_with_one_line_and_a_restart_is_exact(
    kafka: Connection, unique: str, tmp_path: Path
) -> None:
    path, source, sink, _dlq = make_topology(tmp_path, kafka, unique)
    stream = order_stream(6000)
    expected = expectation(stream)
    feeder = InputFeeder(kafka, source, stream, rate=500)  # still feeding when fenced
    feeder.start()
    proc = StreamlineProcess(path, "a", process_env(kafka), tmp_path).start()
    assert proc.proc is not None
    try:
        await_started(proc)
        deadline = time.monotonic() + 30
        while not read_all(kafka, sink, timeout=1) and time.monotonic() < deadline:
            time.sleep(0.2)
        # another process with the same transactional.id (the same instance id) takes over
        tid = f"crash-{unique}-a"
        usurper = Producer(kafka.config(**{"transactional.id": tid}))
        usurper.init_transactions(30)
        code = proc.proc.wait(60)
        log = proc.current_log()
        assert code == 1, log[-3000:]
        last = log.strip().splitlines()[-1]
        assert last.startswith(
            f"error: producer fenced: another process took over transactional.id {tid} ("
        ), log[-3000:]
        assert last.endswith(
            "); this instance stopped without committing its open transaction. Each running "
            "instance needs its own --instance-id"
        ), log[-3000:]
        assert "Traceback" not in log and "re-creating the producer" not in log, log[-3000:]
        del usurper  # gone: the instance takes its transactional id back on restart
        proc.start()
        feeder.join(120)
        assert feeder.error is None
        deadline = time.monotonic() + 120
        while (
            len(read_all(kafka, sink, timeout=2)) < len(expected.outputs)
            and time.monotonic() < deadline
        ):
            time.sleep(0.5)
    finally:
        if proc.proc.poll() is None:
            assert proc.stop() == 0, proc.log()[-3000:]
    outputs = [PAID_ORDER.decode(m.value()) for m in read_all(kafka, sink, timeout=30)]
    assert duplicates([o["order_id"] for o in outputs]) == []
    assert {o["order_id"]: o for o in outputs} == expected.outputs
