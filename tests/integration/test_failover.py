"""Failover under continuous input: a restarted instance takes its partitions back without a
rebalance (static membership), and the windows stay exact."""

from __future__ import annotations

import re
import time
from pathlib import Path

import pytest

from streamline.dev.broker import free_port
from streamline.kafka.admin import create_topics
from streamline.kafka.connection import Connection
from streamline.ops.topics import topology_topics
from streamline.topology import load_topology
from tests.helpers import read_all
from tests.integration.test_scale import await_condition
from tests.integration.test_windows import (
    OOO_MS,
    ORDER,
    REVENUE,
    TOPOLOGY,
    WINDOWS,
    assert_windows_exact,
)
from tests.support.harness import StreamlineProcess, await_started, process_env
from tests.support.scale import ContinuousOrders, Sampler, log_lines
from tests.support.windows_oracle import windows

pytestmark = [pytest.mark.kafka, pytest.mark.slow]

PARTITIONS = 4
RATE = 1000  # events/s
STEP_MS = 10
WINDOW_MS = 60_000
KEYS = 200
SESSION_TIMEOUT_MS = 10_000
ASSIGNED = re.compile(r"'([^']+)/(\d+)'")


def assigned(proc: StreamlineProcess, topic: str, since: float) -> list[set[int]]:
    """The source partitions of each `assigned` line the instance logged since `since`."""
    return [
        {int(p) for t, p in ASSIGNED.findall(x.message) if t == topic}
        for x in log_lines(proc)
        if x.at >= since and x.message.startswith("assigned ")
    ]


@pytest.mark.timeout(180)
def test_an_instance_restarted_with_its_id_takes_its_partitions_back_without_a_rebalance(
    kafka: Connection, unique: str, tmp_path: Path
) -> None:
    """SIGKILL one of two static members and restart it at once with the same id: the other
    one is never revoked (it keeps processing), the restarted one gets its own partitions
    back (restored from its local checkpoint), and the windows equal the oracle's."""
    name, source, sink = f"static-{unique}", f"orders-{unique}", f"revenue-{unique}"
    folder = tmp_path / "topologies"
    folder.mkdir()
    path = folder / f"{name}.yaml"
    path.write_text(
        TOPOLOGY.format(
            name=name, source=source, sink=sink, window=WINDOWS["tumbling"], lateness="0s",
            partitioned_by="partitioned_by: customer_id",
        )
    )  # fmt: skip
    topology = load_topology(path)
    create_topics(kafka, topology_topics(topology, PARTITIONS))
    env = process_env(kafka)
    env["STREAMLINE_KAFKA_SESSION_TIMEOUT_MS"] = str(SESSION_TIMEOUT_MS)
    feeder = ContinuousOrders(kafka, source, ORDER, RATE, KEYS, STEP_MS, OOO_MS - 1000, False)
    sampler = Sampler(source)
    procs = {
        m: StreamlineProcess(path, m, env, tmp_path, metrics_port=free_port()) for m in ("a", "b")
    }
    try:
        feeder.start()
        sampler.start()
        for m, proc in procs.items():
            proc.start()
            sampler.watch(m, proc.metrics_port)
        # both hold partitions (the group has settled on two members)
        await_condition(
            "two members, each with partitions",
            lambda: all(
                (s := sampler.latest(m)) is not None and s.ready and s.assigned > 0 for m in procs
            ),
            60,
        )
        time.sleep(3)  # windows and changelog history on both
        before = assigned(procs["b"], source, 0)[-1]
        killed_at = time.time()
        procs["b"].kill()
        procs["b"].start()
        await_started(procs["b"])
        restarted = assigned(procs["b"], source, killed_at)
        assert restarted == [before]  # its own partitions, in one assignment
        b_records = (sampler.latest("b") or pytest.fail("b not scraped")).records_in
        await_condition(
            "b commits input again",
            lambda: (s := sampler.latest("b")) is not None and s.records_in > b_records,
            30,
        )
        resumed = time.time() - killed_at
        # the other member was never asked to give its partitions up
        a_lines = [x.message for x in log_lines(procs["a"]) if x.at >= killed_at]
        assert not [m for m in a_lines if m.startswith(("revoked ", "assigned "))], a_lines
        assert resumed < SESSION_TIMEOUT_MS / 1000, f"b resumed {resumed:.1f}s after the kill"
        restores = [x.message for x in log_lines(procs["b"]) if x.at >= killed_at]
        assert any("(local checkpoint)" in m for m in restores), restores

        evts = feeder.events
        closing = feeder.finish(PARTITIONS, beyond_ms=2 * WINDOW_MS)
        assert feeder.errors == []
        watermark = min(e.t for e in closing) - OOO_MS
        expected = windows(evts, "tumbling", WINDOW_MS, 0, 0, 0, watermark)
        await_condition(
            f"{len(expected)} windows in {sink}",
            lambda: len(read_all(kafka, sink, timeout=10)) >= len(expected),
            90,
        )
    finally:
        feeder.halt()
        sampler.stop()
        for proc in procs.values():
            if proc.proc is not None and proc.proc.poll() is None:
                proc.kill()
    values = [REVENUE.decode(m.value()) for m in read_all(kafka, sink, expected=len(expected))]
    assert_windows_exact(values, expected)
    assert read_all(kafka, topology.dead_letter_topic) == []
    assert read_all(kafka, topology.late_topic) == []
