"""Lineage: one OpenLineage RunEvent per committed transaction, on `streamline.lineage`.

The event names the topology as the job (version and fingerprint as a facet), the
consumed source partitions with their offset ranges as inputs, and the produced
partitions (sink, dead letters, late and retry records) with their offset ranges as
outputs. It is written inside the transaction it describes, so a reader with
read_committed never sees the event of an aborted transaction.
"""

from __future__ import annotations

import json
import uuid
from collections.abc import Iterable, Mapping
from datetime import UTC, datetime
from typing import Any

from streamline.topology.resources import LINEAGE_TOPIC as LINEAGE_TOPIC

PRODUCER = "https://github.com/streamline-io/streamline"
SCHEMA_URL = "https://openlineage.io/spec/2-0-2/OpenLineage.json#/$defs/RunEvent"
NAMESPACE = "streamline"
OFFSETS_FACET = "streamline_offsets"

Ranges = Mapping[tuple[str, int], tuple[int, int]]


def _datasets(kafka: str, ranges: Ranges) -> list[dict[str, Any]]:
    by_topic: dict[str, list[dict[str, int]]] = {}
    for (topic, partition), (first, last) in sorted(ranges.items()):
        by_topic.setdefault(topic, []).append(
            {"partition": partition, "first": first, "last": last}
        )
    return [
        {
            "namespace": f"kafka://{kafka}",
            "name": topic,
            "facets": {
                OFFSETS_FACET: {
                    "_producer": PRODUCER,
                    "_schemaURL": SCHEMA_URL,
                    "partitions": partitions,
                }
            },
        }
        for topic, partitions in by_topic.items()
    ]


def run_event(
    topology: str,
    version: str,
    fingerprint: str,
    transactional_id: str,
    kafka: str,
    inputs: Ranges,
    outputs: Ranges,
    now: datetime | None = None,
) -> bytes:
    """The JSON RunEvent of one transaction."""
    event = {
        "eventType": "COMPLETE",
        "eventTime": (now or datetime.now(UTC)).isoformat(timespec="milliseconds"),
        "producer": PRODUCER,
        "schemaURL": SCHEMA_URL,
        "run": {
            "runId": str(uuid.uuid4()),
            "facets": {
                "streamline_transaction": {
                    "_producer": PRODUCER,
                    "_schemaURL": SCHEMA_URL,
                    "transactional_id": transactional_id,
                }
            },
        },
        "job": {
            "namespace": NAMESPACE,
            "name": topology,
            "facets": {
                "streamline_topology": {
                    "_producer": PRODUCER,
                    "_schemaURL": SCHEMA_URL,
                    "version": version,
                    "fingerprint": fingerprint,
                }
            },
        },
        "inputs": _datasets(kafka, inputs),
        "outputs": _datasets(kafka, outputs),
    }
    return json.dumps(event, separators=(",", ":")).encode()


def ranges_of(datasets: Iterable[dict[str, Any]]) -> dict[tuple[str, int], tuple[int, int]]:
    """(topic, partition) -> (first, last) offsets of an event's inputs or outputs."""
    out: dict[tuple[str, int], tuple[int, int]] = {}
    for dataset in datasets:
        facet = dataset.get("facets", {}).get(OFFSETS_FACET, {})
        for p in facet.get("partitions", []):
            out[(dataset["name"], int(p["partition"]))] = (int(p["first"]), int(p["last"]))
    return out
