"""Lineage: one OpenLineage RunEvent per committed transaction, on `streamline.lineage`.

The event names the topology as the job (version and fingerprint as a facet), the
consumed source partitions with their offset ranges as inputs, and the produced
partitions (sink, dead letters, late and retry records) with their offset ranges as
outputs. It is written inside the transaction it describes, so a reader with
read_committed never sees the event of an aborted transaction.

Outputs that are not Kafka topics are datasets named as OpenLineage names them: a file
sink's file is namespace `file`, name its absolute path (`streamline_file` facet: the
sink, format, record count and the input range it holds); a webhook is namespace
`<scheme>://<host>[:port]`, name the URL's path (`streamline_webhook` facet: the sink, the
URL without credentials or query, and how many records the receiver acknowledged).
"""

from __future__ import annotations

import json
import uuid
from collections.abc import Iterable, Mapping
from datetime import UTC, datetime
from typing import Any
from urllib.parse import urlsplit

from streamline.topology.resources import LINEAGE_TOPIC as LINEAGE_TOPIC

PRODUCER = "https://github.com/streamline-io/streamline"
SCHEMA_URL = "https://openlineage.io/spec/2-0-2/OpenLineage.json#/$defs/RunEvent"
NAMESPACE = "streamline"
OFFSETS_FACET = "streamline_offsets"
COUNTS_FACET = "streamline_counts"
FILE_FACET = "streamline_file"
WEBHOOK_FACET = "streamline_webhook"

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


def file_dataset(
    sink: str, path: str, file_format: str, records: int, source: tuple[str, int, int, int]
) -> dict[str, Any]:
    """The dataset of one file a file sink writes: `source` is (topic, partition, first,
    last) of the input records it holds."""
    topic, partition, first, last = source
    facet = {
        "_producer": PRODUCER,
        "_schemaURL": SCHEMA_URL,
        "sink": sink,
        "format": file_format,
        "records": records,
        "input": {"topic": topic, "partition": partition, "first": first, "last": last},
    }
    return {"namespace": "file", "name": path, "facets": {FILE_FACET: facet}}


def webhook_dataset(sink: str, url: str, records: int) -> dict[str, Any]:
    """The dataset of a webhook sink's endpoint: `records` acknowledged by the receiver."""
    parts = urlsplit(url)
    host = parts.hostname or ""
    if parts.port is not None:
        host = f"{host}:{parts.port}"
    path = parts.path or "/"
    facet = {
        "_producer": PRODUCER,
        "_schemaURL": SCHEMA_URL,
        "sink": sink,
        "url": f"{parts.scheme}://{host}{path}",
        "records": records,
    }
    return {"namespace": f"{parts.scheme}://{host}", "name": path, "facets": {WEBHOOK_FACET: facet}}


def run_event(
    topology: str,
    version: str,
    fingerprint: str,
    transactional_id: str,
    kafka: str,
    inputs: Ranges,
    outputs: Ranges,
    now: datetime | None = None,
    counts: Mapping[str, Any] | None = None,
    sink_outputs: list[dict[str, Any]] | None = None,
) -> bytes:
    """The JSON RunEvent of one transaction; `sink_outputs` (`file_dataset`,
    `webhook_dataset`) follow the Kafka outputs.

    `counts` (the `streamline_counts` run facet) holds what the transaction did with its
    inputs: `records`, `outputs`, `late`, `retries`, `drops` by reason and
    `dead_letters` by error type; `streamline reconcile` balances them.
    """
    run_facets: dict[str, Any] = {
        "streamline_transaction": {
            "_producer": PRODUCER,
            "_schemaURL": SCHEMA_URL,
            "transactional_id": transactional_id,
        }
    }
    if counts is not None:
        run_facets[COUNTS_FACET] = {"_producer": PRODUCER, "_schemaURL": SCHEMA_URL, **counts}
    event = {
        "eventType": "COMPLETE",
        "eventTime": (now or datetime.now(UTC)).isoformat(timespec="milliseconds"),
        "producer": PRODUCER,
        "schemaURL": SCHEMA_URL,
        "run": {
            "runId": str(uuid.uuid4()),
            "facets": run_facets,
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
        "outputs": _datasets(kafka, outputs) + (sink_outputs or []),
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
