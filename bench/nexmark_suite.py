"""Runs the Nexmark-style suite: every system on every query it has, one at a time."""

from __future__ import annotations

import math
import sys
import time
from pathlib import Path
from typing import TYPE_CHECKING, Any

from bench.launch import Context
from bench.nexmark import QUERIES
from bench.nexmark_run import (
    NEXMARK_SUPPORTED,
    NexmarkInput,
    make_nexmark_launch,
    streamline_accepts,
)
from bench.repeats import combine, run_repeated
from bench.report import Cell
from streamline.kafka.connection import Connection

if TYPE_CHECKING:
    from bench.run import Progress

NEXMARK_SYSTEMS = ("bare", "streamline", "quix", "bytewax", "faust")

NEXMARK_METHOD = """
Nexmark-style suite (`--suite nexmark`):
- Input: persons, auctions and bids generated with one seed (bench/nexmark.py), written as
  single-object Avro to three topics of 6 partitions before any system starts; persons are
  keyed by id, auctions by seller, bids by auction, so a seller's auctions share its
  person's partition. 2 in 100 events are persons, 18 auctions, 80 bids (Nexmark's default
  mix is 1:3:46; auctions are raised so that the join queries have enough input to time).
  Event time (`date_time`) grows 2 ms per event. Each topic and partition ends with a
  closing record 40 minutes of event time later; results of closing records are not checked.
- Queries: q0 passthrough of bids; q1 bids with the price in euro cents (`price * 89 //
  100`); q2 bids with `auction % 123 == 0`; q3 auctions of category 10 with their seller's
  name, city and state, for sellers in OR, ID or CA (persons as a table for streamline,
  `join_asof` for Quix Streams, a keyed stateful join for Bytewax); q5 the largest bid count
  of one auction per hopping window (10 s every 2 s); q7 the highest price per tumbling
  10 s window over all bids; q8 auctions whose seller registered at most 10 s before
  (a stream-stream join). Checked tuples: q0-q2 (auction, bidder, price, date_time), q3
  (auction, seller, name, city, state), q5 (window_start, max_count), q7 (window_start,
  max_price), q8 (seller, name, auction), count and SHA-256 against the generator's oracle.
- events/s is the query's input topic (bids; auctions for q3 and q8) over the same start and
  end as the classic suite. Where the results come after the input offsets commit (q7's
  repartition, Bytewax's at-least-once sink), the harness waits for the expected number of
  results (or until none came for `--stall-seconds`) before it stops the system, and counts
  its CPU time until then.
- q7 puts every bid on one key. streamline's watermark is the minimum over the input
  partitions, so it needs no lateness; Quix Streams and Bytewax advance event time by the
  largest timestamp read, and a consumer can read one partition far ahead of another, so they
  get 30 minutes of grace (`PEER_LATENESS_MS`) and the closing bids are held back until the
  last partition's has come (`closing_gate`).
- Bytewax 0.21.1 runs `python -m bytewax.run` with its own recovery (`-r`, snapshots every
  1 s, the smallest it takes) and reads with its Kafka source, which keeps offsets in its
  recovery store; the source is given a consumer group with auto-commit so the harness can
  watch its progress like the others'. It has no transactional sink: at-least-once.
"""


def run_nexmark(
    connection: Connection,
    ctx: Context,
    systems: list[str],
    queries: list[str],
    events: int,
    log_dir: Path,
    progress: Progress,
    stall_s: float,
    repeats: int = 1,
    repeat_limit_s: float = math.inf,
) -> tuple[list[Cell], dict[str, Any]]:
    """The suite's cells (in system, query order) and what was produced.

    Each runnable cell runs `repeats` times in interleaved rounds (query by query, every
    system of a query one after the other) and is reported as the medians of its repeats."""
    from bench.run import run_throughput

    data = NexmarkInput(ctx.prefix)
    progress(f"Nexmark: generating {events:,} events (persons, auctions, bids)")
    data.produce(connection, ctx, events, int(time.time() * 1000) - 2 * 3_600_000, progress)
    cells: dict[tuple[str, str], Cell] = {}
    plan: list[tuple[str, str]] = []
    for system in [s for s in NEXMARK_SYSTEMS if s in systems]:
        for query in [q for q in QUERIES if q in queries]:
            reason = NEXMARK_SUPPORTED[system].get(query)
            if reason is None and system == "streamline" and query == "q8":
                reason = streamline_accepts(ctx, data, query)
            if reason is not None:
                cells[(system, query)] = Cell(system, query, status="n/a", note=reason)
            else:
                plan.append((system, query))
    order = list(cells) + plan  # the report's order: by system, then query

    def run_one(item: tuple[str, str], r: int) -> Cell:
        system, query = item
        progress(f"{system} {query}: starting (repeat {r + 1})")
        launch, source = make_nexmark_launch(ctx, system, query, data, f"nx{r + 1}")
        cell = run_throughput(
            connection, launch, source, data.counts_of(source), data.expected(query),
            log_dir, progress, stall_s,
        )  # fmt: skip
        cell.extra["input_topic"] = source.rsplit("-", 1)[-1]
        progress(f"{system} {query}: {cell.status}, {cell.events_per_s or 0:,.0f} events/s, "
                 f"{cell.cpu_s_per_m or 0:.1f} CPU s/M, {cell.output_records or 0:,} results "
                 f"(expected {cell.expected_records:,}) {cell.note}")  # fmt: skip
        if cell.status != "ok":
            print(cell.extra.get("log_tail", ""), file=sys.stderr)
        return cell

    by_query = sorted(plan, key=lambda sq: (QUERIES.index(sq[1]), NEXMARK_SYSTEMS.index(sq[0])))
    from bench.run import MAX_REPEATS, MIN_TIMED_S

    repeated = run_repeated(by_query, repeats, repeat_limit_s, run_one, MIN_TIMED_S, MAX_REPEATS)
    for item, runs in repeated.items():
        cells[item] = combine(runs)
    ranks = {(s, q): (NEXMARK_SYSTEMS.index(s), QUERIES.index(q)) for s, q in order}
    info = {
        "events": events,
        "records": dict(data.counts),
        "expected": {q: len(rows) for q, rows in data.rows.items()},
        "repeats": repeats,
    }
    return [cells[k] for k in sorted(cells, key=lambda k: ranks[k])], info
