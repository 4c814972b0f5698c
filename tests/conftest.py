"""Shared fixtures: a real Apache Kafka broker for the session, and unique topic names."""

from __future__ import annotations

import os
import threading
import uuid
from collections.abc import Iterator
from pathlib import Path
from typing import Any

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


class _RegistryLaunch:
    """The session's Schema Registry, started in a thread as soon as collection shows a test
    needs it, so its JVM warms up while other tests run."""

    def __init__(self, data_dir: Path) -> None:
        from streamline.dev.broker import free_port
        from streamline.dev.registry import DevRegistry

        self.registry = DevRegistry(data_dir)
        self.port = free_port()
        self.info: Any = None
        self.error: BaseException | None = None
        self.thread = threading.Thread(target=self._start, daemon=True)
        self.thread.start()

    def _start(self) -> None:
        try:
            self.info = self.registry.start(self.port)
        except BaseException as exc:  # handed to the fixture
            self.error = exc

    def result(self) -> Any:
        self.thread.join()
        if self.error is not None:
            raise self.error
        return self.info


_registry_launch: _RegistryLaunch | None = None


def pytest_collection_finish(session: pytest.Session) -> None:
    global _registry_launch
    from streamline.dev.registry import find_java21

    if os.environ.get("PYTEST_XDIST_WORKER"):
        return  # every worker collects every test: the one that runs them starts it (fixture)
    wanted = any("schema_registry" in getattr(i, "fixturenames", ()) for i in session.items)
    if wanted and find_java21() is not None and _registry_launch is None:
        import tempfile

        _registry_launch = _RegistryLaunch(Path(tempfile.mkdtemp(prefix="streamline-registry-")))


def pytest_sessionfinish(session: pytest.Session) -> None:
    if _registry_launch is not None:
        import shutil

        _registry_launch.thread.join()
        _registry_launch.registry.stop()
        shutil.rmtree(_registry_launch.registry.data_dir, ignore_errors=True)


@pytest.fixture(scope="session")
def schema_registry() -> Any:
    """A real Schema Registry (Apicurio, in memory) for the session: its `RegistryInfo`.

    Skipped, saying why, only when no Java 21+ JDK is on the machine.
    """
    from streamline.dev.registry import find_java21

    if find_java21() is None:
        pytest.skip("no Java 21+ JDK found: the dev Schema Registry (Apicurio) needs one")
    global _registry_launch
    if _registry_launch is None:  # a parallel worker: started by its first test that needs it
        import tempfile

        _registry_launch = _RegistryLaunch(Path(tempfile.mkdtemp(prefix="streamline-registry-")))
    return _registry_launch.result()
