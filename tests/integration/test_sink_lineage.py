"""Lineage events name the file and webhook outputs too: which files (path, records, input
range) and which webhook (URL, acknowledged records) each committed transaction wrote."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

from streamline.kafka.admin import create_topics
from streamline.kafka.connection import Connection
from tests.helpers import read_all, run_cli
from tests.support.harness import ORDER_CODEC, process_env, produce_orders
from tests.support.webhook_receiver import Receiver

TOPOLOGY = """\
apiVersion: streamline/v1
name: {name}
version: "1"
sources:
  - {{name: orders, topic: {source}, schema: com.example.Order, event_time: created_at,
     watermark: {{max_out_of_orderness: 5s}}}}
stages:
  - route:
      - when: "country == 'DE'"
        to: lake
      - otherwise: notify
sinks:
  lake:
    schema: com.example.Order
    files: {{path: {path}, format: jsonl, roll: {{every: 1s}}}}
  notify:
    schema: com.example.Order
    webhook: {{url: {url}, batch: 7}}
"""


def test_lineage_events_list_the_files_and_webhook_records_each_transaction_wrote(
    kafka: Connection, unique: str, tmp_path: Path
) -> None:
    name, source = f"sinklin-{unique}", f"sinklin-orders-{unique}"
    lake = tmp_path / "lake"
    receiver = Receiver()
    path = tmp_path / f"{name}.yaml"
    path.write_text(TOPOLOGY.format(name=name, source=source, path=lake, url=receiver.url))
    create_topics(kafka, {source: (2, {}), f"{name}.dlq": (2, {})})
    create_topics(kafka, {"streamline.lineage": (3, {}), "streamline.heartbeats": (1, {})})
    produce_orders(kafka, source, 90)  # 30 in DE
    codec = ORDER_CODEC
    try:
        done = run_cli(
            "run", str(path), "--until-caught-up", "--max-wait", "60s", "--metrics-port", "0",
            "--state-dir", str(tmp_path / "state"), env=process_env(kafka),
        )  # fmt: skip
    finally:
        receiver.close()
    assert done.returncode == 0, done.stderr[-3000:]

    events = [
        json.loads(m.value())
        for m in read_all(kafka, "streamline.lineage", timeout=30)
        if m.key() == name.encode()
    ]
    files: list[dict[str, Any]] = []
    hooks: list[dict[str, Any]] = []
    for event in events:
        for dataset in event["outputs"]:
            if "streamline_file" in dataset["facets"]:
                assert dataset["namespace"] == "file"
                files.append({"name": dataset["name"], **dataset["facets"]["streamline_file"]})
            if "streamline_webhook" in dataset["facets"]:
                assert dataset["namespace"] == f"http://127.0.0.1:{receiver.port}"
                assert dataset["name"] == "/hook"
                hooks.append(dataset["facets"]["streamline_webhook"])

    # every final file is named once, with its record count and the input range it holds
    on_disk = sorted(str(p.absolute()) for p in lake.rglob("part-*"))
    assert sorted(f["name"] for f in files) == on_disk and on_disk
    by_offset = {}
    for m in read_all(kafka, source, timeout=30):
        by_offset[(m.partition(), m.offset())] = codec.decode(m.value())
    for f in files:
        assert (f["sink"], f["format"]) == ("lake", "jsonl")
        rows = [json.loads(line) for line in Path(f["name"]).read_text().splitlines()]
        assert len(rows) == f["records"]
        span = f["input"]
        assert span["topic"] == source
        held = [
            by_offset[(span["partition"], o)]["order_id"]
            for o in range(span["first"], span["last"] + 1)
            if by_offset[(span["partition"], o)]["country"] == "DE"
        ]
        assert [r["order_id"] for r in rows] == held
    assert sum(f["records"] for f in files) == 30

    # the webhook: its URL and the records it acknowledged, 60 in all, as the receiver got
    assert {(h["sink"], h["url"]) for h in hooks} == {("notify", receiver.url)}
    assert sum(h["records"] for h in hooks) == 60 == len({k for k, _ in receiver.received})
