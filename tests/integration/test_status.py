"""`streamline status` and its page over three chained topologies A -> B -> C.

The chain runs on the test broker, whose heartbeats topic holds every other test's
topologies too: each `status` call names the chain's topologies (`*-<suffix>`), which is
also how an operator looks at one group of pipelines among many. A's input is stopped (A
late; B and C `late (upstream: A)`, exit 1), then resumed (all ok, exit 0). The page is
checked in headless Chromium (Debian's `chromium`): its DOM and a screenshot.
"""

from __future__ import annotations

import json
import os
import re
import shutil
import subprocess
import sys
import threading
import time
import uuid
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest
from confluent_kafka import Producer

from streamline.kafka.admin import create_topics
from streamline.kafka.connection import Connection
from streamline.ops.status import read_status
from streamline.ops.topics import topology_topics
from streamline.serde import AvroCodec, SchemaStore
from streamline.topology import load_topology
from tests.helpers import run_cli
from tests.support.harness import SCHEMAS, StreamlineProcess, await_started, process_env

pytestmark = pytest.mark.slow

TOPOLOGY = """\
apiVersion: streamline/v1
name: {name}
version: "1"
sources:
  - name: orders
    topic: {source}
    schema: com.example.Order
    event_time: created_at
    watermark: {{max_out_of_orderness: 0s}}
stages:
  - validate:
      rules:
        - name: amount_positive
          expr: "amount > 0.0"
      on_failure: dead_letter
  - filter: "status == 'PAID'"
sink:
  topic: {sink}
  schema: com.example.Order
commit_interval: 100ms
freshness:
  max_staleness: 4s
  breach_after: 10m
  heartbeat_interval: 500ms
"""
SUFFIX = uuid.uuid4().hex[:8]
A, B, C = (f"{n}-{SUFFIX}" for n in "abc")
CHAIN = [
    (A, f"in-{SUFFIX}", f"ab-{SUFFIX}"),
    (B, f"ab-{SUFFIX}", f"bc-{SUFFIX}"),
    (C, f"bc-{SUFFIX}", f"out-{SUFFIX}"),
]
ONLY = f"*-{SUFFIX}"
LATE = {A: "late", B: f"late (upstream: {A})", C: f"late (upstream: {A})"}
OK = {A: "ok", B: "ok", C: "ok"}


class Feeder(threading.Thread):
    """Fresh orders to A's input every 100 ms while `running` is set."""

    def __init__(self, connection: Connection, topic: str) -> None:
        super().__init__(daemon=True)
        store = SchemaStore(SCHEMAS)
        self.codec = AvroCodec(store, store.get("com.example.Order"))
        self.producer = Producer(connection.config())
        self.topic = topic
        self.running = threading.Event()
        self.done = threading.Event()
        self.sent = 0
        self.bad: list[str] = []

    def send_bad(self, order_id: str) -> None:
        """An order breaking `amount_positive`: a dead letter of A, decodable."""
        record = {
            "order_id": order_id, "customer_id": "c", "amount": -1.0, "currency": "EUR",
            "status": "PAID", "country": "DE", "created_at": int(time.time() * 1000),
        }  # fmt: skip
        self.producer.produce(self.topic, value=self.codec.encode(record))
        self.producer.flush(5)
        self.bad.append(order_id)

    def run(self) -> None:
        while not self.done.is_set():
            if self.running.is_set():
                record = {
                    "order_id": f"o-{self.sent}", "customer_id": "c", "amount": 1.0,
                    "currency": "EUR", "status": "PAID", "country": "DE",
                    "created_at": int(time.time() * 1000),
                }  # fmt: skip
                self.producer.produce(self.topic, value=self.codec.encode(record))
                self.producer.flush(5)
                self.sent += 1
            time.sleep(0.1)


@dataclass
class Chain:
    connection: Connection
    env: dict[str, str]
    feeder: Feeder
    procs: list[StreamlineProcess]

    def log_of(self, name: str) -> str:
        return next(p for p in self.procs if p.instance_id == name).log()

    def status(self, *args: str) -> tuple[int, dict[str, Any]]:
        done = run_cli("status", ONLY, "--json", *args, env=self.env, timeout=60)
        assert done.returncode in (0, 1), done.stderr
        return done.returncode, json.loads(done.stdout)

    def await_status(self, want: dict[str, str], timeout: float = 90) -> dict[str, Any]:
        """Polls the status (in process: fast) until each topology's label is as wanted, then
        returns what `status --json` says, which must agree, with its exit status."""
        deadline = time.monotonic() + timeout
        labels: dict[str, str] = {}
        while time.monotonic() < deadline:
            labels = {r.name: r.label for r in read_status(self.connection, only=[ONLY])}
            if labels == want:
                code, document = self.status()
                assert {t["name"]: t["label"] for t in document["topologies"]} == want
                assert code == (0 if all(v == "ok" for v in want.values()) else 1)
                return document
            time.sleep(0.3)
        raise AssertionError(f"status never became {want}: last {labels}")


@pytest.fixture(scope="module")
def chain(kafka: Connection, tmp_path_factory: pytest.TempPathFactory) -> Iterator[Chain]:
    tmp = tmp_path_factory.mktemp("status")
    env = process_env(kafka)
    procs = []
    feeder = Feeder(kafka, CHAIN[0][1])
    try:
        for name, source, sink in CHAIN:
            path = tmp / f"{name}.yaml"
            path.write_text(TOPOLOGY.format(name=name, source=source, sink=sink))
            create_topics(kafka, topology_topics(load_topology(path), 1))
        for name, _source, _sink in CHAIN:
            own = env | {"STREAMLINE_LOG_FORMAT": "json"} if name == C else env
            procs.append(StreamlineProcess(tmp / f"{name}.yaml", name, own, tmp).start())
        for proc in procs:
            await_started(proc)
        feeder.start()
        feeder.running.set()
        yield Chain(kafka, env, feeder, procs)
    finally:
        feeder.done.set()
        for proc in procs:
            proc.stop()


def test_status_names_the_late_upstream_and_exits_by_state(chain: Chain) -> None:
    ok = chain.await_status(OK)
    rows = {t["name"]: t for t in ok["topologies"]}
    assert ok["ok"] is True
    assert rows[B]["upstreams"] == [A] and rows[C]["upstreams"] == [B]
    for name, source, sink in CHAIN:
        row = rows[name]
        assert row["instances"] == [name] and row["ready"] is True
        assert row["versions"] == ["1"] and len(row["fingerprints"][0]) == 64
        assert row["sources"] == [source] and sink in row["sinks"]
        assert row["lag"] is not None and row["lag"] < 50
        assert row["watermark"] is not None and row["last_commit"] is not None
        assert row["late_last_hour"] == 0
        assert row["dead_letters_last_hour"] == (len(chain.feeder.bad) if name == A else 0)

    chain.feeder.running.clear()
    late = chain.await_status(LATE)
    rows = {t["name"]: t for t in late["topologies"]}
    assert late["ok"] is False
    assert rows[A]["upstream"] == [] and rows[C]["upstream"] == [A]
    assert all(r["state"] == "late" and r["staleness_ms"] > 4000 for r in rows.values())
    table = run_cli("status", ONLY, env=chain.env, timeout=60)
    assert table.returncode == 1
    assert table.stdout.count(f"late (upstream: {A})") == 2, table.stdout
    only = run_cli("status", C, env=chain.env, timeout=60)  # one row, its cause still named
    assert only.returncode == 1
    assert f"late (upstream: {A})" in only.stdout and f"│ {A} " not in only.stdout
    watch = subprocess.Popen(
        [sys.executable, "-m", "streamline", "status", ONLY, "--watch", "--json", "--interval", "1s"],
        env=chain.env, stdout=subprocess.PIPE, text=True,
    )  # fmt: skip
    try:
        assert watch.stdout is not None
        documents = [json.loads(watch.stdout.readline()) for _ in range(2)]  # a refresh each
    finally:
        watch.terminate()
        watch.wait(10)
    for document in documents:
        assert {t["name"]: t["label"] for t in document["topologies"]} == LATE

    chain.feeder.running.set()
    chain.await_status(OK)
    assert run_cli("status", ONLY, env=chain.env, timeout=60).returncode == 0
    # C logs JSON lines (STREAMLINE_LOG_FORMAT=json): every line of its log is one object
    logged = [json.loads(line) for line in chain.log_of(C).splitlines() if line.strip()]
    assert any("assigned" in r["message"] for r in logged)
    assert all({"time", "level", "logger", "message"} <= set(r) for r in logged)


def chromium() -> str | None:
    found = shutil.which("chromium") or shutil.which("chromium-browser")
    return found


CHROMIUM_FLAGS = [
    "--headless", "--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run",
    "--disable-background-networking", "--disable-component-update", "--disable-sync",
]  # fmt: skip


def browse(url: str, tmp: Path, *args: str) -> str:
    """Chromium headless on `url`; a new profile each time (a profile still held by the last
    run's exiting processes would make this one hand over to it and do nothing)."""
    profile = tmp / f"profile-{uuid.uuid4().hex[:8]}"
    done = subprocess.run(
        [
            chromium() or "chromium",
            *CHROMIUM_FLAGS,
            f"--user-data-dir={profile}",
            *args,
            url,
        ],
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert done.returncode == 0, done.stderr[-2000:]
    return done.stdout


def screenshot(url: str, shot: Path) -> Path:
    """Chromium's screenshot of `url` at 1400x600. Chromium can exit 0 before the file is
    there (or without writing it, seen once in a loaded run): it is awaited, and taken
    again once if it never comes."""
    for _attempt in range(2):
        browse(url, shot.parent, f"--screenshot={shot}", "--window-size=1400,600")
        deadline = time.monotonic() + 10
        while time.monotonic() < deadline:
            if shot.exists() and shot.stat().st_size > 0:
                return shot
            time.sleep(0.1)
    return shot


def await_page(log: Path, timeout: float = 30) -> int:
    """The port `status --serve --port 0` bound (its line names it), once the page answers."""
    import httpx

    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        serving = re.search(r"status page on http://127\.0\.0\.1:(\d+)/", log.read_text())
        try:
            if serving is not None:
                port = int(serving.group(1))
                if httpx.get(f"http://127.0.0.1:{port}/status.json", timeout=5).status_code == 200:
                    return port
        except httpx.HTTPError:
            pass
        time.sleep(0.3)
    raise AssertionError(f"the status page did not answer:\n{log.read_text()[-3000:]}")


@pytest.mark.skipif(chromium() is None, reason="no Chromium: apt-get install -y chromium")
def test_status_page_in_headless_chromium(chain: Chain, tmp_path: Path) -> None:
    chain.feeder.send_bad("bad-1")
    chain.feeder.send_bad("bad-2")
    deadline = time.monotonic() + 60
    while time.monotonic() < deadline:  # both dead letters committed and counted
        rows = {r.name: r for r in read_status(chain.connection, only=[ONLY])}
        if rows[A].dead_letters_last_hour == len(chain.feeder.bad):
            break
        time.sleep(0.3)
    chain.feeder.running.clear()
    chain.await_status(LATE)
    server = subprocess.Popen(
        [
            sys.executable,
            "-m",
            "streamline",
            "status",
            ONLY,
            "--serve",
            "--port",
            "0",  # the page's line names the port it bound
            "--interval",
            "2s",
        ],
        env={**chain.env, "PATH": os.environ["PATH"]},
        stdout=(tmp_path / "serve.log").open("wb"),
        stderr=subprocess.STDOUT,
    )
    try:
        port = await_page(tmp_path / "serve.log")
        dom = browse(f"http://127.0.0.1:{port}/", tmp_path, "--dump-dom")
        rows = dict(re.findall(r'<tr data-topology="([\w-]+)" data-state="(\w+)"', dom))
        assert rows == {A: "late", B: "late", C: "late"}
        assert dom.count(f"late (upstream: {A})") == 2
        nodes = re.findall(r'<g class="node" data-topology="([\w-]+)" data-state="(\w+)"', dom)
        assert sorted(nodes) == [(A, "late"), (B, "late"), (C, "late")]
        edges = re.findall(r'class="edge" data-from="([\w-]+)" data-to="([\w-]+)"', dom)
        assert sorted(edges) == [(A, B), (B, C)]
        assert 'http-equiv="refresh"' in dom
        assert not re.search(r"<(script|link|img|iframe)\b", dom)  # nothing loads from anywhere
        assert re.findall(r'class="history" data-topology="([\w-]+)"><span', dom) == [A, B, C]
        assert f'<a href="/dead-letters/{A}">{len(chain.feeder.bad)}</a>' in dom
        letters = browse(f"http://127.0.0.1:{port}/dead-letters/{A}", tmp_path, "--dump-dom")
        assert f"Dead letters of {A}" in letters
        shown = re.findall(r'(?:"|&quot;)order_id(?:"|&quot;): (?:"|&quot;)(bad-\d+)', letters)
        assert shown == list(reversed(chain.feeder.bad))  # decoded, newest first
        assert letters.count("<td>validation</td>") == len(chain.feeder.bad)
        shot = screenshot(f"http://127.0.0.1:{port}/", tmp_path / "status.png")
        assert shot.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
        assert shot.stat().st_size > 10_000
    finally:
        server.terminate()
        server.wait(10)
        chain.feeder.running.set()
