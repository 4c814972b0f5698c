"""HTTP ingest throughput: concurrent clients POST batches to `streamline ingest http`.

    python -m bench.ingest                          # 100,000 events, 8 clients, batches of 500
    python -m bench.ingest --events 20000 --profile # and the server's cProfile top functions

The server runs as `streamline ingest http` in a subprocess against the broker at
STREAMLINE_BOOTSTRAP_SERVERS (else the dev broker); every request carries an
Idempotency-Key, as a careful client's would. Events/s is counted from the first request
to the last 200 answer (every record acknowledged by the broker in a committed
transaction); the topic is then read back (read_committed) to check that exactly the
events sent landed. The result goes to bench/results/ingest.json.
"""

from __future__ import annotations

import argparse
import json
import os
import pstats
import signal
import subprocess
import sys
import tempfile
import time
import uuid
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any

import httpx
from confluent_kafka import OFFSET_BEGINNING, Consumer, TopicPartition

from streamline.cli.connect import resolve_connection
from streamline.dev.broker import free_port
from streamline.kafka.admin import create_topics
from streamline.kafka.connection import Connection

ROOT = Path(__file__).resolve().parent.parent
RESULTS = ROOT / "bench" / "results" / "ingest.json"
GOAL_EVENTS_S = 20_000


def _bodies(events: int, batch: int) -> list[bytes]:
    base = [
        json.loads(line) for line in (ROOT / "examples" / "orders.jsonl").read_text().splitlines()
    ]
    bodies = []
    for start in range(0, events, batch):
        lines = [
            json.dumps(dict(base[i % len(base)], order_id=f"o-{i:08d}"))
            for i in range(start, min(events, start + batch))
        ]
        bodies.append(("\n".join(lines) + "\n").encode())
    return bodies


def _count(connection: Connection, topic: str, expected: int, timeout: float = 120) -> int:
    consumer = Consumer(
        connection.config(
            **{
                "group.id": f"bench-ingest-{uuid.uuid4().hex[:6]}",
                "enable.auto.commit": False,
                "isolation.level": "read_committed",
                "enable.partition.eof": True,
            },
            log_level=0,
        )
    )
    partitions = consumer.list_topics(topic, timeout=10).topics[topic].partitions
    consumer.assign([TopicPartition(topic, p, OFFSET_BEGINNING) for p in partitions])
    seen = 0
    at_end: set[int | None] = set()
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline and (len(at_end) < len(partitions) or seen < expected):
        for msg in consumer.consume(5000, timeout=0.5):
            if msg.error():
                at_end.add(msg.partition())
            else:
                seen += 1
    consumer.close()
    return seen


def _serve(
    connection: Connection, topic: str, port: int, profile: Path | None
) -> subprocess.Popen[bytes]:
    prefix = [sys.executable] + (["-m", "cProfile", "-o", str(profile)] if profile else [])
    command = [
        *prefix,
        "-m",
        "streamline",
        "ingest",
        "http",
        "--topic",
        topic,
        "--schema",
        "com.example.Order",
        "--key-field",
        "customer_id",
        "--port",
        str(port),
        "--instance-id",
        f"bench-{uuid.uuid4().hex[:6]}",
    ]
    env = {
        **os.environ,
        "STREAMLINE_BOOTSTRAP_SERVERS": connection.bootstrap_servers,
        "STREAMLINE_SCHEMAS": str(ROOT / "schemas"),
        "PYTHONPATH": str(ROOT / "src"),
    }
    server = subprocess.Popen(command, cwd=ROOT, env=env, stderr=subprocess.DEVNULL)
    deadline = time.monotonic() + 90
    while time.monotonic() < deadline:
        try:
            if httpx.get(f"http://127.0.0.1:{port}/readyz", timeout=1).status_code == 200:
                return server
        except httpx.HTTPError:
            pass
        time.sleep(0.2)
    server.kill()
    raise SystemExit("the ingest server did not become ready within 90 s")


def run(events: int, clients: int, batch: int, profile: bool) -> dict[str, Any]:
    connection = resolve_connection()
    topic = f"bench-ingest-{uuid.uuid4().hex[:8]}"
    create_topics(connection, {topic: (3, {})})
    bodies = _bodies(events, batch)
    port = free_port()
    profile_file = Path(tempfile.mkdtemp()) / "ingest.prof" if profile else None
    server = _serve(connection, topic, port, profile_file)
    url = f"http://127.0.0.1:{port}/v1/topics/{topic}"
    headers = {"Content-Type": "application/x-ndjson"}

    def post(client: httpx.Client, number: int) -> None:
        while True:
            answer = client.post(
                url,
                content=bodies[number],
                timeout=60,
                headers={**headers, "Idempotency-Key": f"b-{number}"},
            )
            if answer.status_code == 200:
                return
            if answer.status_code != 503:
                raise SystemExit(f"request {number}: {answer.status_code} {answer.text[:300]}")
            time.sleep(float(answer.headers.get("Retry-After", "1")))

    def client_loop(index: int) -> None:
        with httpx.Client() as client:
            for number in range(index, len(bodies), clients):
                post(client, number)

    try:
        started = time.perf_counter()
        with ThreadPoolExecutor(clients) as pool:
            list(pool.map(client_loop, range(clients)))
        elapsed = time.perf_counter() - started
    finally:
        server.send_signal(signal.SIGINT)  # graceful; and cProfile writes its file on it
        server.wait(60)
    landed = _count(connection, topic, events)
    result: dict[str, Any] = {
        "events": events,
        "clients": clients,
        "batch": batch,
        "seconds": round(elapsed, 3),
        "events_per_s": round(events / elapsed),
        "goal_events_per_s": GOAL_EVENTS_S,
        "landed": landed,
        "exact": landed == events,
        "cpus": os.cpu_count(),
    }
    if profile_file is not None and profile_file.exists():
        stats = pstats.Stats(str(profile_file))
        stats.sort_stats("tottime")
        result["profile_top"] = [
            f"{func[2]} ({Path(func[0]).name}:{func[1]}): {row[2]:.2f}s self, {row[3]:.2f}s total"
            for func, row in sorted(stats.stats.items(), key=lambda kv: -kv[1][2])[:15]  # type: ignore[attr-defined]
        ]
    return result


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0] if __doc__ else None)
    parser.add_argument("--events", type=int, default=100_000)
    parser.add_argument("--clients", type=int, default=8)
    parser.add_argument("--batch", type=int, default=500)
    parser.add_argument("--profile", action="store_true", help="profile the server (cProfile)")
    args = parser.parse_args()
    result = run(args.events, args.clients, args.batch, args.profile)
    RESULTS.parent.mkdir(parents=True, exist_ok=True)
    RESULTS.write_text(json.dumps(result, indent=2) + "\n")
    print(json.dumps(result, indent=2))
    if not result["exact"]:
        raise SystemExit(f"{result['landed']} of {args.events} events landed")


if __name__ == "__main__":
    main()
