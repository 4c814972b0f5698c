"""W1 and the Nexmark-style queries as a Bytewax 0.21 dataflow (runs in bench/.venvs/bytewax).

    python -m bytewax.run bench.systems.bytewax_app:flow -r RECOVERY_DIR -s 1 -b 0

with its settings as JSON in the environment variable `BENCH_BYTEWAX` (bytewax.run
takes no arguments of the flow's own). Bytewax's Kafka source reads assigned
partitions and keeps its offsets in its own recovery store; its Kafka sink has no
transactions, so the outputs are at-least-once. The source is given a consumer group
with auto-commit only so the harness can watch its progress on the input, as it does
for the other systems. Outputs are JSON.

- q3 and q8 are joins written with `stateful_flat_map` per seller: Bytewax 0.21's
  `join` keeps only the latest value of each side, and `join_window` joins within
  windows, not within an interval.
- q7 puts every bid on one key and folds a tumbling window per event-time `EventClock`
  (which waits `PEER_LATENESS_MS` of event time for out-of-order partitions;
  the closing bids are held back until the last partition's, `closing_gate`).
"""

from __future__ import annotations

import json
import os
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import bytewax.operators as op
from bytewax.connectors.kafka import KafkaSink, KafkaSinkMessage, KafkaSource
from bytewax.dataflow import Dataflow
from bytewax.operators.windowing import EventClock, TumblingWindower, fold_window
from confluent_kafka import OFFSET_BEGINNING
from examples.orders import to_eur

from bench.nexmark import (
    PEER_LATENESS_MS,
    Q2_MODULO,
    Q3_CATEGORY,
    Q3_STATES,
    Q7_WINDOW_MS,
    Q8_WITHIN_MS,
    closing_gate,
    q1_euro,
)
from bench.systems.wire import SingleObjectReader
from bench.workload import is_valid

EPOCH = datetime(1970, 1, 1, tzinfo=UTC)


def _source(settings: dict[str, Any], topic: str) -> KafkaSource:
    return KafkaSource(
        [settings["bootstrap"]],
        [topic],
        tail=True,
        starting_offset=OFFSET_BEGINNING,
        add_config={
            "group.id": settings["group"],
            "enable.auto.commit": "true",
            "auto.commit.interval.ms": str(settings["commit_interval_ms"]),
            "fetch.wait.max.ms": "50",
        },
    )


def _decoded(flow: Dataflow, settings: dict[str, Any], name: str, topic: str, schema: str) -> Any:
    reader = SingleObjectReader(Path(settings["schemas"]) / schema)
    raw = op.input(f"{name}_in", flow, _source(settings, topic))
    return op.map(f"{name}_decode", raw, lambda m: reader.decode(m.value))


def _json(step: str, stream: Any, key: Any) -> Any:
    return op.map(
        step,
        stream,
        lambda v: KafkaSinkMessage(str(key(v)).encode(), json.dumps(v).encode()),
    )


class _Join:
    """One seller's person (when seen) and the auctions waiting for it."""

    def __init__(self, query: str) -> None:
        self.query = query

    def __call__(
        self, state: tuple[dict[str, Any] | None, list[dict[str, Any]]] | None, item: Any
    ) -> tuple[Any, list[dict[str, Any]]]:
        person, waiting = state if state is not None else (None, [])
        kind, record = item
        if kind == "person":
            person, ready = record, waiting
            waiting = []
        elif person is None:
            waiting = [*waiting, record]
            ready = []
        else:
            ready = [record]
        out = [row for a in ready if (row := self._joined(a, person)) is not None]
        return (person, waiting), out

    def _joined(self, auction: dict[str, Any], person: dict[str, Any] | None) -> Any:
        if person is None:
            return None
        if self.query == "q3":
            if person["state"] not in Q3_STATES:
                return None
            return {**auction, "name": person["name"], "city": person["city"],
                    "state": person["state"]}  # fmt: skip
        if 0 <= auction["date_time"] - person["date_time"] <= Q8_WITHIN_MS:
            return {**auction, "name": person["name"], "person_time": person["date_time"]}
        return None


def _gate(seen: int | None, bid: dict[str, Any]) -> tuple[int, list[dict[str, Any]]]:
    count, passes = closing_gate(seen or 0, bid)
    return count, [bid] if passes else []


def build(settings: dict[str, Any]) -> Dataflow:
    flow = Dataflow(settings["group"].replace(".", "_"))
    query = settings["query"]
    if query == "W1":
        orders = _decoded(flow, settings, "orders", settings["input"], "order.avsc")
        paid = op.filter("paid", orders, lambda o: is_valid(o) and o["status"] == "PAID")
        out = _json("out", op.map("to_eur", paid, to_eur), lambda o: o["customer_id"])
    elif query in ("q0", "q1", "q2"):
        bids = _decoded(flow, settings, "bids", settings["input"], "nexmark_bid.avsc")
        if query == "q1":
            bids = op.map("euro", bids, q1_euro)
        elif query == "q2":
            bids = op.filter("modulo", bids, lambda b: b["auction"] % Q2_MODULO == 0)
        out = _json("out", bids, lambda b: b["auction"])
    elif query in ("q3", "q8"):
        auctions = _decoded(flow, settings, "auctions", settings["input"], "nexmark_auction.avsc")
        if query == "q3":
            auctions = op.filter("category", auctions, lambda a: a["category"] == Q3_CATEGORY)
        persons = _decoded(flow, settings, "persons", settings["persons"], "nexmark_person.avsc")
        both = op.merge(
            "both",
            op.map("tag_a", auctions, lambda a: ("auction", a)),
            op.map("tag_p", persons, lambda p: ("person", p)),
        )
        keyed = op.key_on(
            "seller", both, lambda x: str(x[1]["seller"] if x[0] == "auction" else x[1]["id"])
        )
        joined = op.key_rm("unkey", op.stateful_flat_map("join", keyed, _Join(query)))
        out = _json("out", joined, lambda r: r["seller"])
    elif query == "q7":
        bids = _decoded(flow, settings, "bids", settings["input"], "nexmark_bid.avsc")
        keyed = op.stateful_flat_map("closing", op.key_on("all", bids, lambda _b: "all"), _gate)
        clock = EventClock(
            lambda b: EPOCH + timedelta(milliseconds=b["date_time"]),
            wait_for_system_duration=timedelta(milliseconds=PEER_LATENESS_MS),
        )
        windows = fold_window(
            "max",
            keyed,
            clock,
            TumblingWindower(length=timedelta(milliseconds=Q7_WINDOW_MS), align_to=EPOCH),
            lambda: -1,
            lambda acc, b: max(acc, b["price"]),
            max,
        )
        rows = op.map(
            "row",
            op.key_rm("unkey", windows.down),
            lambda wid_max: {"window_start": wid_max[0] * Q7_WINDOW_MS, "max_price": wid_max[1]},
        )
        out = _json("out", rows, lambda _r: "all")
    else:
        raise ValueError(f"unknown query {query}")
    op.output(
        "sink",
        out,
        KafkaSink([settings["bootstrap"]], settings["output"], add_config={"linger.ms": "5"}),
    )
    return flow


flow = build(json.loads(os.environ["BENCH_BYTEWAX"])) if "BENCH_BYTEWAX" in os.environ else None
