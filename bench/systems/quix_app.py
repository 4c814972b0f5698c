"""The benchmark workloads as a Quix Streams 3.x application (runs in bench/.venvs/quix).

Exactly-once processing, RocksDB state (Quix's own), event time from
`created_at`, windows closed per partition so that a partition's closing event
fires every open window. Outputs are JSON, Quix's default serializer.
"""

from __future__ import annotations

import argparse
import logging
from pathlib import Path
from typing import Any

from examples.orders import to_eur
from quixstreams import Application
from quixstreams.dataframe.windows import aggregations as agg
from quixstreams.models.serializers import Deserializer

from bench.systems.wire import SingleObjectReader
from bench.workload import SESSION_GAP_MS, WINDOW_MS, is_valid


class SingleObjectAvro(Deserializer):  # type: ignore[misc]
    """Reads streamline's wire format: skip the 10-byte header, then fastavro with the schema."""

    def __init__(self, schema_path: Path) -> None:
        super().__init__()
        self.reader = SingleObjectReader(schema_path)

    def __call__(self, value: bytes, ctx: Any) -> Any:
        return self.reader.decode(value)


def event_time(value: Any, _headers: Any, _timestamp: float, _kind: Any) -> int:
    return int(value["created_at"])


def updated_at(value: Any, _headers: Any, _timestamp: float, _kind: Any) -> int:
    return int(value["updated_at"])


def enriched(order: dict[str, Any], customer: dict[str, Any]) -> dict[str, Any]:
    """W4's output: the order with its customer's segment and country as of its time."""
    return {
        "order_id": order["order_id"],
        "customer_id": order["customer_id"],
        "amount": order["amount"],
        "currency": order["currency"],
        "created_at": order["created_at"],
        "segment": customer["segment"],
        "customer_country": customer["country"],
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n", 1)[0])
    parser.add_argument("--workload", choices=["W1", "W2", "W3", "W4"], required=True)
    parser.add_argument("--bootstrap", required=True)
    parser.add_argument("--input", required=True)
    parser.add_argument("--output", required=True)
    parser.add_argument("--group", required=True)
    parser.add_argument("--state-dir", required=True)
    parser.add_argument("--schema", type=Path, required=True)
    parser.add_argument("--commit-interval-ms", type=int, default=100)
    parser.add_argument("--table", help="W4: the customers topic")
    parser.add_argument("--table-schema", type=Path, help="W4: the customers' schema")
    args = parser.parse_args()

    app = Application(
        broker_address=args.bootstrap,
        consumer_group=args.group,
        auto_offset_reset="earliest",
        processing_guarantee="exactly-once",
        commit_interval=args.commit_interval_ms / 1000,
        state_dir=args.state_dir,
        loglevel=logging.INFO,
        consumer_poll_timeout=0.1,
    )
    orders = app.topic(
        args.input,
        key_deserializer="str",
        value_deserializer=SingleObjectAvro(args.schema),
        timestamp_extractor=event_time,
    )
    output = app.topic(args.output, key_serializer="str", value_serializer="json")
    sdf = app.dataframe(orders)

    if args.workload == "W1":
        sdf = sdf.filter(is_valid)
        sdf = sdf.filter(lambda order: order["status"] == "PAID")
        sdf = sdf.apply(to_eur)
    elif args.workload == "W4":
        customers = app.topic(
            args.table,
            key_deserializer="str",
            value_deserializer=SingleObjectAvro(args.table_schema),
            timestamp_extractor=updated_at,
        )
        sdf = sdf.join_asof(app.dataframe(customers), how="inner", on_merge=enriched)
    elif args.workload == "W2":
        sdf = (
            sdf.tumbling_window(WINDOW_MS)
            .agg(order_count=agg.Count(), revenue=agg.Sum("amount"))
            .final(closing_strategy="partition")
        )
    else:
        sdf = (
            sdf.session_window(SESSION_GAP_MS)
            .agg(order_count=agg.Count(), revenue=agg.Sum("amount"))
            .final(closing_strategy="partition")
        )
    sdf.to_topic(output)
    app.run()


if __name__ == "__main__":
    main()
