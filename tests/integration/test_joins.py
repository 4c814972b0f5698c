"""Stream-table joins against the real broker: as-of-event-time enrichment under SIGKILLs,
readiness gated on the table load, and a replay that re-emits identical output.

Sizes are small in the suite; STREAMLINE_ACCEPTANCE_SCALE=full runs the issue's sizes
(100k orders, 10k customers; 200k table records for readiness).
"""

from __future__ import annotations

import random
import re
import shutil
import time
import urllib.error
import urllib.request
from collections import Counter
from pathlib import Path

import pytest

from streamline.kafka.connection import Connection
from streamline.state.store import PartitionStore
from tests.helpers import read_all, run_cli
from tests.integration.test_run import scrape, total
from tests.support.harness import crash_repeatedly
from tests.support.joins import (
    FULL,
    STEP_MS,
    T0,
    Feeder,
    Scenario,
    Stream,
    await_outputs,
    customer,
    enriched,
)

pytestmark = pytest.mark.slow

ORDERS, CUSTOMERS, UPDATES = (100_000, 10_000, 10_000) if FULL else (3_000, 300, 300)
RATE = 2_000 if FULL else 300
KILLS = 3 if FULL else 1


def by_order(outputs: list[dict]) -> dict[str, dict]:
    return {o["order_id"]: o for o in outputs}


@pytest.mark.parametrize(
    "keep_state", [True, False], ids=["local-state-kept", "local-state-deleted"]
)
def test_versioned_enrichment_equals_the_as_of_oracle_under_sigkills(
    kafka: Connection, unique: str, tmp_path: Path, keep_state: bool
) -> None:
    scenario = Scenario(kafka, tmp_path, unique, versioned=True)
    stream = Stream.make(ORDERS, CUSTOMERS, UPDATES)
    scenario.produce_customers(stream.initial)
    proc = scenario.process("a").start()
    feeder = Feeder(scenario, stream, RATE)
    feeder.start()

    def wipe(_i: int) -> None:
        if not keep_state:
            shutil.rmtree(proc.state_dir, ignore_errors=True)

    try:
        crash_repeatedly(proc, random.Random(11), times=KILLS, before_restart=wipe)
        feeder.join(300)
        assert feeder.error is None
        outputs = await_outputs(scenario, ORDERS, timeout=240)
    finally:
        proc.stop()
    ids = Counter(o["order_id"] for o in outputs)
    assert [i for i, n in ids.items() if n > 1] == []  # exactly once
    assert by_order(outputs) == stream.as_of()
    assert scenario.dead_letters() == 0


def test_plain_table_gives_exactly_one_output_per_order(
    kafka: Connection, unique: str, tmp_path: Path
) -> None:
    scenario = Scenario(kafka, tmp_path, unique, versioned=False)
    stream = Stream.make(ORDERS // 2, CUSTOMERS, UPDATES // 2, seed=3)
    scenario.produce_customers(stream.initial)
    proc = scenario.process("a").start()
    feeder = Feeder(scenario, stream, RATE)
    feeder.start()
    try:
        if FULL:
            crash_repeatedly(proc, random.Random(5), times=3)
        feeder.join(300)
        assert feeder.error is None
        outputs = await_outputs(scenario, len(stream.orders), timeout=240)
    finally:
        proc.stop()
    ids = Counter(o["order_id"] for o in outputs)
    assert sorted(ids) == sorted(o["order_id"] for o in stream.orders)
    assert set(ids.values()) == {1}
    # every segment is one the customer had at some point
    had: dict[str, set[str]] = {}
    for row in [*stream.initial, *stream.updates.values()]:
        had.setdefault(row["customer_id"], set()).add(row["segment"])
    assert all(o["segment"] in had[o["customer_id"]] for o in outputs)


def test_readyz_waits_for_the_table_and_the_first_output_is_enriched(
    kafka: Connection, unique: str, tmp_path: Path
) -> None:
    scenario = Scenario(kafka, tmp_path, unique, versioned=False)
    rows = 200_000 if FULL else 20_000
    customers = 5_000
    # many versions of few customers: the table is its last one of each
    scenario.produce_customers(
        [customer(i % customers, i // customers, T0 - 1) for i in range(rows)]
    )
    last = {
        f"c-{i % customers}": customer(i % customers, i // customers, T0 - 1) for i in range(rows)
    }
    stream = Stream.make(400, customers, 0)
    feeder = Feeder(scenario, stream, 10_000)
    feeder.run()  # the orders are there before the topology starts
    proc = scenario.process("a").start()
    port = proc.metrics_port
    statuses: list[tuple[float, int]] = []
    try:
        deadline = time.monotonic() + 120
        while time.monotonic() < deadline:
            try:
                with urllib.request.urlopen(f"http://127.0.0.1:{port}/readyz", timeout=2) as r:
                    statuses.append((time.monotonic(), r.status))
                    break
            except urllib.error.HTTPError as exc:
                statuses.append((time.monotonic(), exc.code))
            except OSError:
                pass
            time.sleep(0.05)
        assert statuses and statuses[-1][1] == 200, proc.log()[-3000:]
        log = proc.current_log()
        assert "loaded tables" in log  # before it answered 200: the load runs in the assignment
        samples = scrape(port)
        assert total(samples, "streamline_table_records", table="customers") >= customers * 0.9
        assert total(samples, "streamline_table_lag", table="customers") == 0
        outputs = await_outputs(scenario, len(stream.orders), timeout=60)
        lag = run_cli("lag", str(scenario.path), env=scenario.env)
    finally:
        proc.stop()
    assert lag.returncode == 0, lag.stderr
    table_rows = [line for line in lag.stdout.splitlines() if scenario.customers in line]
    assert len(table_rows) == scenario.partitions  # each table partition, read to its end
    for line in table_rows:  # topic, partition, committed, end, lag, ...
        cells = [c.strip() for c in re.split(r"[│|┃]", line) if c.strip()]
        assert cells[2] == cells[3] and cells[4] == "0", lag.stdout
    assert 503 in {s for _, s in statuses}  # not ready while the table loaded
    expected = {o["order_id"]: enriched(o, last[o["customer_id"]]) for o in stream.orders}
    assert by_order(outputs) == expected


def test_a_global_table_is_held_whole_by_each_of_two_instances(
    kafka: Connection, unique: str, tmp_path: Path
) -> None:
    # orders keyed by order id over 4 partitions, the table in 1: nothing is co-partitioned
    scenario = Scenario(
        kafka, tmp_path, unique, versioned=True, partitions=4, global_table=True, table_partitions=1
    )
    stream = Stream.make(ORDERS // 2, CUSTOMERS, UPDATES // 2, seed=13)
    scenario.produce_customers(stream.initial)
    procs = [scenario.process(name).start() for name in ("a", "b")]
    ports = {proc.instance_id: proc.metrics_port for proc in procs}
    versions = len(stream.initial) + len(stream.updates)
    try:
        Feeder(scenario, stream, RATE * 2, key="order_id").run()
        outputs = await_outputs(scenario, len(stream.orders), timeout=180)
        # updates after the last order: no batch comes any more, but a quiet instance still
        # follows its tables, and reports their row count, once a second
        late_from = T0 + 10 * STEP_MS * len(stream.orders)
        late = [customer(c, 9, late_from + c) for c in range(0, CUSTOMERS, 10)]
        scenario.produce_customers(late)
        versions += len(late)
        held: dict[str, float] = {}

        def every_version_held() -> bool:
            for name, port in ports.items():
                held[name] = total(scrape(port), "streamline_table_records", table="customers")
            return all(n >= 0.95 * versions for n in held.values())  # RocksDB's estimate

        deadline = time.monotonic() + 15
        while not every_version_held() and time.monotonic() < deadline:
            time.sleep(0.2)
        assigned = {
            name: total(scrape(port), "streamline_assigned_partitions")
            for name, port in ports.items()
        }
    finally:
        for proc in procs:
            proc.stop()
    assert all(n > 0 for n in assigned.values()), assigned  # both instances took partitions
    assert all(n >= 0.95 * versions for n in held.values()), held  # RocksDB's estimate
    for proc in procs:  # each instance's state holds every version of every key, exactly
        folder = proc.state_dir / scenario.name / "table-customers"
        stored: set[bytes] = set()
        for partition in folder.iterdir():
            with PartitionStore(partition, 0) as store:
                stored |= {key for key, _ in store.items()}
        assert len(stored) == versions, proc.instance_id
    ids = Counter(o["order_id"] for o in outputs)
    assert set(ids.values()) == {1}
    assert by_order(outputs) == stream.as_of()


def test_replay_to_earliest_re_emits_identical_enriched_output(
    kafka: Connection, unique: str, tmp_path: Path
) -> None:
    scenario = Scenario(kafka, tmp_path, unique, versioned=True)
    stream = Stream.make(2_000, 200, 300, seed=9)
    scenario.produce_customers(stream.initial[:100])
    producer = scenario.producer()  # a table record that does not decode
    producer.produce(scenario.customers, key=b"c-0", value=b"not avro")
    assert producer.flush(30) == 0
    scenario.produce_customers(stream.initial[100:])
    Feeder(scenario, stream, 50_000).run()
    expected = stream.as_of()
    proc = scenario.process("a").start()
    try:
        first = await_outputs(scenario, len(expected), timeout=120)
    finally:
        assert proc.stop() == 0
    assert by_order(first) == expected  # the table kept loading past the bad record
    (letter,) = read_all(kafka, f"{scenario.name}.dlq")
    headers = dict(letter.headers() or [])
    assert headers["streamline.error.type"] == b"table_decode"
    assert headers["streamline.error.stage"] == b"tables.customers"
    ends = scenario.sink_ends()
    replayed = run_cli("replay", str(scenario.path), "--to-earliest", env=scenario.env)
    assert replayed.returncode == 0, replayed.stderr
    proc = scenario.process("a").start()
    try:
        second = await_outputs(scenario, len(expected), timeout=120, after=ends)
        time.sleep(1)
    finally:
        assert proc.stop() == 0
    second = scenario.outputs(ends)
    assert len(second) == len(expected)
    assert by_order(second) == expected  # the table was not truncated; as of event time
    assert len(read_all(kafka, f"{scenario.name}.dlq")) == 1  # loaded from its checkpoint
