"""Shared fixtures: a real Apache Kafka broker for the session, and unique topic names."""

from __future__ import annotations

import os
import uuid
from collections.abc import Iterator
from pathlib import Path

import pytest

from streamline.kafka.connection import Connection

ROOT = Path(__file__).resolve().parent.parent
SCHEMAS = ROOT / "schemas"


@pytest.fixture(scope="session")
def kafka(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Connection]:
    """The broker tests run against: STREAMLINE_BOOTSTRAP_SERVERS, this checkout's dev broker, a
    streamline dev broker of another checkout on the default port, or a private new one."""
    address = os.environ.get("STREAMLINE_BOOTSTRAP_SERVERS")
    if address:
        yield Connection(address)
        return
    from streamline.dev.broker import DevBroker, default_port, dev_broker_on, free_port

    running = DevBroker(ROOT / ".streamline" / "broker").info() or dev_broker_on(default_port())
    if running is not None:
        yield Connection(running.bootstrap)
        return
    broker = DevBroker(tmp_path_factory.mktemp("kafka"))
    info = broker.start(free_port())
    try:
        yield Connection(info.bootstrap)
    finally:
        broker.stop()


@pytest.fixture
def bootstrap_env(kafka: Connection, monkeypatch: pytest.MonkeyPatch) -> dict[str, str]:
    """Environment for a `streamline` subprocess pointed at the test broker and example schemas."""
    monkeypatch.setenv("STREAMLINE_BOOTSTRAP_SERVERS", kafka.bootstrap_servers)
    monkeypatch.setenv("STREAMLINE_SCHEMAS", str(SCHEMAS))
    return dict(os.environ)


@pytest.fixture
def unique() -> str:
    """A short random suffix for topic and group names, so tests never share state."""
    return uuid.uuid4().hex[:10]


@pytest.fixture
def make_topic(kafka: Connection, unique: str):  # type: ignore[no-untyped-def]
    """Creates a fresh topic: make_topic("orders", partitions=3) -> "orders-<unique>"."""
    from streamline.kafka.admin import create_topics

    def make(prefix: str, partitions: int = 1, **configs: str) -> str:
        name = f"{prefix}-{unique}"
        create_topics(kafka, {name: (partitions, dict(configs))})
        return name

    return make
