"""`streamline lag` shows a partition its group never committed as Kafka's own tool does."""

from __future__ import annotations

import os
import re
import time
from pathlib import Path

from confluent_kafka import Consumer, Producer, TopicPartition

from streamline.cli.render import lag_table
from streamline.kafka.admin import create_topics
from streamline.kafka.connection import Connection
from streamline.ops.lag import PartitionLag
from tests.helpers import run_cli
from tests.integration.test_replay import kafka_tool
from tests.support.harness import SCHEMAS

TOPOLOGY = """\
apiVersion: streamline/v1
name: lagless-{unique}
version: "1"
sources:
  - name: orders
    topic: orders-{unique}
    schema: com.example.Order
    event_time: created_at
    watermark: {{max_out_of_orderness: 0s}}
sink:
  topic: out-{unique}
  schema: com.example.Order
"""


def test_a_partition_without_a_committed_offset_has_no_lag_in_the_total() -> None:
    rows = [PartitionLag("t", 0, 3, 5), PartitionLag("t", 1, None, 5)]
    assert [r.lag for r in rows] == [2, None]
    from rich.console import Console

    console = Console(width=200, record=True)
    console.print(lag_table("g", rows))
    text = console.export_text()
    assert re.search(r"t\s*│\s*1\s*│\s*-\s*│\s*5\s*│\s*-\s*│", text), text
    assert re.search(r"total\s*│\s*│\s*│\s*10\s*│\s*2\s*│", text), text


def test_lag_matches_kafka_consumer_groups_for_an_uncommitted_partition(
    kafka: Connection, unique: str, tmp_path: Path
) -> None:
    source = f"orders-{unique}"
    create_topics(kafka, {source: (2, {})})
    producer = Producer(kafka.config())
    for i in range(10):
        producer.produce(source, value=b"x", partition=i % 2)
    producer.flush(10)
    path = tmp_path / "t.yaml"
    path.write_text(TOPOLOGY.format(unique=unique))
    group = f"lagless-{unique}"
    member = Consumer(kafka.config(**{"group.id": group, "enable.auto.commit": False}))
    try:
        member.commit(offsets=[TopicPartition(source, 0, 3)], asynchronous=False)
        member.subscribe([source])  # an active member: Kafka's tool then lists partition 1
        deadline = time.monotonic() + 30
        while not member.assignment() and time.monotonic() < deadline:
            member.poll(0.2)
        described = kafka_tool(
            "--bootstrap-server", kafka.bootstrap_servers, "--describe", "--group", group
        )
        env = {**os.environ, "STREAMLINE_BOOTSTRAP_SERVERS": kafka.bootstrap_servers}
        ours = run_cli("lag", str(path), "--schemas", str(SCHEMAS), env=env)
    finally:
        member.close()
    assert ours.returncode == 0, ours.stderr
    theirs = {
        int(fields[2]): (fields[3], fields[4], fields[5])
        for fields in (line.split() for line in described.splitlines())
        if len(fields) >= 6 and fields[1] == source
    }
    assert theirs == {0: ("3", "5", "2"), 1: ("-", "5", "-")}
    for partition, (current, end, lag) in theirs.items():
        assert re.search(
            rf"{source}\s*│\s*{partition}\s*│\s*{current}\s*│\s*{end}\s*│\s*{lag}\s*│", ours.stdout
        ), ours.stdout
    assert re.search(r"total\s*│\s*│\s*│\s*10\s*│\s*2\s*│", ours.stdout), ours.stdout
