"""`streamline reconcile` over many input records: wall time and peak RSS.

Produces ``--records`` orders (every 50th with a negative amount: a dead letter; every
7th pending: filtered out) to a new 3-partition topic, runs ``streamline run`` on a
validate + filter topology until its group has committed every input, then times
``streamline reconcile --since 1h --json`` as a subprocess and reads its peak RSS.
Target: 1M records in under 60 s, memory bounded by the offsets' span.

    python -m bench.reconcile_speed --records 1000000
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import tempfile
import time
import uuid
from pathlib import Path

from confluent_kafka import Producer, TopicPartition

from streamline.kafka.admin import committed_offsets, create_topics
from streamline.kafka.connection import Connection
from streamline.serde import AvroCodec, SchemaStore

ROOT = Path(__file__).resolve().parent.parent

TOPOLOGY = """\
apiVersion: streamline/v1
name: {name}
version: "1"
sources:
  - name: orders
    topic: {source}
    schema: com.example.Order
    event_time: created_at
    watermark: {{max_out_of_orderness: 5s}}
stages:
  - validate:
      rules:
        - {{name: amount_positive, expr: "amount > 0.0"}}
  - filter: "status == 'PAID'"
sink:
  topic: {sink}
  schema: com.example.Order
"""


MEASURED = """
import resource, sys
from streamline.cli import app
sys.argv = ["streamline", "reconcile", *sys.argv[1:]]
try:
    app()
finally:
    print(resource.getrusage(resource.RUSAGE_SELF).ru_maxrss, file=sys.stderr)
"""
"""`streamline reconcile` in a process that prints its own peak RSS (KiB) last on stderr."""


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--records", type=int, default=1_000_000)
    parser.add_argument(
        "--bootstrap", default=os.environ.get("STREAMLINE_BOOTSTRAP_SERVERS", "127.0.0.1:9092")
    )
    args = parser.parse_args()
    connection = Connection(args.bootstrap)
    unique = uuid.uuid4().hex[:8]
    name, source, sink = f"reconcile-bench-{unique}", f"rb-orders-{unique}", f"rb-out-{unique}"
    create_topics(connection, {t: (3, {}) for t in (source, sink, f"{name}.dlq")})
    create_topics(connection, {"streamline.lineage": (3, {}), "streamline.heartbeats": (1, {})})
    store = SchemaStore(ROOT / "schemas")
    codec = AvroCodec(store, store.get("com.example.Order"))

    started = time.monotonic()
    producer = Producer(connection.config(**{"linger.ms": 20, "batch.size": 1_000_000}))
    for i in range(args.records):
        value = codec.encode(
            {
                "order_id": f"o-{i}", "customer_id": f"c-{i % 1000}",
                "amount": -1.0 if i % 50 == 0 else 10.0, "currency": "EUR",
                "status": "PENDING" if i % 7 == 0 else "PAID", "country": "DE",
                "created_at": 1767225600000 + i,
            }
        )  # fmt: skip
        while True:
            try:
                producer.produce(source, value=value, key=str(i % 1000).encode())
                break
            except BufferError:
                producer.poll(0.1)
    producer.flush(120)
    print(f"produced {args.records} records in {time.monotonic() - started:.1f}s", flush=True)

    with tempfile.TemporaryDirectory() as tmp:
        path = Path(tmp) / "topologies" / f"{name}.yaml"
        path.parent.mkdir()
        path.write_text(TOPOLOGY.format(name=name, source=source, sink=sink))
        env = {**os.environ, "STREAMLINE_BOOTSTRAP_SERVERS": args.bootstrap,
               "STREAMLINE_SCHEMAS": str(ROOT / "schemas")}  # fmt: skip
        started = time.monotonic()
        run = subprocess.Popen(
            [sys.executable, "-m", "streamline", "run", str(path), "--metrics-port", "0",
             "--state-dir", str(Path(tmp) / "state")],
            cwd=ROOT, env=env, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
        )  # fmt: skip
        tps = [TopicPartition(source, p) for p in range(3)]
        ends = {}
        from confluent_kafka import Consumer

        probe = Consumer(connection.config(**{"group.id": "probe"}, log_level=0))
        for tp in tps:
            ends[(tp.topic, tp.partition)] = probe.get_watermark_offsets(tp, timeout=10)[1]
        probe.close()
        while True:
            time.sleep(2)
            done = committed_offsets(connection, name, tps)
            if all(done[k].offset >= end for k, end in ends.items()):
                break
        print(f"streamline run processed them in {time.monotonic() - started:.1f}s", flush=True)
        run.terminate()
        run.wait(60)

        started = time.monotonic()
        result = subprocess.run(
            [sys.executable, "-c", MEASURED, str(path), "--since", "1h", "--json"],
            cwd=ROOT, env=env, capture_output=True, text=True,
        )  # fmt: skip
        seconds = time.monotonic() - started
    report = json.loads(result.stdout)
    peak_mb = int(result.stderr.strip().splitlines()[-1]) / 1024
    print(
        f"reconcile: exit {result.returncode} in {seconds:.1f}s, peak RSS {peak_mb:.0f} MB; "
        f"{report['transactions']} transactions; totals {report['totals']}"
    )


if __name__ == "__main__":
    main()
