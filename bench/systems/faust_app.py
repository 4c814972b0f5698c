"""The benchmark workloads as a faust-streaming application (runs in bench/.venvs/faust).

`processing_guarantee="exactly_once"`, `store="rocksdb://"` (the rocksdict
driver). Outputs are JSON, faust's default.

W2 is a tumbling windowed table relative to the stream (the Kafka record
timestamp, which is `created_at`). faust closes windows by wall-clock time
(`Table._del_old_keys` compares window ends with `time.time()`), so it cannot
emit final event-time windows of historical input; its windowed result is
the table itself, whose changelog topic `<app>-totals-changelog` the
benchmark reads as a table (last value per key and window). faust has no
session windows (W3).
"""

from __future__ import annotations

import argparse
import sys
from datetime import timedelta
from pathlib import Path
from typing import Any

import faust
from examples.orders import to_eur
from faust.serializers import codecs

from bench.systems.wire import SingleObjectReader
from bench.workload import WINDOW_MS, is_valid


class SingleObjectAvro(codecs.Codec):  # type: ignore[misc]
    """Reads streamline's wire format: skip the 10-byte header, then fastavro with the schema."""

    def __init__(self, reader: SingleObjectReader) -> None:
        super().__init__()
        self.reader = reader

    def _loads(self, s: bytes) -> Any:
        return self.reader.decode(s)

    def _dumps(self, s: Any) -> bytes:
        raise NotImplementedError("the benchmark only reads this format")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n", 1)[0])
    parser.add_argument("--workload", choices=["W1", "W2"], required=True)
    parser.add_argument("--bootstrap", required=True)
    parser.add_argument("--input", required=True)
    parser.add_argument("--output", required=True)
    parser.add_argument("--group", required=True)
    parser.add_argument("--state-dir", required=True)
    parser.add_argument("--schema", type=Path, required=True)
    parser.add_argument("--partitions", type=int, default=6)
    parser.add_argument("--commit-interval-ms", type=int, default=100)
    args = parser.parse_args()

    Path(args.state_dir).mkdir(parents=True, exist_ok=True)
    codecs.register("single_object_avro", SingleObjectAvro(SingleObjectReader(args.schema)))
    app = faust.App(
        args.group,
        broker=f"kafka://{args.bootstrap}",
        store="rocksdb://",
        # exactly_once loses table updates: those still in faust's producer buffer when
        # the input offsets commit (measured: 3-57 of 50k-200k changelog records missing)
        processing_guarantee="exactly_once" if args.workload == "W1" else "at_least_once",
        datadir=args.state_dir,
        topic_partitions=args.partitions,
        broker_commit_interval=args.commit_interval_ms / 1000,
        consumer_auto_offset_reset="earliest",
        web_enabled=False,
    )
    orders = app.topic(args.input, key_serializer="raw", value_serializer="single_object_avro")
    output = app.topic(args.output, key_serializer="raw", value_serializer="json")

    if args.workload == "W1":

        @app.agent(orders)  # type: ignore[untyped-decorator]
        async def paid_orders(stream: Any) -> None:
            async for key, order in stream.items():
                if is_valid(order) and order["status"] == "PAID":
                    await output.send(key=key, value=to_eur(order))

    else:
        totals = (
            app.Table("totals", default=lambda: [0, 0.0], partitions=args.partitions)
            .tumbling(timedelta(milliseconds=WINDOW_MS))
            .relative_to_stream()
        )

        @app.agent(orders)  # type: ignore[untyped-decorator]
        async def order_totals(stream: Any) -> None:
            async for key, order in stream.items():
                customer = key.decode()
                count, revenue = totals[customer].value()
                totals[customer] = [count + 1, revenue + order["amount"]]

    sys.argv = [sys.argv[0], "worker", "--loglevel", "info"]
    app.main()


if __name__ == "__main__":
    main()
