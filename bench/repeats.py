"""Repeated cells: the order they run in, and one cell per (system, workload) from its repeats.

A run measures every cell `repeats` times, in rounds: each round runs every planned cell
once, so the repeats of two systems interleave (A B C, C B A, A B C: every other round
reversed, so a load that rises or falls through the run weighs on each system alike).
The figures of a cell are the medians of its repeats; its spread is (largest - smallest)
/ median of each figure. Pure: unit-tested without Kafka (tests/unit/test_bench_repeats.py).
"""

from __future__ import annotations

import copy
import statistics
from collections.abc import Callable, Sequence
from typing import Any, TypeVar

from bench.report import Cell

T = TypeVar("T")

# the figures taken as the median of the repeats, and whose spread is reported
FIGURES = ("events_per_s", "cpu_s_per_m", "seconds")


def rounds(plan: Sequence[T], repeats: int) -> list[tuple[int, T]]:
    """(repeat index, item) in run order: the plan forwards, backwards, forwards..."""
    order: list[tuple[int, T]] = []
    for r in range(max(1, repeats)):
        items = list(plan) if r % 2 == 0 else list(reversed(plan))
        order.extend((r, item) for item in items)
    return order


def median(values: Sequence[float | None]) -> float | None:
    present = [v for v in values if v is not None]
    return statistics.median(present) if present else None


def spread(values: Sequence[float | None]) -> float | None:
    """(largest - smallest) / median over the values present; None with fewer than two."""
    present = [v for v in values if v is not None]
    if len(present) < 2:
        return None
    middle = statistics.median(present)
    if middle == 0:
        return None
    return (max(present) - min(present)) / middle


def combine(runs: Sequence[Cell]) -> Cell:
    """One cell from the repeats of a (system, workload).

    Every repeat's output is checked on its own: if any repeat failed or disagreed with the
    expectation, the cell is that repeat (the first such), with the repeat named in its note.
    Otherwise the figures are the medians of the repeats, the peak RSS the largest, and
    `extra` keeps each repeat's figures (`repeats`) and the spread of each figure (`spread`).
    """
    if not runs:
        raise ValueError("no repeats to combine")
    bad = next((i for i, c in enumerate(runs) if c.status != "ok"), None)
    if bad is not None:
        cell = copy.deepcopy(runs[bad])
        if len(runs) > 1:
            cell.note = f"repeat {bad + 1} of {len(runs)}: {cell.note}"
        cell.extra["repeats"] = [_figures(c) for c in runs]
        return cell
    cell = copy.deepcopy(runs[0])
    for name in FIGURES:
        setattr(cell, name, median([getattr(c, name) for c in runs]))
    rss = [c.peak_rss_mb for c in runs if c.peak_rss_mb is not None]
    cell.peak_rss_mb = max(rss) if rss else None
    share = median([c.extra.get("others_cpu_share") for c in runs])
    if share is not None:
        cell.extra["others_cpu_share"] = share
    measured = median([c.extra.get("measured_events") for c in runs])
    if measured is not None:
        cell.extra["measured_events"] = int(measured)
    if any(c.extra.get("too_short") for c in runs):
        cell.extra["too_short"] = True
        cell.note = next(c.note for c in runs if c.extra.get("too_short"))
    else:
        notes = list(dict.fromkeys(c.note for c in runs if c.note))
        cell.note = "; ".join(notes)
    cell.extra["repeats"] = [_figures(c) for c in runs]
    cell.extra["spread"] = {name: spread([getattr(c, name) for c in runs]) for name in FIGURES}
    return cell


def others_share(machine_busy_s: float, system_cpu_s: float, wall_s: float, cores: int) -> float:
    """The share of the machine's CPU (0..1) used by everything but the system under test
    over `wall_s`: the broker, the harness and whatever else runs on the machine."""
    if wall_s <= 0 or cores <= 0:
        return 0.0
    return min(1.0, max(0.0, (machine_busy_s - system_cpu_s) / (wall_s * cores)))


def _figures(cell: Cell) -> dict[str, Any]:
    return {
        "status": cell.status,
        "events_per_s": cell.events_per_s,
        "cpu_s_per_m": cell.cpu_s_per_m,
        "seconds": cell.seconds,
        "measured_events": cell.extra.get("measured_events"),
        "others_cpu_share": cell.extra.get("others_cpu_share"),
    }


def combine_latency(cell: Cell, runs: Sequence[Cell]) -> None:
    """Sets `cell`'s latency to the medians of its latency repeats (each a Cell with only its
    latency fields set) and keeps each repeat's p50 / p99 in `extra["latency_repeats"]`."""
    measured = [r for r in runs if r.p50_ms is not None and r.p99_ms is not None]
    cell.p50_ms = median([r.p50_ms for r in measured])
    cell.p99_ms = median([r.p99_ms for r in measured])
    samples = median([r.latency_samples for r in measured])
    cell.latency_samples = None if samples is None else int(samples)
    notes = list(dict.fromkeys(r.latency_note for r in runs if r.latency_note))
    cell.latency_note = "; ".join(notes)
    cell.extra["latency_repeats"] = [
        {"p50_ms": r.p50_ms, "p99_ms": r.p99_ms, "samples": r.latency_samples} for r in runs
    ]
    cell.extra.setdefault("spread", {}).update(
        p50_ms=spread([r.p50_ms for r in measured]), p99_ms=spread([r.p99_ms for r in measured])
    )


def worth_repeating(first: Cell, limit_s: float) -> bool:
    """Whether a cell is measured again after its first repeat: not when that one failed or
    disagreed (the cell is reported as it is), nor when it was timed over more than
    `limit_s` (a run that long is timed well enough once, and repeating it would not fit
    the run's time budget)."""
    return first.status == "ok" and (first.seconds or 0.0) <= limit_s


def needs_more(runs: Sequence[Cell], min_timed_s: float) -> bool:
    """Whether a cell's repeats so far were all ok but timed less than `min_timed_s` together:
    a fast system (the bare loop) gets through its input in a fraction of a second, where
    the commit intervals and the scheduler weigh most; more repeats steady its median."""
    if any(c.status != "ok" or c.extra.get("too_short") for c in runs):
        return False  # more repeats would not make it judged: it needs a larger input
    return sum(c.seconds or 0.0 for c in runs) < min_timed_s


def run_repeated(
    plan: Sequence[T],
    repeats: int,
    limit_s: float,
    run_one: Callable[[T, int], Cell],
    min_timed_s: float = 0.0,
    max_repeats: int = 0,
) -> dict[T, list[Cell]]:
    """Each planned item's repeats, run in `rounds` order; `run_one(item, repeat index)`.

    After the `repeats` rounds, further rounds (up to `max_repeats` in all) run the items
    whose repeats were timed less than `min_timed_s` together, interleaved the same way."""
    results: dict[T, list[Cell]] = {item: [] for item in plan}
    for r, item in rounds(plan, repeats):
        done = results[item]
        if done and not worth_repeating(done[0], limit_s):
            continue
        done.append(run_one(item, r))
    r = max(1, repeats)
    while r < max_repeats:
        short = [item for item in plan if needs_more(results[item], min_timed_s)]
        if not short:
            break
        for item in short if r % 2 == 0 else list(reversed(short)):
            results[item].append(run_one(item, r))
        r += 1
    return results
