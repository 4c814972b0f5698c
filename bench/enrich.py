"""W5: HTTP enrichment at 20 ms a call, streamline's async map against Quix Streams.

Both read the same input (com.example.Order, single-object Avro) and call the same local
aiohttp server once per order; each writes the enriched order, exactly-once. streamline
runs `examples`-style `async def` map with `concurrency: 64`; Quix Streams runs the call
in `StreamingDataFrame.apply` with `requests`, as its docs show (it has no async
operators). Throughput is events per second from the first call to the last committed
output (startup excluded).

    python -m bench.enrich                       # 2,000 events, both systems
    python -m bench.enrich --events 5000 --only streamline
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import sys
import tempfile
import threading
import time
import uuid
import zlib
from pathlib import Path
from typing import Any

from aiohttp import web
from confluent_kafka import OFFSET_BEGINNING, Consumer, TopicPartition

from bench.cluster import create, delete_topics, produce_all
from bench.process import SystemProcess
from bench.venvs import VENVS
from streamline.cli.connect import resolve_connection
from streamline.dev.broker import free_port
from streamline.kafka.connection import Connection
from streamline.serde import AvroCodec, SchemaStore

ROOT = Path(__file__).resolve().parents[1]
SCHEMAS = ROOT / "schemas"
RESULTS = ROOT / "bench" / "results" / "w5.json"
PARTITIONS = 3

TOPOLOGY = """\
apiVersion: streamline/v1
name: {name}
version: "1"
sources:
  - {{name: orders, topic: {source}, schema: com.example.Order, event_time: created_at,
     watermark: {{max_out_of_orderness: 0s}}}}
stages:
  - map: {{fn: "bench.systems.enrich:enrich", concurrency: {concurrency}}}
sink: {{topic: {sink}, schema: com.example.PaidOrder}}
guarantee: exactly_once
commit_interval: 100ms
"""


def tier_of(customer_id: str) -> str:
    """What the server answers, and the oracle expects, for a customer."""
    return ("bronze", "silver", "gold")[zlib.crc32(customer_id.encode()) % 3]


class Server:
    """The dependency: an aiohttp server on its own thread answering after `latency` s."""

    def __init__(self, latency: float) -> None:
        self.latency = latency
        self.port = free_port()
        self.calls = 0
        self.first_call: float | None = None  # monotonic time of the run's first call
        self._loop = asyncio.new_event_loop()

    async def _customer(self, request: web.Request) -> web.Response:
        self.calls += 1
        if self.first_call is None:
            self.first_call = time.monotonic()
        await asyncio.sleep(self.latency)
        return web.json_response({"tier": tier_of(request.match_info["id"])})

    def start(self) -> Server:
        started = threading.Event()

        async def serve() -> None:
            app = web.Application()
            app.router.add_get("/customers/{id}", self._customer)
            runner = web.AppRunner(app, access_log=None)
            await runner.setup()
            await web.TCPSite(runner, "127.0.0.1", self.port, backlog=4096).start()
            started.set()

        def run() -> None:
            asyncio.set_event_loop(self._loop)
            self._loop.run_until_complete(serve())
            self._loop.run_forever()

        threading.Thread(target=run, daemon=True).start()
        started.wait(10)
        return self


def orders(n: int) -> list[dict[str, Any]]:
    return [
        {
            "order_id": f"o-{i}",
            "customer_id": f"c-{i % 1000}",
            "amount": float(1 + i % 50),
            "currency": "EUR",
            "status": "PAID",
            "country": "DE",
            "created_at": 1_767_225_600_000 + i,
        }
        for i in range(n)
    ]


def await_outputs(
    connection: Connection, topic: str, n: int, limit_s: float
) -> tuple[list[float], list[bytes]]:
    """Arrival times and values of the first `n` committed outputs of `topic` (and any more)."""
    consumer = Consumer(
        connection.config(
            **{"group.id": f"w5-{uuid.uuid4().hex}", "isolation.level": "read_committed"},
            log_level=0,
        )
    )
    consumer.assign([TopicPartition(topic, p, OFFSET_BEGINNING) for p in range(PARTITIONS)])
    times: list[float] = []
    values: list[bytes] = []
    deadline = time.monotonic() + limit_s
    try:
        while len(times) < n and time.monotonic() < deadline:
            for msg in consumer.consume(1000, timeout=0.2):
                if msg.error() is None:
                    times.append(time.monotonic())
                    values.append(msg.value() or b"")
        # a moment more for duplicates, which must not be there
        for msg in consumer.consume(1000, timeout=1.0):
            if msg.error() is None:
                values.append(msg.value() or b"")
    finally:
        consumer.close()
    return times, values


def check(system: str, values: list[bytes], batch: list[dict[str, Any]]) -> str | None:
    """Why the outputs differ from the oracle (each order once, with its tier), or None."""
    if system == "streamline":
        store = SchemaStore(SCHEMAS)
        codec = AvroCodec(store, store.get("com.example.PaidOrder"))
        decoded = [codec.decode(v) for v in values]
    else:
        decoded = [json.loads(v) for v in values]
    if len(decoded) != len(batch):
        return f"{len(decoded)} outputs for {len(batch)} events"
    got = {d["order_id"]: d["country"] for d in decoded}
    expected = {o["order_id"]: f"DE/{tier_of(o['customer_id'])}" for o in batch}
    return None if got == expected else "outputs differ from the expected enrichment"


def run_system(
    system: str,
    connection: Connection,
    server: Server,
    n: int,
    concurrency: int,
    work: Path,
    quix_python: Path,
) -> dict[str, Any]:
    run = uuid.uuid4().hex[:8]
    source, sink = f"bench-w5-{system}-{run}-in", f"bench-w5-{system}-{run}-out"
    create(connection, {source: (PARTITIONS, {}), sink: (PARTITIONS, {})})
    codec = AvroCodec(SchemaStore(SCHEMAS), SchemaStore(SCHEMAS).get("com.example.Order"))
    batch = orders(n)
    records = [
        (i % PARTITIONS, o["customer_id"].encode(), codec.encode(o), o["created_at"])
        for i, o in enumerate(batch)
    ]
    produce_all(connection, source, records)
    env = {
        **os.environ,
        "BENCH_ENRICH_URL": f"http://127.0.0.1:{server.port}",
        "PYTHONPATH": f"{ROOT / 'src'}{os.pathsep}{ROOT}",
        "STREAMLINE_BOOTSTRAP_SERVERS": connection.bootstrap_servers,
        "STREAMLINE_SCHEMAS": str(SCHEMAS),
    }
    if system == "streamline":
        name = f"bench-w5-{run}"
        topology = work / f"{name}.yaml"
        topology.write_text(
            TOPOLOGY.format(name=name, source=source, sink=sink, concurrency=concurrency)
        )
        create(connection, {f"{name}.dlq": (PARTITIONS, {})})
        command = [
            sys.executable, "-m", "streamline", "run", str(topology), "--instance-id", "w5",
            "--metrics-port", "0", "--state-dir", str(work / "state"),
        ]  # fmt: skip
    else:
        command = [
            str(quix_python), "-m", "bench.systems.quix_enrich",
            "--bootstrap", connection.bootstrap_servers, "--input", source, "--output", sink,
            "--group", f"bench-w5-quix-{run}", "--state-dir", str(work / "quix-state"),
            "--schema", str(SCHEMAS / "order.avsc"),
        ]  # fmt: skip
    server.first_call = None
    proc = SystemProcess(command, env, ROOT, work / f"{system}.log").start()
    try:
        times, values = await_outputs(connection, sink, n, limit_s=max(120.0, n / 20))
        cpu = proc.cpu_seconds()
    finally:
        proc.stop(30)
    delete_topics(connection, f"bench-w5-{system}-{run}-*")
    if len(times) < n:
        return {"system": system, "events": n, "status": "failed", "outputs": len(times),
                "log": proc.log_tail(1500)}  # fmt: skip
    wrong = check(system, values, batch)
    if wrong is not None:
        return {"system": system, "events": n, "status": "failed", "reason": wrong}
    assert server.first_call is not None
    span = times[-1] - server.first_call  # first call to last committed output
    return {
        "system": system,
        "events": n,
        "status": "ok",
        "events_per_s": round(n / span, 1),
        "cpu_s": round(cpu, 1),
    }


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n", 1)[0])
    parser.add_argument("--events", type=int, default=2000)
    parser.add_argument("--latency-ms", type=float, default=20.0)
    parser.add_argument("--concurrency", type=int, default=64)
    parser.add_argument("--only", default="streamline,quix")
    parser.add_argument("--results", type=Path, default=RESULTS)
    parser.add_argument(
        "--quix-python",
        type=Path,
        default=VENVS / "quix" / "bin" / "python",
        help=argparse.SUPPRESS,
    )
    args = parser.parse_args()
    connection = resolve_connection()
    connection.check_reachable()
    server = Server(args.latency_ms / 1000).start()
    results = []
    with tempfile.TemporaryDirectory(prefix="bench-w5-") as tmp:
        for system in args.only.split(","):
            print(f"W5 {system}: {args.events:,} events, {args.latency_ms:g} ms a call", flush=True)
            result = run_system(
                system,
                connection,
                server,
                args.events,
                args.concurrency,
                Path(tmp),
                args.quix_python,
            )
            print(f"  {result}", flush=True)
            results.append(result)
    rates: dict[str, float] = {
        r["system"]: r["events_per_s"] for r in results if r.get("events_per_s")
    }
    summary: dict[str, Any] = {
        "workload": "W5 HTTP enrichment",
        "latency_ms": args.latency_ms,
        "concurrency": args.concurrency,
        "load_average": os.getloadavg()[0],
        "results": results,
    }
    if rates.get("streamline") and rates.get("quix"):
        summary["ratio"] = round(rates["streamline"] / rates["quix"], 1)
        print(f"W5: streamline / Quix Streams = {summary['ratio']}x")
    args.results.parent.mkdir(parents=True, exist_ok=True)
    args.results.write_text(json.dumps(summary, indent=2) + "\n")
    return 0 if all(r["status"] == "ok" for r in results) else 1


if __name__ == "__main__":
    raise SystemExit(main())
