"""Freshness heartbeats: how far event time has progressed per partition, and the SLA posture.

Every `heartbeat_interval` each instance publishes one JSON document to
`streamline.heartbeats` (outside transactions) describing the source partitions it
owns. Staleness is wall-clock time minus the partition's watermark; the status is
`ok`, `late` (beyond `max_staleness`) or `breached` (beyond `breach_after`).
"""

from __future__ import annotations

import json
from collections.abc import Mapping
from dataclasses import asdict, dataclass
from typing import Any, Literal

from streamline.topology.resources import HEARTBEATS_TOPIC as HEARTBEATS_TOPIC

Status = Literal["ok", "late", "breached"]


def sla_status(staleness_ms: int | None, max_staleness_ms: int, breach_after_ms: int) -> Status:
    """The SLA status for a staleness; a partition without any event time yet is `late`."""
    if staleness_ms is None or staleness_ms > breach_after_ms:
        return "breached" if staleness_ms is not None else "late"
    if staleness_ms > max_staleness_ms:
        return "late"
    return "ok"


@dataclass(frozen=True)
class PartitionFreshness:
    """What a heartbeat says about one source partition."""

    topic: str
    partition: int
    watermark: int | None
    last_event_time: int | None
    committed_offset: int | None
    end_offset: int | None
    lag: int | None
    staleness_ms: int | None
    status: Status


def partition_freshness(
    topic: str,
    partition: int,
    watermark: int | None,
    last_event_time: int | None,
    committed: int | None,
    end: int | None,
    wall_ms: int,
    max_staleness_ms: int,
    breach_after_ms: int,
) -> PartitionFreshness:
    staleness = wall_ms - watermark if watermark is not None else None
    lag = end - committed if (end is not None and end >= 0 and committed is not None) else None
    return PartitionFreshness(
        topic=topic,
        partition=partition,
        watermark=watermark,
        last_event_time=last_event_time,
        committed_offset=committed,
        end_offset=end if end is not None and end >= 0 else None,
        lag=lag,
        staleness_ms=staleness,
        status=sla_status(staleness, max_staleness_ms, breach_after_ms),
    )


def heartbeat(
    topology: str,
    version: str,
    fingerprint: str,
    instance: str,
    wall_ms: int,
    partitions: list[PartitionFreshness],
    details: Mapping[str, Any] | None = None,
) -> bytes:
    """The JSON document of one heartbeat.

    `details` adds what `streamline status` reads besides freshness: `ready`,
    `last_commit` (epoch ms), `sla` (the freshness settings, ms) and `topics` (`sources`,
    `sink`, `dead_letters`), from which it draws the dependency graph.
    """
    document: dict[str, Any] = {
        "topology": topology,
        "version": version,
        "fingerprint": fingerprint,
        "instance": instance,
        "time": wall_ms,
        "partitions": [asdict(p) for p in partitions],
    }
    if details:
        document.update(details)
    return json.dumps(document, separators=(",", ":")).encode()
