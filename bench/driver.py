"""How long the test driver takes for 100k events through a windowed topology (no broker).

    PYTHONPATH=src python -m bench.driver [--events 100000] [--repartition]

The topology is `topologies/revenue-per-minute.yaml` (validate, filter, key_by, a tumbling
window of seven aggregates); without `--repartition` its source is declared
`partitioned_by: customer_id`, so the window reads the source partitions directly, as
`streamline run` does for such a topology. Prints the best of `--runs` wall times for
piping the orders (encoded from dicts) and flushing.
"""

from __future__ import annotations

import argparse
import tempfile
import time
from pathlib import Path
from typing import Any

from tests.support.windows_oracle import events, order

from streamline.testing import TopologyDriver

ROOT = Path(__file__).resolve().parent.parent


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--events", type=int, default=100_000)
    parser.add_argument("--runs", type=int, default=3)
    parser.add_argument("--repartition", action="store_true")
    args = parser.parse_args()
    text = (ROOT / "topologies" / "revenue-per-minute.yaml").read_text()
    if not args.repartition:
        text = text.replace(
            "    event_time: created_at\n",
            "    event_time: created_at\n    partitioned_by: customer_id\n",
        )
    evts = events(args.events, keys=500, step_ms=20, disorder_ms=4000)
    orders: list[dict[str, Any]] = [order(e) for e in evts]
    with tempfile.TemporaryDirectory() as tmp:
        path = Path(tmp) / "topologies" / "revenue.yaml"
        path.parent.mkdir()
        path.write_text(text)
        times = []
        for _ in range(args.runs):
            with TopologyDriver(path, ROOT / "schemas") as driver:
                started = time.perf_counter()
                driver.pipe("orders", [(str(o["customer_id"]), o) for o in orders])
                driver.flush()
                times.append(time.perf_counter() - started)
                windows = len(driver.output())
    kind = "repartitioned" if args.repartition else "partitioned"
    print(
        f"{args.events} events, {kind}: best {min(times):.2f} s of {args.runs} "
        f"({args.events / min(times):,.0f} events/s), {windows} windows"
    )


if __name__ == "__main__":
    main()
