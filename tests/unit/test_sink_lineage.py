"""The lineage datasets of file and webhook outputs, named as OpenLineage names them."""

from __future__ import annotations

import json
from datetime import UTC, datetime

from streamline.observability.lineage import file_dataset, run_event, webhook_dataset


def test_a_webhook_dataset_keeps_no_credentials_or_query() -> None:
    dataset = webhook_dataset("notify", "https://svc:s3cret@hooks.example.com:8443/o?token=t", 7)
    assert dataset == {
        "namespace": "https://hooks.example.com:8443",
        "name": "/o",
        "facets": {
            "streamline_webhook": {
                "_producer": "https://github.com/streamline-io/streamline",
                "_schemaURL": "https://openlineage.io/spec/2-0-2/OpenLineage.json#/$defs/RunEvent",
                "sink": "notify",
                "url": "https://hooks.example.com:8443/o",
                "records": 7,
            }
        },
    }
    assert webhook_dataset("n", "http://h", 1)["name"] == "/"


def test_file_and_webhook_outputs_follow_the_kafka_outputs() -> None:
    lake = file_dataset("lake", "/data/part-o-0-1-3.jsonl", "jsonl", 2, ("o", 0, 1, 3))
    hook = webhook_dataset("notify", "http://127.0.0.1:9/hook", 4)
    event = json.loads(
        run_event(
            "t", "1", "f", "t-a", "k:9092", {("o", 0): (1, 3)}, {("t.dlq", 1): (5, 5)},
            now=datetime(2026, 1, 1, tzinfo=UTC), sink_outputs=[lake, hook],
        )
    )  # fmt: skip
    assert [(d["namespace"], d["name"]) for d in event["outputs"]] == [
        ("kafka://k:9092", "t.dlq"),
        ("file", "/data/part-o-0-1-3.jsonl"),
        ("http://127.0.0.1:9", "/hook"),
    ]
    assert event["outputs"][1]["facets"]["streamline_file"]["input"] == {
        "topic": "o", "partition": 0, "first": 1, "last": 3,
    }  # fmt: skip
