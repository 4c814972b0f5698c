from __future__ import annotations

import pytest
from bench.repeats import (
    combine,
    combine_latency,
    median,
    needs_more,
    others_share,
    rounds,
    run_repeated,
    spread,
    worth_repeating,
)
from bench.report import Cell
from bench.results_page import (
    ratio_ranges,
    render_repeats,
    render_spread,
    render_targets,
    repeat_cells,
    round_two_targets,
)


def run(eps: float, cpu: float, seconds: float = 2.0, status: str = "ok", note: str = "") -> Cell:
    cell = Cell("streamline", "W1", status=status, note=note, events=1000, seconds=seconds,
                events_per_s=eps, cpu_s_per_m=cpu, peak_rss_mb=eps / 1000,
                output_records=800, output_checksum="abc", expected_records=800,
                expected_checksum="abc")  # fmt: skip
    cell.extra["measured_events"] = 900
    return cell


def test_rounds_interleave_the_plan_forwards_then_backwards() -> None:
    assert rounds(["a", "b", "c"], 3) == [
        (0, "a"), (0, "b"), (0, "c"),
        (1, "c"), (1, "b"), (1, "a"),
        (2, "a"), (2, "b"), (2, "c"),
    ]  # fmt: skip
    assert rounds(["a"], 0) == [(0, "a")]


def test_median_and_spread_ignore_missing_figures() -> None:
    assert median([3.0, None, 1.0, 2.0]) == 2.0
    assert median([None]) is None
    assert spread([90.0, 100.0, 110.0]) == pytest.approx(0.2)
    assert spread([100.0, None]) is None
    assert spread([0.0, 0.0]) is None


def test_combine_takes_the_median_of_each_figure_and_keeps_the_repeats() -> None:
    cell = combine([run(100.0, 12.0, 3.0), run(130.0, 10.0, 2.0), run(90.0, 11.0, 4.0)])
    assert (cell.status, cell.events_per_s, cell.cpu_s_per_m, cell.seconds) == (
        "ok", 100.0, 11.0, 3.0,
    )  # fmt: skip
    assert cell.peak_rss_mb == 0.13  # the largest
    assert [r["events_per_s"] for r in cell.extra["repeats"]] == [100.0, 130.0, 90.0]
    assert cell.extra["spread"]["events_per_s"] == pytest.approx(0.4)
    assert cell.extra["spread"]["cpu_s_per_m"] == pytest.approx(2 / 11)


def test_a_repeat_that_disagrees_makes_the_cell_a_mismatch() -> None:
    bad = run(120.0, 9.0, status="mismatch", note="output 799 records")
    cell = combine([run(100.0, 12.0), bad, run(110.0, 11.0)])
    assert cell.status == "mismatch"
    assert cell.note == "repeat 2 of 3: output 799 records"
    assert len(cell.extra["repeats"]) == 3


def test_a_too_short_repeat_keeps_the_cell_out_of_the_targets() -> None:
    short = run(100.0, 12.0, note="too short to time")
    short.extra["too_short"] = True
    cell = combine([run(100.0, 12.0), short])
    assert cell.extra["too_short"] and cell.note == "too short to time"


def test_failed_or_long_first_runs_are_not_repeated() -> None:
    assert worth_repeating(run(100.0, 1.0, seconds=5.0), 20.0)
    assert not worth_repeating(run(100.0, 1.0, seconds=25.0), 20.0)
    assert not worth_repeating(run(100.0, 1.0, status="failed"), 20.0)
    calls: list[tuple[str, int]] = []

    def run_one(item: str, r: int) -> Cell:
        calls.append((item, r))
        return run(100.0, 1.0, seconds=30.0 if item == "slow" else 1.0)

    results = run_repeated(["fast", "slow", "other"], 3, 20.0, run_one)
    assert calls == [
        ("fast", 0), ("slow", 0), ("other", 0),
        ("other", 1), ("fast", 1),
        ("fast", 2), ("other", 2),
    ]  # fmt: skip
    assert {k: len(v) for k, v in results.items()} == {"fast": 3, "slow": 1, "other": 3}


def test_latency_is_the_median_of_its_repeats() -> None:
    cell = run(100.0, 1.0)
    repeats = []
    for p50, p99 in ((80.0, 200.0), (90.0, 150.0), (70.0, 180.0)):
        one = Cell("streamline", "W1", p50_ms=p50, p99_ms=p99, latency_samples=1000)
        repeats.append(one)
    repeats.append(Cell("streamline", "W1", latency_note="did not join"))
    combine_latency(cell, repeats)
    assert (cell.p50_ms, cell.p99_ms, cell.latency_samples) == (80.0, 180.0, 1000)
    assert cell.latency_note == "did not join"
    assert cell.extra["spread"]["p99_ms"] == pytest.approx(50 / 180)
    assert len(cell.extra["latency_repeats"]) == 4


def test_the_page_gives_each_cells_range_and_spread() -> None:
    reps = [run(100.0, 12.0), run(130.0, 10.0), run(90.0, 11.0)]
    for r, share in zip(reps, (0.2, 0.3, 0.6), strict=True):
        r.extra["others_cpu_share"] = share
    cell = combine(reps)
    combine_latency(cell, [Cell("streamline", "W1", p50_ms=80.0, p99_ms=p99) for p99 in (200.0, 150.0)])  # fmt: skip
    once = combine([run(50.0, 20.0, seconds=40.0)])
    once.system = "faust"
    text = render_repeats([cell, once, Cell("faust", "W3", status="n/a")])
    lines = text.splitlines()
    assert "| streamline | W1 validate+filter+map | 3 + 2 latency | 90 to 130 | 40% | 10.0 to 12.0 | 18% | 150 to 200 | 29% | 30% |" in lines  # fmt: skip
    assert "| faust-streaming | W1 validate+filter+map | 1 | - | - | - | - | - | - | - |" in lines
    assert not any("W3" in line for line in lines)
    assert render_repeats([Cell("faust", "W3", status="n/a")]) == ""


def test_the_spread_table_gives_the_previous_and_the_newest_figure() -> None:
    history = [
        {"date": "d1", "suite": "classic", "load": "1 / 1", "ratios": {"W2 x": "2.00x", "W1 y": "50%"}},
        {"date": "d2", "suite": "nexmark", "load": "1 / 1", "ratios": {"q7 z": "1.00x"}},
        {"date": "d3", "suite": "classic", "load": "1 / 1", "ratios": {"W2 x": "2.10x", "W1 y": "60%"}},
    ]  # fmt: skip
    lines = render_spread(history).splitlines()
    assert "| ratio | runs | previous run | newest run | spread | |" in lines
    assert "| W2 x | 1, 3 | 2.00 | 2.10 | 5% | within |" in lines
    assert "| W1 y | 1, 3 | 0.50 | 0.60 | 18% | **outside** |" in lines
    assert not any(line.startswith("| q7 z") for line in lines)


def test_each_ratio_is_also_computed_on_every_repeat_alone() -> None:
    def cell(system: str, eps: list[float], cpu: list[float]) -> Cell:
        out = combine([run(e, c) for e, c in zip(eps, cpu, strict=True)])
        out.system = system
        return out

    cells = [
        cell("bare", [100_000.0, 120_000.0, 110_000.0], [2.0, 2.0, 2.5]),
        cell("streamline", [60_000.0, 66_000.0, 77_000.0], [10.0, 12.0, 10.0]),
    ]
    cells[0].workload = "W0-tx"
    ranges = ratio_ranges(cells)
    assert ranges["W1 events/s / transactional loop's"] == (0.55, 0.7)  # 60/100, 66/120, 77/110
    assert ranges["W1 CPU s/M / transactional loop's"] == (4.0, 6.0)
    assert repeat_cells(cells, 2)[1].events_per_s == 77_000.0
    text = render_targets(round_two_targets(cells), ranges)
    assert (
        "| W1 events/s / transactional loop's | 60% | ≥ 75% | **missed** | 0.55 to 0.70 |" in text
    )


def test_the_others_share_of_the_cpu_is_what_the_system_did_not_use() -> None:
    # 2 cores for 10 s: 20 CPU s; the machine was busy 12 s, 7 of them the system's own
    assert others_share(12.0, 7.0, 10.0, 2) == 0.25
    assert others_share(5.0, 7.0, 10.0, 2) == 0.0  # sampling skew: never negative
    assert others_share(1.0, 0.0, 0.0, 2) == 0.0


def test_cells_timed_too_briefly_get_further_interleaved_rounds() -> None:
    calls: list[tuple[str, int]] = []
    timed = {"bare": 0.4, "tx": 0.9, "slow": 2.0}

    def run_one(item: str, r: int) -> Cell:
        calls.append((item, r))
        return run(100.0, 1.0, seconds=timed[item])

    results = run_repeated(["bare", "tx", "slow"], 3, 20.0, run_one, min_timed_s=3.0, max_repeats=5)
    # 3 s needs 8 runs of 0.4 s (capped at 5) and 4 of 0.9 s; 3 of 2 s are enough
    assert {k: len(v) for k, v in results.items()} == {"bare": 5, "tx": 4, "slow": 3}
    assert calls[9:] == [("tx", 3), ("bare", 3), ("bare", 4)]
    assert not needs_more([run(1.0, 1.0, seconds=0.1, status="mismatch")], 3.0)
    short = run(1.0, 1.0, seconds=0.1)
    short.extra["too_short"] = True
    assert not needs_more([run(1.0, 1.0, seconds=0.1), short], 3.0)
    assert needs_more([run(1.0, 1.0, seconds=0.1)], 3.0)
