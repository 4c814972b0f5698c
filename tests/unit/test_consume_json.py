"""`consume` prints the JSON topics (heartbeats, lineage, audit) as JSON, not base64."""

from __future__ import annotations

import json

import pytest
from confluent_kafka import Message

from streamline.ops.consume import RecordPrinter
from streamline.serde import SchemaStore
from tests.helpers import ROOT


@pytest.mark.parametrize("store", [None, SchemaStore(ROOT / "schemas")], ids=["no-store", "store"])
@pytest.mark.parametrize(
    "topic", ["streamline.heartbeats", "streamline.lineage", "streamline.audit"]
)
def test_json_topics_print_their_document(topic: str, store: SchemaStore | None) -> None:
    document = {"topology": "t", "partitions": [{"topic": "in", "lag": 0}], "note": "é"}
    msg = Message(
        topic=topic, partition=0, offset=7, key=b"t",
        value=json.dumps(document).encode(), timestamp=(1, 1_700_000_000_000),
    )  # fmt: skip
    printed = RecordPrinter(store).to_json(msg)
    assert printed["value"] == document
    assert "value_base64" not in printed and "note" not in printed
    assert json.loads(json.dumps(printed))["value"] == document


def test_bytes_on_a_json_topic_that_are_not_json_still_print_as_base64() -> None:
    msg = Message(topic="streamline.lineage", partition=0, offset=1, value=b"\xff\x00")
    printed = RecordPrinter(None).to_json(msg)
    assert printed["value_base64"] == "/wA=" and "value" not in printed


def test_other_topics_are_unchanged() -> None:
    msg = Message(topic="orders", partition=0, offset=1, value=b'{"a": 1}')
    printed = RecordPrinter(None).to_json(msg)
    assert "value_base64" in printed
