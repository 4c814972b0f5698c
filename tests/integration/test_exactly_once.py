"""Exactly-once under crashes, rebalances and zombies: the read_committed output is exact."""

from __future__ import annotations

import random
import re
import time
from pathlib import Path
from typing import Any

import pytest

from streamline.kafka.connection import Connection
from streamline.serde import AvroCodec, SchemaStore
from tests.helpers import read_all
from tests.support.harness import (
    SCHEMAS,
    Expected,
    InputFeeder,
    StreamlineProcess,
    await_started,
    crash_repeatedly,
    duplicates,
    expectation,
    make_topology,
    order_stream,
    process_env,
)

pytestmark = pytest.mark.slow

N_RECORDS = 50_000
PAID_ORDER = AvroCodec(SchemaStore(SCHEMAS), SchemaStore(SCHEMAS).get("com.example.PaidOrder"))


def wait_for_output(
    connection: Connection,
    sink: str,
    dlq: str,
    expected: Expected,
    timeout: float,
    procs: list[StreamlineProcess],
) -> None:
    """Waits until the committed output and dead letters reach their expected counts."""
    deadline = time.monotonic() + timeout
    want_out, want_dlq = len(expected.outputs), len(expected.dead_letters)
    out = dead = 0
    while time.monotonic() < deadline:
        out = len(read_all(connection, sink, timeout=5))
        dead = len(read_all(connection, dlq, timeout=5))
        if out >= want_out and dead >= want_dlq:
            return
        time.sleep(1)
    logs = "\n".join(p.log()[-3000:] for p in procs)
    raise AssertionError(
        f"output {out}/{want_out}, dead letters {dead}/{want_dlq} after {timeout}s\n{logs}"
    )


def await_output(connection: Connection, sink: str, proc: StreamlineProcess) -> None:
    """Waits until `proc` has committed some output."""
    deadline = time.monotonic() + 60
    while not read_all(connection, sink, timeout=5):
        assert time.monotonic() < deadline, f"no output:\n{proc.log()[-3000:]}"
        time.sleep(0.2)


def await_takeover(proc: StreamlineProcess, topic: str, until: float) -> bool:
    """Waits (until the monotonic time `until`) for `proc` to take every partition of `topic`
    over: assigned them, or waiting for the committed offsets a frozen commit holds."""
    while True:
        log = proc.current_log()
        if "committed offsets held by an unfinished commit" in log:
            return True
        lines = [x for x in log.splitlines() if " assigned [" in x]
        if lines and set(re.findall(rf"'{re.escape(topic)}/(\d+)'", lines[-1])) == {"0", "1", "2"}:
            return True
        if time.monotonic() > until:
            return False
        time.sleep(0.1)


def assert_exact(
    connection: Connection,
    sink: str,
    dlq: str,
    source: str,
    expected: Expected,
    feeder: InputFeeder,
) -> None:
    """The committed output equals the expectation: no duplicate, none missing, exact dead letters."""
    # read until every expected output is there (or 60 s): a busy machine can take longer than
    # read_all's default 10 s, which would look like missing outputs
    outputs = read_all(connection, sink, timeout=60, expected=len(expected.outputs))
    values = [PAID_ORDER.decode(m.value()) for m in outputs]
    ids = [v["order_id"] for v in values]
    assert duplicates(ids) == []
    assert {v["order_id"]: v for v in values} == expected.outputs
    for msg, value in zip(outputs, values, strict=True):
        headers = dict(msg.headers() or [])
        assert msg.key() == value["customer_id"].encode()
        assert headers["streamline.event_time"] == str(value["created_at"]).encode()
        assert headers["streamline.topology"].startswith(b"crash-")

    dead = read_all(connection, dlq, timeout=60, expected=len(expected.dead_letters))
    assert duplicates([m.value() for m in dead]) == []  # type: ignore[arg-type]
    assert {m.value() for m in dead} == set(expected.dead_letters)
    for msg in dead:
        headers = dict(msg.headers() or [])
        error_type, rule = expected.dead_letters[msg.value()]
        assert headers["streamline.error.type"] == error_type.encode()
        partition, offset = feeder.positions[msg.value()]
        assert headers["streamline.source.topic"] == source.encode()
        assert headers["streamline.source.partition"] == str(partition).encode()
        assert headers["streamline.source.offset"] == str(offset).encode()
        assert msg.key() is not None
        if rule is not None:
            assert headers["streamline.error.rule"] == rule.encode()
            assert headers["streamline.error.stage"] == b"stages[0].validate"
        if error_type == "map":
            assert headers["streamline.attempts"] == b"3"
            assert headers["streamline.error.stage"] == b"stages[2].map"
            assert b"MapFailure" in headers["streamline.error.message"]
        for name in ("streamline.error.message", "streamline.failed_at"):
            assert headers[name]


def start_feeding(
    kafka: Connection, source: str, rate: float = 4000
) -> tuple[InputFeeder, Expected]:
    stream = order_stream(N_RECORDS)
    feeder = InputFeeder(kafka, source, stream, rate)
    feeder.start()
    return feeder, expectation(stream)


def test_sigkilled_processor_restarts_without_duplicates_or_loss(
    kafka: Connection, unique: str, tmp_path: Path
) -> None:
    topology, source, sink, dlq = make_topology(tmp_path, kafka, unique)
    feeder, expected = start_feeding(kafka, source)
    env = process_env(kafka)
    proc = StreamlineProcess(topology, "a", env, tmp_path).start()
    crash_repeatedly(proc, random.Random(unique))
    feeder.join(120)
    assert feeder.error is None
    wait_for_output(kafka, sink, dlq, expected, 180, [proc])
    assert proc.stop() == 0
    assert_exact(kafka, sink, dlq, source, expected, feeder)
    assert expected.filtered > 0 and len(expected.dead_letters) > 1000


def test_two_instances_one_joining_and_one_leaving_stay_exact(
    kafka: Connection, unique: str, tmp_path: Path
) -> None:
    topology, source, sink, dlq = make_topology(tmp_path, kafka, unique)
    feeder, expected = start_feeding(kafka, source)
    env = process_env(kafka)
    first = StreamlineProcess(topology, "a", env, tmp_path).start()
    time.sleep(3)
    second = StreamlineProcess(topology, "b", env, tmp_path).start()
    time.sleep(5)
    assert first.stop() == 0  # leaves the group cleanly; b takes over every partition
    feeder.join(120)
    wait_for_output(kafka, sink, dlq, expected, 180, [first, second])
    assert second.stop() == 0
    assert_exact(kafka, sink, dlq, source, expected, feeder)
    assert "assigned" in second.log()


def test_frozen_zombie_produces_no_duplicates_after_takeover(
    kafka: Connection, unique: str, tmp_path: Path
) -> None:
    """SIGSTOPped while it processes (often in the middle of a commit), the zombie's session
    expires and the heir takes every partition over; resumed, the zombie finds its group
    generation stale: what it had not committed is aborted, and it rejoins."""
    topology, source, sink, dlq = make_topology(tmp_path, kafka, unique)
    feeder, expected = start_feeding(kafka, source)
    env = process_env(kafka)
    zombie = StreamlineProcess(topology, "zombie", env, tmp_path).start()
    await_started(zombie)
    await_output(kafka, sink, zombie)  # frozen in the middle of the stream, not before it
    zombie.freeze()
    frozen_at = time.monotonic()
    heir = StreamlineProcess(topology, "heir", env, tmp_path).start()
    # resumed once the heir took its partitions over (after the zombie's 6 s session), and
    # well within the transaction timeout (30 s): a transaction the zombie left open is
    # still its own to finish or abort, and the heir may be waiting for it (on a machine so
    # busy that the heir has not joined by then, it joins after the zombie resumed)
    await_takeover(heir, source, frozen_at + 20)
    zombie.thaw()
    feeder.join(120)
    assert feeder.error is None
    wait_for_output(kafka, sink, dlq, expected, 180, [zombie, heir])
    assert zombie.stop() == 0, zombie.log()[-3000:]
    assert heir.stop() == 0, heir.log()[-3000:]
    assert_exact(kafka, sink, dlq, source, expected, feeder)


def test_at_least_once_loses_nothing_under_sigkill(
    kafka: Connection, unique: str, tmp_path: Path
) -> None:
    topology, source, sink, dlq = make_topology(tmp_path, kafka, unique, guarantee="at_least_once")
    feeder, expected = start_feeding(kafka, source)
    env = process_env(kafka)
    proc = StreamlineProcess(topology, "a", env, tmp_path).start()
    crash_repeatedly(proc, random.Random(unique))
    feeder.join(120)
    wait_for_output(kafka, sink, dlq, expected, 180, [proc])
    assert proc.stop() == 0
    values: list[dict[str, Any]] = [PAID_ORDER.decode(m.value()) for m in read_all(kafka, sink)]
    assert {v["order_id"]: v for v in values} == expected.outputs
    assert {m.value() for m in read_all(kafka, dlq)} == set(expected.dead_letters)
