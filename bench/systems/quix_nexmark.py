"""The Nexmark-style queries as a Quix Streams 3.x application (runs in bench/.venvs/quix).

Exactly-once processing, RocksDB state, event time from `date_time`, windows closed per
partition. Outputs are JSON. q3 is Quix's `join_asof` (persons as of the auction's
time), q8 its `join_interval` (persons up to 10 s before the auction), q7 a `group_by`
onto one key and a tumbling `Max` (the closing bids held back until the last partition's,
`closing_gate`). q5 is not written: it needs a window over the
results of a hopping window, keyed by window.
"""

from __future__ import annotations

import argparse
import logging
from pathlib import Path
from typing import Any

from quixstreams import Application
from quixstreams.dataframe.windows import aggregations as agg

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
from bench.systems.quix_app import SingleObjectAvro


def event_time(value: Any, _headers: Any, _timestamp: float, _kind: Any) -> int:
    return int(value["date_time"])


def closing(bid: dict[str, Any], state: Any) -> bool:
    seen, passes = closing_gate(state.get("closing", 0), bid)
    state.set("closing", seen)
    return passes


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n", 1)[0])
    parser.add_argument("--query", choices=["q0", "q1", "q2", "q3", "q7", "q8"], required=True)
    parser.add_argument("--bootstrap", required=True)
    parser.add_argument("--input", required=True)
    parser.add_argument("--persons", help="q3, q8: the persons topic")
    parser.add_argument("--output", required=True)
    parser.add_argument("--group", required=True)
    parser.add_argument("--state-dir", required=True)
    parser.add_argument("--schemas", type=Path, required=True)
    parser.add_argument("--commit-interval-ms", type=int, default=100)
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
    schema = "nexmark_auction.avsc" if args.query in ("q3", "q8") else "nexmark_bid.avsc"
    source = app.topic(
        args.input,
        key_deserializer="str",
        value_deserializer=SingleObjectAvro(args.schemas / schema),
        timestamp_extractor=event_time,
    )
    output = app.topic(args.output, key_serializer="str", value_serializer="json")
    sdf = app.dataframe(source)
    if args.query in ("q3", "q8"):
        persons = app.dataframe(
            app.topic(
                args.persons,
                key_deserializer="str",
                value_deserializer=SingleObjectAvro(args.schemas / "nexmark_person.avsc"),
                timestamp_extractor=event_time,
            )
        )
    if args.query == "q1":
        sdf = sdf.apply(q1_euro)
    elif args.query == "q2":
        sdf = sdf.filter(lambda bid: bid["auction"] % Q2_MODULO == 0)
    elif args.query == "q3":
        sdf = sdf.filter(lambda auction: auction["category"] == Q3_CATEGORY)
        sdf = sdf.join_asof(
            persons,
            how="inner",
            on_merge=lambda a, p: {**a, "name": p["name"], "city": p["city"], "state": p["state"]},
        )
        sdf = sdf.filter(lambda row: row["state"] in Q3_STATES)
    elif args.query == "q8":
        sdf = sdf.join_interval(
            persons,
            how="inner",
            on_merge=lambda a, p: {**a, "name": p["name"], "person_time": p["date_time"]},
            backward_ms=Q8_WITHIN_MS,
        )
    elif args.query == "q7":
        sdf = sdf.group_by(lambda _bid: "all", name="all")
        sdf = sdf.filter(closing, stateful=True)
        sdf = (
            sdf.tumbling_window(Q7_WINDOW_MS, grace_ms=PEER_LATENESS_MS)
            .agg(max_price=agg.Max("price"))
            .final(closing_strategy="partition")
        )
    sdf.to_topic(output)
    app.run()


if __name__ == "__main__":
    main()
