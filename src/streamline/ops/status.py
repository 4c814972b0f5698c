"""`streamline status`: every topology's SLA posture, with the upstream cause of lateness.

Everything comes from two shared topics, so no topology file is needed:

- `streamline.heartbeats` (the last `since`, an hour by default): per instance its version,
  fingerprint, readiness, last commit, source topics, sink and per partition freshness and
  lag. An instance is live while its newest heartbeat is younger than
  `max(3 * heartbeat_interval, 10 s)`; a topology with no live instance is `down`.
- `streamline.lineage` (the same window): dead letters and late records per topology, and
  the topics each transaction read and wrote.

The dependency graph joins topologies by topic: A -> B when a topic A writes (its sink)
is one B reads (a source). A topology that is not `ok` while a topology upstream of it is
not `ok` either names the furthest such one as its cause: `late (upstream: A)`.

`summarize` and the functions it calls are pure (tested without Kafka); `read_status`
reads the topics and calls it.
"""

from __future__ import annotations

import fnmatch
import json
import time
import uuid
from collections import defaultdict
from collections.abc import Iterable, Iterator
from dataclasses import asdict, dataclass, field
from typing import Any

from confluent_kafka import Message

from streamline.kafka.connection import Connection
from streamline.kafka.scan import scan_consumer, scan_since
from streamline.observability.heartbeats import HEARTBEATS_TOPIC
from streamline.observability.lineage import LINEAGE_TOPIC

STATES = ("ok", "late", "breached", "down")
"""Topology states, best first; anything but `ok` makes `status` exit 1."""
RANK = {state: i for i, state in enumerate(STATES)}
LIVE_FLOOR_MS = 10_000
"""An instance is live while its newest heartbeat is younger than max(3 intervals, this)."""
HISTORY_SLOT_MS = 60_000
"""SLA history: the worst state of each minute."""
DEFAULT_SINCE_MS = 3_600_000


@dataclass(frozen=True)
class Beat:
    """One heartbeat, as `status` needs it."""

    topology: str
    instance: str
    time: int
    version: str
    fingerprint: str
    partitions: list[dict[str, Any]]
    ready: bool | None = None
    last_commit: int | None = None
    interval_ms: int = 5_000
    sources: tuple[str, ...] = ()
    sink: str | None = None
    dead_letter_topic: str | None = None

    @property
    def state(self) -> str:
        """The worst partition status; `late` while the instance holds no partition."""
        statuses = [p.get("status") or "late" for p in self.partitions]
        return max(statuses, key=RANK.__getitem__) if statuses else "late"


def parse_beat(document: dict[str, Any]) -> Beat | None:
    """A heartbeat document as a `Beat`; None if it is not one."""
    try:
        topics = document.get("topics") or {}
        partitions = [p for p in document.get("partitions") or [] if isinstance(p, dict)]
        sources = tuple(topics.get("sources") or {p["topic"] for p in partitions})
        return Beat(
            topology=str(document["topology"]),
            instance=str(document["instance"]),
            time=int(document["time"]),
            version=str(document.get("version", "")),
            fingerprint=str(document.get("fingerprint", "")),
            partitions=partitions,
            ready=document.get("ready"),
            last_commit=document.get("last_commit"),
            interval_ms=int((document.get("sla") or {}).get("heartbeat_interval", 5_000)),
            sources=sources,
            sink=topics.get("sink"),
            dead_letter_topic=topics.get("dead_letters"),
        )
    except (KeyError, TypeError, ValueError):
        return None


@dataclass
class Activity:
    """What a topology's lineage events in the window say: counts, last commit, topics."""

    dead_letters: int = 0
    late: int = 0
    last_commit: int | None = None
    inputs: set[str] = field(default_factory=set)
    outputs: set[str] = field(default_factory=set)


def lineage_activity(events: Iterable[dict[str, Any]]) -> dict[str, Activity]:
    """Per topology (job name): dead letters, late records, newest commit and topics."""
    from datetime import datetime

    out: dict[str, Activity] = defaultdict(Activity)
    for event in events:
        try:
            activity = out[event["job"]["name"]]
            counts = event.get("run", {}).get("facets", {}).get("streamline_counts", {})
            activity.dead_letters += sum(
                int(n) for n in (counts.get("dead_letters") or {}).values()
            )
            activity.late += int(counts.get("late") or 0)
            at = int(datetime.fromisoformat(event["eventTime"]).timestamp() * 1000)
            activity.last_commit = max(at, activity.last_commit or at)
            activity.inputs.update(d["name"] for d in event.get("inputs", []))
            activity.outputs.update(  # topics: not the files and webhooks a sink wrote
                d["name"]
                for d in event.get("outputs", [])
                if str(d.get("namespace", "kafka:")).startswith("kafka:")
            )
        except (KeyError, TypeError, ValueError):
            continue
    return dict(out)


@dataclass
class TopologyStatus:
    """One row of `status`."""

    name: str
    state: str
    upstream: list[str]
    """The furthest upstream topologies that are not `ok` either: the root cause."""
    own_state: str
    """The state from this topology's own heartbeats, before looking upstream."""
    instances: list[str]
    versions: list[str]
    fingerprints: list[str]
    ready: bool
    lag: int | None
    watermark: int | None
    staleness_ms: int | None
    dead_letters_last_hour: int
    late_last_hour: int
    last_commit: int | None
    last_heartbeat: int
    sources: list[str]
    sinks: list[str]
    upstreams: list[str]
    """Topologies whose sink this topology reads (the direct edges of the graph)."""
    dead_letter_topic: str | None
    history: list[tuple[int, str]]
    """(minute start, worst state in that minute), oldest first."""

    @property
    def label(self) -> str:
        """`late`, or `late (upstream: A)` when the cause is upstream."""
        if self.upstream:
            return f"{self.state} (upstream: {', '.join(self.upstream)})"
        return self.state

    def to_json(self) -> dict[str, Any]:
        out = asdict(self)
        out["label"] = self.label
        out["history"] = [{"time": t, "state": s} for t, s in self.history]
        return out


def _worst(states: Iterable[str]) -> str:
    return max(states, key=RANK.__getitem__, default="ok")


def _ancestors(name: str, upstreams: dict[str, list[str]]) -> set[str]:
    seen: set[str] = set()
    stack = list(upstreams.get(name, []))
    while stack:
        node = stack.pop()
        if node in seen or node == name:
            continue
        seen.add(node)
        stack.extend(upstreams.get(node, []))
    return seen


def root_causes(name: str, states: dict[str, str], upstreams: dict[str, list[str]]) -> list[str]:
    """The not-ok topologies upstream of `name` that have no not-ok topology upstream of
    their own (in a cycle of not-ok topologies, every member of it)."""
    bad = {a for a in _ancestors(name, upstreams) if states.get(a, "ok") != "ok"}
    roots = [a for a in bad if not (_ancestors(a, upstreams) & bad) - {a}]
    return sorted(roots or bad)


def summarize(
    beats: Iterable[Beat],
    activity: dict[str, Activity],
    now_ms: int,
    only: list[str] | None = None,
) -> list[TopologyStatus]:
    """Every topology that sent a heartbeat among `beats`, sorted by name.

    `only` (glob patterns) restricts the rows; the graph and the upstream causes are
    computed over every topology.
    """
    by_topology: dict[str, list[Beat]] = defaultdict(list)
    for beat in beats:
        by_topology[beat.topology].append(beat)
    rows: dict[str, dict[str, Any]] = {}
    for name, group in by_topology.items():
        group.sort(key=lambda b: b.time)
        newest: dict[str, Beat] = {}
        for beat in group:
            newest[beat.instance] = beat
        live = [
            b for b in newest.values() if now_ms - b.time <= max(3 * b.interval_ms, LIVE_FLOOR_MS)
        ]
        partitions = {(p["topic"], p["partition"]): p for b in live for p in b.partitions}
        state = _worst(b.state for b in live) if live else "down"
        lags = [p["lag"] for p in partitions.values() if p.get("lag") is not None]
        watermarks = [p["watermark"] for p in partitions.values() if p.get("watermark") is not None]
        stalenesses = [
            p["staleness_ms"] for p in partitions.values() if p.get("staleness_ms") is not None
        ]
        act = activity.get(name, Activity())
        commits = [b.last_commit for b in live if b.last_commit is not None]
        if act.last_commit is not None:
            commits.append(act.last_commit)
        latest = group[-1]
        history: dict[int, str] = {}
        for beat in group:
            slot = beat.time - beat.time % HISTORY_SLOT_MS
            history[slot] = _worst([history.get(slot, "ok"), beat.state])
        rows[name] = {
            "state": state,
            "instances": sorted(b.instance for b in live),
            "versions": sorted({b.version for b in live} or {latest.version}),
            "fingerprints": sorted({b.fingerprint for b in live} or {latest.fingerprint}),
            "ready": bool(live) and all(b.ready is not False for b in live),
            "lag": sum(lags) if lags else None,
            "watermark": min(watermarks) if watermarks else None,
            "staleness_ms": max(stalenesses) if stalenesses else None,
            "dead_letters_last_hour": act.dead_letters,
            "late_last_hour": act.late,
            "last_commit": max(commits) if commits else None,
            "last_heartbeat": latest.time,
            "sources": sorted({t for b in group for t in b.sources} | act.inputs),
            "sinks": sorted({b.sink for b in group if b.sink} | act.outputs),
            "dead_letter_topic": latest.dead_letter_topic,
            "history": sorted(history.items()),
        }
    writers: dict[str, set[str]] = defaultdict(set)
    for name, row in rows.items():
        for topic in row["sinks"]:
            writers[topic].add(name)
    upstreams = {
        name: sorted({w for t in row["sources"] for w in writers.get(t, ()) if w != name})
        for name, row in rows.items()
    }
    states = {name: row["state"] for name, row in rows.items()}
    out = []
    for name in sorted(rows):
        if only and not any(fnmatch.fnmatchcase(name, pattern) for pattern in only):
            continue
        row = rows[name]
        own = row.pop("state")
        causes = root_causes(name, states, upstreams) if own != "ok" else []
        out.append(
            TopologyStatus(
                name=name,
                state=own,
                upstream=causes,
                own_state=own,
                upstreams=upstreams[name],
                **row,
            )
        )
    return out


def exit_code(rows: list[TopologyStatus]) -> int:
    """0 when every topology is `ok`, 1 otherwise."""
    return 0 if all(r.state == "ok" for r in rows) else 1


def graph_edges(rows: list[TopologyStatus]) -> list[tuple[str, str]]:
    """(upstream, downstream) pairs among `rows`."""
    names = {r.name for r in rows}
    return sorted((u, r.name) for r in rows for u in r.upstreams if u in names)


# --- reading the topics ---------------------------------------------------------------------


def _documents(messages: Iterable[Message]) -> Iterator[dict[str, Any]]:
    for msg in messages:
        try:
            document = json.loads(msg.value() or b"")
        except ValueError:
            continue
        if isinstance(document, dict):
            yield document


def read_status(
    connection: Connection,
    since_ms: int = DEFAULT_SINCE_MS,
    only: list[str] | None = None,
    now_ms: int | None = None,
) -> list[TopologyStatus]:
    """`summarize` over the heartbeats and lineage events of the last `since_ms`."""
    now = now_ms if now_ms is not None else int(time.time() * 1000)
    consumer = scan_consumer(connection, f"streamline-status-{uuid.uuid4().hex[:8]}")
    try:
        beats = [
            b
            for d in _documents(scan_since(consumer, HEARTBEATS_TOPIC, now - since_ms))
            if (b := parse_beat(d)) is not None
        ]
        events = _documents(scan_since(consumer, LINEAGE_TOPIC, now - since_ms))
        activity = lineage_activity(events)
    finally:
        consumer.close()
    return summarize(beats, activity, now, only)
