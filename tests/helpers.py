"""Helpers for tests that drive the `streamline` command and read topics back."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path
from typing import Any

from confluent_kafka import OFFSET_BEGINNING, Consumer, Message, TopicPartition

from streamline.kafka.connection import Connection

ROOT = Path(__file__).resolve().parent.parent
STREAMLINE = [sys.executable, "-m", "streamline"]


def run_cli(
    *args: str, env: dict[str, str] | None = None, stdin: str | None = None, timeout: float = 120
) -> subprocess.CompletedProcess[str]:
    """Runs `streamline ARGS` as a user would, from the repository root."""
    return subprocess.run(
        [*STREAMLINE, *args],
        cwd=ROOT,
        env=env if env is not None else dict(os.environ),
        input=stdin,
        capture_output=True,
        text=True,
        timeout=timeout,
    )


def read_all(
    connection: Connection,
    topic: str,
    isolation: str = "read_committed",
    timeout: float = 10.0,
    expected: int | None = None,
) -> list[Message]:
    """Every record of every partition of `topic` up to its current end."""
    consumer = Consumer(
        connection.config(
            **{
                "group.id": "test-reader",
                "enable.auto.commit": False,
                "isolation.level": isolation,
                "enable.partition.eof": True,
            },
            log_level=0,
        )
    )
    metadata = consumer.list_topics(topic, timeout=timeout)
    partitions = list(metadata.topics[topic].partitions)
    consumer.assign([TopicPartition(topic, p, OFFSET_BEGINNING) for p in partitions])
    out: list[Message] = []
    at_end: set[int] = set()
    import time

    deadline = time.monotonic() + timeout
    try:
        while time.monotonic() < deadline:
            if len(at_end) == len(partitions) and (expected is None or len(out) >= expected):
                break
            for msg in consumer.consume(500, timeout=0.2):
                if msg.error():
                    if msg.error().code() == -191:  # partition EOF
                        at_end.add(msg.partition())
                    continue
                at_end.discard(msg.partition())
                out.append(msg)
    finally:
        consumer.close()
    return out


def json_lines(text: str) -> list[dict[str, Any]]:
    return [json.loads(line) for line in text.splitlines() if line.strip()]
