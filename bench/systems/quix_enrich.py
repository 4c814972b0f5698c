"""W5 as a Quix Streams 3.x application (runs in bench/.venvs/quix): HTTP enrichment.

As Quix Streams' docs show for calling an external service: a plain function given to
`StreamingDataFrame.apply`, calling it with a `requests.Session` (Quix processes one
message at a time and has no async operators). Exactly-once, like streamline's run.
"""

from __future__ import annotations

import argparse
import logging
from pathlib import Path
from typing import Any

import requests
from quixstreams import Application

from bench.systems.enrich import enriched, url
from bench.systems.quix_app import SingleObjectAvro, event_time

session = requests.Session()


def enrich(order: dict[str, Any]) -> dict[str, Any]:
    response = session.get(url(order), timeout=10)
    response.raise_for_status()
    return enriched(order, response.json()["tier"])


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n", 1)[0])
    parser.add_argument("--bootstrap", required=True)
    parser.add_argument("--input", required=True)
    parser.add_argument("--output", required=True)
    parser.add_argument("--group", required=True)
    parser.add_argument("--state-dir", required=True)
    parser.add_argument("--schema", type=Path, required=True)
    args = parser.parse_args()
    app = Application(
        broker_address=args.bootstrap,
        consumer_group=args.group,
        auto_offset_reset="earliest",
        processing_guarantee="exactly-once",
        commit_interval=0.1,
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
    app.dataframe(orders).apply(enrich).to_topic(output)
    app.run()


if __name__ == "__main__":
    main()
