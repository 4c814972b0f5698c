"""Scaling out and back in under continuous input: windows stay exact, rebalances are measured."""

from __future__ import annotations

import json
import logging
import time
from collections.abc import Callable
from pathlib import Path

import pytest

from streamline.kafka.admin import create_topics
from streamline.kafka.connection import Connection
from streamline.ops.topics import topology_topics
from streamline.topology import load_topology
from tests.helpers import read_all
from tests.integration.test_windows import (
    OOO_MS,
    ORDER,
    REVENUE,
    TOPOLOGY,
    WINDOWS,
    assert_windows_exact,
)
from tests.support.harness import StreamlineProcess, await_started, process_env
from tests.support.scale import ContinuousOrders, Rebalance, Sampler, settle
from tests.support.windows_oracle import windows

pytestmark = [pytest.mark.kafka, pytest.mark.slow]

log = logging.getLogger(__name__)

PARTITIONS = 6
RATE = 2000  # events/s
STEP_MS = 10  # event time advances 20 s per second: a one-minute window closes every 3 s
WINDOW_MS = 60_000
KEYS = 300


def await_condition(what: str, condition: Callable[[], bool], timeout: float) -> None:
    deadline = time.monotonic() + timeout
    while not condition():
        if time.monotonic() > deadline:
            raise AssertionError(f"{what}: not within {timeout}s")
        time.sleep(0.1)


@pytest.mark.timeout(240)
@pytest.mark.parametrize("repartition", [False, True], ids=["partitioned", "repartitioned"])
def test_scaling_from_one_to_three_instances_and_back_keeps_windows_exact(
    kafka: Connection, unique: str, tmp_path: Path, repartition: bool
) -> None:
    """Under continuous input, 1 -> 3 -> 2 -> 1 instances, each with its own state dir.

    Window state moves with its partition through the changelog (restored from the
    beginning by a new owner, from its old checkpoint by a former one); the committed
    windows equal the oracle's. Each step's pause and restores go to rebalances.json.
    """
    name, source, sink = f"scale-{unique}", f"orders-{unique}", f"revenue-{unique}"
    folder = tmp_path / "topologies"
    folder.mkdir()
    path = folder / f"{name}.yaml"
    path.write_text(
        TOPOLOGY.format(
            name=name,
            source=source,
            sink=sink,
            window=WINDOWS["tumbling"],
            lateness="0s",
            partitioned_by="" if repartition else "partitioned_by: customer_id",
        )
    )
    topology = load_topology(path)
    create_topics(kafka, topology_topics(topology, PARTITIONS))
    env = process_env(kafka)
    # every instance holds source partitions, and with repartitioning as many of those
    total_partitions = PARTITIONS * (2 if repartition else 1)

    feeder = ContinuousOrders(
        kafka, source, ORDER, RATE, KEYS, STEP_MS, OOO_MS - 1000, key_by_order=repartition
    )
    sampler = Sampler(source)
    procs: dict[str, StreamlineProcess] = {}

    def start(instance: str) -> None:
        # its own state dir under tmp_path/state/<instance>, like a pod's volume
        procs[instance] = StreamlineProcess(path, instance, env, tmp_path)
        procs[instance].start()
        sampler.watch(instance, procs[instance])

    def progress() -> tuple[float, float]:
        """Input records committed and windows emitted, over the instances still running."""
        running = [m for m, p in procs.items() if p.proc is not None and p.proc.poll() is None]
        latest = [sampler.latest(m) for m in running]
        return (
            sum(s.records_in for s in latest if s is not None),
            sum(s.records_out for s in latest if s is not None),
        )

    def run_for(records: float) -> None:
        """Lets the current members commit `records` more input, and emit windows, before the
        next step."""
        records_in, records_out = progress()
        await_condition(
            f"{records:.0f} more records committed and windows emitted",
            lambda: progress()[0] >= records_in + records and progress()[1] > records_out,
            60,
        )

    steps: list[Rebalance] = []
    started = time.monotonic()
    try:
        feeder.start()
        sampler.start()
        start("a")
        await_started(procs["a"])
        run_for(RATE * 4)  # open windows and changelog history to move
        owner = {p: "a" for p in range(PARTITIONS)}

        step = Rebalance("1 -> 3", ["a", "b", "c"], time.time())
        start("b")
        start("c")
        owner = settle(step, sampler, procs, total_partitions, owner, 60)
        steps.append(step)
        run_for(RATE * 3)

        for leaving, members in (("c", ["a", "b"]), ("b", ["a"])):
            step = Rebalance(f"{len(members) + 1} -> {len(members)}", members, time.time())
            assert procs[leaving].stop() == 0
            sampler.unwatch(leaving)
            owner = settle(step, sampler, procs, total_partitions, owner, 60)
            steps.append(step)
            run_for(RATE * 2)

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
        assert procs["a"].stop() == 0
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
    moved = [r for s in steps for r in s.restores if r["moved"]]
    assert any(r["records"] > 0 for r in moved), "no state moved through the changelog"

    report = {
        "variant": "repartitioned" if repartition else "partitioned",
        "events": len(evts),
        "windows": len(expected),
        "seconds": round(time.monotonic() - started, 1),
        "rebalances": [s.summary() for s in steps],
    }
    (tmp_path / "rebalances.json").write_text(json.dumps(report, indent=2))
    for s in steps:
        summary = s.summary()
        line = (
            f"{report['variant']} {summary['step']}: paused {summary['pause_s']:.2f}s "
            f"(restored after {summary['revoke_to_restored_s']:.2f}s, longest stall "
            f"{summary['longest_stall_s']:.2f}s); {summary['moved_partitions']} partitions "
            f"moved, {summary['restored_records']} changelog records restored, slowest "
            f"{summary['max_restore_s']:.2f}s"
        )
        log.info(line)
        print(line)
    print(f"rebalance report: {tmp_path / 'rebalances.json'}")
