"""Failover under continuous input, with windows exact against the oracle: a restarted
instance takes its partitions back without a rebalance (static membership), a standby
replica makes a takeover restore only what it had not read, and repeated kills and
restarts with standbys, or a rebalance in the middle of a restore, lose and double
nothing."""

from __future__ import annotations

import os
import random
import re
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path

import pytest
from confluent_kafka import Producer, TopicPartition

from streamline.kafka.admin import committed_offsets, create_topics
from streamline.kafka.connection import Connection
from streamline.ops.topics import topology_topics
from streamline.topology import Topology, load_topology
from tests.helpers import read_all
from tests.integration.test_scale import await_condition
from tests.integration.test_windows import (
    OOO_MS,
    ORDER,
    REVENUE,
    TOPOLOGY,
    WINDOWS,
    Scenario,
    assert_windows_exact,
)
from tests.support.harness import StreamlineProcess, await_started, process_env
from tests.support.scale import ContinuousOrders, Sampler, log_lines
from tests.support.windows_oracle import events, windows

pytestmark = [pytest.mark.kafka, pytest.mark.slow]

FULL = os.environ.get("STREAMLINE_ACCEPTANCE_SCALE") == "full"
PARTITIONS = 4
STEP_MS = 10
WINDOW_MS = 60_000
KEYS = 200
SESSION_TIMEOUT_MS = 6_000  # process_env's
ASSIGNED = re.compile(r"'([^']+)/(\d+)'")
RESTORED = re.compile(
    r"restored windows partition (\d+): (\d+) changelog records from offset (\d+)"
)


@dataclass
class Cluster:
    """A windowed topology on a few instances, its input flowing, their metrics sampled."""

    kafka: Connection
    topology: Topology
    source: str
    sink: str
    feeder: ContinuousOrders
    sampler: Sampler
    procs: dict[str, StreamlineProcess]

    def start(self, member: str) -> None:
        self.procs[member].start()
        self.sampler.watch(member, self.procs[member])

    def holding(self, members: list[str]) -> bool:
        """Each member answers ready with partitions, and they hold every partition."""
        latest = [self.sampler.latest(m) for m in members]
        return (
            all(
                s is not None and s.ready and s.assigned > 0 and s.at > time.time() - 1
                for s in latest
            )
            and sum(s.assigned for s in latest if s is not None) == PARTITIONS
        )

    def commits_input(self, member: str, timeout: float = 30) -> None:
        """The member's latest start counts more input than when this was asked (a sample
        of an earlier start, whose counters were higher, is not a baseline)."""
        port = self.procs[member].metrics_port
        first = self.sampler.latest(member)
        base = first.records_in if first is not None and first.port == port else 0.0
        await_condition(
            f"{member} commits input",
            lambda: (
                (s := self.sampler.latest(member)) is not None
                and s.port == port
                and s.records_in > base
            ),
            timeout,
        )

    def finish_exact(self) -> None:
        """Stops the input and checks the committed windows against the oracle's."""
        evts = self.feeder.events
        closing = self.feeder.finish(PARTITIONS, beyond_ms=2 * WINDOW_MS)
        assert self.feeder.errors == []
        watermark = min(e.t for e in closing) - OOO_MS
        expected = windows(evts, "tumbling", WINDOW_MS, 0, 0, 0, watermark)
        await_condition(
            f"{len(expected)} windows in {self.sink}",
            lambda: len(read_all(self.kafka, self.sink, timeout=10)) >= len(expected),
            90,
        )
        got = read_all(self.kafka, self.sink, expected=len(expected))
        assert_windows_exact([REVENUE.decode(m.value()) for m in got], expected)
        assert read_all(self.kafka, self.topology.dead_letter_topic) == []
        assert read_all(self.kafka, self.topology.late_topic) == []


@contextmanager
def cluster(
    kafka: Connection,
    unique: str,
    tmp_path: Path,
    members: list[str],
    rate: float,
    extra: str = "",
    session_timeout_ms: int = SESSION_TIMEOUT_MS,
    keys: int = KEYS,
) -> Iterator[Cluster]:
    name, source, sink = f"failover-{unique}", f"orders-{unique}", f"revenue-{unique}"
    folder = tmp_path / "topologies"
    folder.mkdir()
    path = folder / f"{name}.yaml"
    text = TOPOLOGY.format(
        name=name, source=source, sink=sink, window=WINDOWS["tumbling"], lateness="0s",
        partitioned_by="partitioned_by: customer_id",
    )  # fmt: skip
    path.write_text(text + extra)
    topology = load_topology(path)
    create_topics(kafka, topology_topics(topology, PARTITIONS))
    env = process_env(kafka)
    env["STREAMLINE_KAFKA_SESSION_TIMEOUT_MS"] = str(session_timeout_ms)
    feeder = ContinuousOrders(kafka, source, ORDER, rate, keys, STEP_MS, OOO_MS - 1000, False)
    sampler = Sampler(source)
    procs = {
        m: StreamlineProcess(path, m, env, tmp_path, extra_args=["--static-membership"])
        for m in members
    }
    c = Cluster(kafka, topology, source, sink, feeder, sampler, procs)
    try:
        feeder.start()
        sampler.start()
        yield c
    finally:
        feeder.halt()
        sampler.stop()
        for proc in procs.values():
            if proc.proc is not None and proc.proc.poll() is None:
                proc.kill()


def assigned(proc: StreamlineProcess, topic: str, since: float) -> list[set[int]]:
    """The source partitions of each `assigned` line the instance logged since `since`."""
    return [
        {int(p) for t, p in ASSIGNED.findall(x.message) if t == topic}
        for x in log_lines(proc)
        if x.at >= since and x.message.startswith("assigned ")
    ]


def restores(proc: StreamlineProcess, since: float) -> dict[int, tuple[int, int]]:
    """(records replayed, from offset) of the last restore of each partition since `since`."""
    out = {}
    for x in log_lines(proc):
        match = RESTORED.match(x.message)
        if x.at >= since and match:
            out[int(match.group(1))] = (int(match.group(2)), int(match.group(3)))
    return out


def standby_lag(port: int) -> dict[int, float]:
    import urllib.request

    with urllib.request.urlopen(f"http://127.0.0.1:{port}/metrics", timeout=2) as response:
        text = response.read().decode()
    lags = re.findall(r'^streamline_standby_lag\{partition="(\d+)",[^}]*\} (\S+)$', text, re.M)
    return {int(p): float(v) for p, v in lags}


def standby_caught_up(port: int, partitions: set[int]) -> bool:
    try:
        lag = standby_lag(port)
    except OSError:  # not serving yet
        return False
    return set(lag) >= partitions and max(lag[p] for p in partitions) < 500


@pytest.mark.timeout(300)
def test_five_kills_and_restarts_with_standbys_while_input_flows_stay_exact(
    kafka: Connection, unique: str, tmp_path: Path
) -> None:
    """Two static members with standby_replicas: 1, each a standby of the other's partitions
    (streamline_standby_lag). Five times, one of them (at random) is SIGKILLed and
    restarted with its id:

    - at once: it takes its own partitions back without a rebalance (the other one is
      never revoked and keeps processing), restoring from its local checkpoint;
    - or after its session expired: meanwhile the other one took its partitions over,
      restoring each from its standby's checkpoint (a few records, not the changelog).

    The windows equal the oracle's: nothing lost, nothing counted twice.
    """
    rng = random.Random(20)
    cycles = 10 if FULL else 5
    # the default session timeout: a restart of a few seconds on a busy machine stays within it
    with cluster(kafka, unique, tmp_path, ["a", "b"], 1000, "standby_replicas: 1\n", 10_000) as c:
        for m in c.procs:
            c.start(m)
        await_condition("two members hold the partitions", lambda: c.holding(["a", "b"]), 60)
        owned = {m: assigned(c.procs[m], c.source, 0)[-1] for m in c.procs}
        await_condition(
            "each member's standbys of the other's partitions caught up",
            lambda: all(
                set(lag := standby_lag(c.procs[m].metrics_port)) == owned[o]
                and max(lag.values()) < 500
                for m, o in (("a", "b"), ("b", "a"))
            ),
            30,
        )
        takeovers = 0
        for cycle in range(cycles):
            victim = rng.choice(["a", "b"])
            survivor = "b" if victim == "a" else "a"
            time.sleep(rng.uniform(0.5, 1.5))
            if cycle % 2:  # a survivor restarted a moment ago may still be filling its standbys
                await_condition(
                    f"{survivor}'s standbys of {victim}'s partitions caught up",
                    lambda: standby_caught_up(c.procs[survivor].metrics_port, owned[victim]),  # noqa: B023
                    60,
                )
            killed_at = time.time()
            c.procs[victim].kill()
            if cycle % 2:  # lost for longer than its session: the survivor takes over
                alone = [survivor]
                await_condition(f"{survivor} holds all", lambda: c.holding(alone), 60)  # noqa: B023
                taken = restores(c.procs[survivor], killed_at)
                for p in owned[victim]:
                    replayed, start = taken[p]
                    assert start > 0, f"partition {p} restored from the beginning"
                    assert replayed < start, (p, replayed, start)  # far less than its history
                takeovers += 1
                c.procs[victim].start()
            else:  # back at once: its own partitions, no rebalance
                c.procs[victim].start()
                await_started(c.procs[victim])
                assert assigned(c.procs[victim], c.source, killed_at) == [owned[victim]]
                c.commits_input(victim)
                lines = [x.message for x in log_lines(c.procs[survivor]) if x.at >= killed_at]
                assert not [m for m in lines if m.startswith(("revoked ", "assigned "))], lines
            await_condition("both hold partitions again", lambda: c.holding(["a", "b"]), 60)
            c.commits_input(victim)
            owned = {m: assigned(c.procs[m], c.source, 0)[-1] for m in c.procs}
        assert takeovers >= 2
        c.finish_exact()


@pytest.mark.timeout(240)
def test_a_rebalance_in_the_middle_of_a_restore_loses_and_doubles_nothing(
    kafka: Connection, unique: str, tmp_path: Path
) -> None:
    """b joins a running instance and is frozen (SIGSTOP) while it restores the changelog of
    its new partitions; meanwhile c joins and b's session expires, so the group takes those
    partitions from b and gives them to a and c. Then b resumes: it finishes a restore of
    partitions it no longer owns, learns they are lost, rejoins, and restores again what
    it gets. The windows equal the oracle's."""
    with cluster(kafka, unique, tmp_path, ["a", "b", "c"], 4000, keys=50_000) as c:
        c.start("a")
        await_condition("a holds the partitions", lambda: c.holding(["a"]), 60)
        await_condition(  # a long changelog, so that b's restore takes a while
            "30,000 records committed",
            lambda: (s := c.sampler.latest("a")) is not None and s.records_in >= 30_000,
            90,
        )
        joined_at = time.time()
        c.start("b")
        b = c.procs["b"]
        deadline = time.monotonic() + 60
        while not assigned(b, c.source, joined_at):
            assert time.monotonic() < deadline, "b was not assigned partitions"
            time.sleep(0.01)
        b.freeze()
        frozen_at = time.time()
        mine = assigned(b, c.source, joined_at)[-1]
        restored = restores(b, joined_at)
        assert set(restored) < mine, f"b finished restoring {sorted(restored)} before the freeze"
        c.start("c")
        await_condition("a and c hold every partition", lambda: c.holding(["a", "c"]), 60)
        b.thaw()
        await_condition("a, b and c hold partitions", lambda: c.holding(["a", "b", "c"]), 60)
        c.commits_input("b")
        lost = [x.message for x in log_lines(b) if x.at >= frozen_at]
        assert any(m.startswith("assigned ") for m in lost), lost
        c.finish_exact()


@pytest.mark.timeout(240)
def test_a_restore_reads_past_a_transaction_left_open_in_the_changelog(
    kafka: Connection, unique: str, tmp_path: Path
) -> None:
    """An instance that stops in the middle of a commit leaves its changelog records in an
    open transaction, and the partition's next owner commits its own after them. Until the
    open one ends, a read_committed reader sees nothing past it: an instance restoring
    from an older checkpoint then must wait for it, or its state would lack the next
    owner's work while its input starts after it (that owner's windows emitted twice,
    its records missing from the windows).

    `a` processes the first part and stops; `b` restores, a transaction is left open in the
    changelog, and `b` processes the second part (emitting its windows) and stops; `a`
    restores from its checkpoint, says it waits, and once the transaction ends reads `b`'s
    work; the third part closes every window. The windows equal the oracle's."""
    scenario = Scenario(kafka, tmp_path, unique, "tumbling", partitions=1)
    evts = events(9_000, keys=40, step_ms=100, disorder_ms=OOO_MS - 1000)
    parts = [evts[:3000], evts[3000:6000], evts[6000:]]
    group, source = scenario.topology.group_id, scenario.source
    changelog = scenario.topology.changelog_topic("windows")

    def committed_through(n: int) -> Callable[[], bool]:
        tp = TopicPartition(source, 0)
        return lambda: committed_offsets(kafka, group, [tp])[(source, 0)].offset >= n

    a, b = scenario.process("a"), scenario.process("b")
    scenario.produce(parts[0])
    a.start()
    await_condition("a commits the first part", committed_through(3000), 90)
    assert a.stop() == 0
    b.start()
    await_condition("b restored", lambda: "restored windows partition 0" in b.current_log(), 90)
    left_open = Producer(
        kafka.config(
            **{"transactional.id": f"{scenario.name}-stopped", "transaction.timeout.ms": 120_000}
        )
    )
    left_open.init_transactions(30)
    left_open.begin_transaction()
    left_open.produce(changelog, key=b"T-never-committed", value=b"x", partition=0)
    assert left_open.flush(30) == 0
    scenario.produce(parts[1])
    await_condition("b commits the second part", committed_through(6000), 90)
    assert b.stop() == 0
    emitted_by_b = len(read_all(kafka, scenario.sink, timeout=10))
    assert emitted_by_b > 0

    a.start()
    await_condition(
        "a waits for the open transaction",
        lambda: "an open transaction holds offsets" in a.current_log(),
        60,
    )
    assert "restored windows partition 0" not in a.current_log()
    left_open.abort_transaction(30)
    scenario.produce(parts[2])
    scenario.finish_exact(evts, 120, [a])
