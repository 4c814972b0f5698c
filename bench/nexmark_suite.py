"""Runs the Nexmark-style suite: every system on every query it has, one at a time."""

from __future__ import annotations

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
from bench.report import Cell
from streamline.kafka.connection import Connection

if TYPE_CHECKING:
    from bench.run import Progress

NEXMARK_SYSTEMS = ("bare", "streamline", "quix", "bytewax", "faust")


def run_nexmark(
    connection: Connection,
    ctx: Context,
    systems: list[str],
    queries: list[str],
    events: int,
    log_dir: Path,
    progress: Progress,
    stall_s: float,
) -> tuple[list[Cell], dict[str, Any]]:
    """The suite's cells (in system, query order) and what was produced."""
    from bench.run import run_throughput

    data = NexmarkInput(ctx.prefix)
    progress(f"Nexmark: generating {events:,} events (persons, auctions, bids)")
    data.produce(connection, ctx, events, int(time.time() * 1000) - 2 * 3_600_000, progress)
    cells: list[Cell] = []
    for system in [s for s in NEXMARK_SYSTEMS if s in systems]:
        for query in [q for q in QUERIES if q in queries]:
            reason = NEXMARK_SUPPORTED[system].get(query)
            if reason is None and system == "streamline" and query == "q8":
                reason = streamline_accepts(ctx, data, query)
            if reason is not None:
                cells.append(Cell(system, query, status="n/a", note=reason))
                continue
            progress(f"{system} {query}: starting")
            launch, source = make_nexmark_launch(ctx, system, query, data)
            cell = run_throughput(
                connection, launch, source, data.counts_of(source), data.expected(query),
                log_dir, progress, stall_s,
            )  # fmt: skip
            cell.extra["input_topic"] = source.rsplit("-", 1)[-1]
            cells.append(cell)
            progress(f"{system} {query}: {cell.status}, {cell.events_per_s or 0:,.0f} events/s, "
                     f"{cell.cpu_s_per_m or 0:.1f} CPU s/M, {cell.output_records or 0:,} results "
                     f"(expected {cell.expected_records:,}) {cell.note}")  # fmt: skip
            if cell.status != "ok":
                print(cell.extra.get("log_tail", ""), file=sys.stderr)
    info = {
        "events": events,
        "records": dict(data.counts),
        "expected": {q: len(rows) for q, rows in data.rows.items()},
    }
    return cells, info
