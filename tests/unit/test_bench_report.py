"""The benchmark's pure parts: output checksums, expectations, the table, ratios and targets."""

from __future__ import annotations

from pathlib import Path

import yaml
from bench.launch import ROOT, Context, make_launch
from bench.report import Cell, checksum, percentile, render_markdown, targets
from bench.results_page import round_two_targets
from bench.workload import (
    CLOSING_PREFIX,
    PARTITIONS,
    SESSION_GAP_MS,
    WINDOW_MS,
    Expectation,
    OrderStream,
    closing_key,
    partition_of,
    window_row,
)


def test_checksum_ignores_order_of_rows() -> None:
    rows = [("c-1", 0, 2, 3.5), ("c-2", 60_000, 1, 1.25)]
    assert checksum(rows) == checksum(list(reversed(rows)))


def test_checksum_sees_a_duplicate_row() -> None:
    rows = [("c-1", 0, 2, 3.5)]
    assert checksum(rows) != checksum(rows + rows)


def test_checksum_sees_a_different_sum() -> None:
    assert checksum([("c-1", 0, 2, 3.5)]) != checksum([("c-1", 0, 2, 3.500001)])


def test_window_row_rounds_the_sum_to_six_digits() -> None:
    assert window_row("c-1", 0, 2, 0.1 + 0.2) == ("c-1", 0, 2, 0.3)


def test_percentile_by_nearest_rank() -> None:
    values = [float(v) for v in range(1, 101)]
    assert percentile(values, 0.5) == 50.0
    assert percentile(values, 0.99) == 99.0
    assert percentile([], 0.5) is None


def test_closing_keys_land_in_their_partition() -> None:
    for p in range(PARTITIONS):
        key = closing_key(p)
        assert key.startswith(CLOSING_PREFIX)
        assert partition_of(key) == p


def test_event_time_only_increases_within_a_partition() -> None:
    last: dict[int, int] = {}
    for partition, _key, record in OrderStream(2000, base_ms=1_767_225_600_000):
        assert record["created_at"] > last.get(partition, 0)
        last[partition] = record["created_at"]


def test_expectation_counts_every_real_event_once_in_windows_and_sessions() -> None:
    expectation = Expectation()
    for _p, _k, record in OrderStream(3000, base_ms=1_767_225_600_000):
        expectation.add(record)
    expected = expectation.finish()
    assert expected.events == 3000 + PARTITIONS
    assert sum(row[2] for row in expected.window_rows()) == 3000
    assert sum(row[2] for row in expected.sessions) == 3000
    assert all(row[1] % WINDOW_MS == 0 for row in expected.window_rows())


def test_a_gap_longer_than_the_session_gap_starts_a_new_session() -> None:
    expectation = Expectation()
    base = 1_767_225_600_000
    for t in (base, base + 1000, base + 1000 + SESSION_GAP_MS + 1):
        expectation.add(
            {
                "order_id": str(t),
                "customer_id": "c-1",
                "amount": 1.0,
                "currency": "EUR",
                "status": "PAID",
                "country": "DE",
                "created_at": t,
            }
        )
    sessions = sorted(expectation.finish().sessions)
    assert [(s[1], s[2]) for s in sessions] == [(base, 2), (base + 1000 + SESSION_GAP_MS + 1, 1)]


def _cells() -> list[Cell]:
    return [
        Cell("bare", "W0-tx", events_per_s=100_000.0),
        Cell("streamline", "W1", events_per_s=70_000.0, p99_ms=150.0, commit_interval_ms=100),
        Cell("streamline", "W2", events_per_s=50_000.0),
        Cell("quix", "W2", events_per_s=20_000.0),
        Cell("faust", "W2", events_per_s=20_000.0),
        Cell("faust", "W3", status="n/a", note="no session windows"),
    ]


def test_targets_are_judged_on_the_ratios() -> None:
    verdicts = {t.name: t.met for t in targets(_cells())}
    assert verdicts["W2 streamline / Quix Streams"] is True  # 2.5x >= 2x
    assert verdicts["W2 streamline / faust-streaming"] is False  # 2.5x < 3x
    assert verdicts["W1 streamline / W0-tx"] is True  # 70% >= 60%
    assert verdicts["W1 streamline p99"] is True  # 150 ms <= 100 + 100 ms


def test_a_disagreeing_cell_counts_as_not_measured_for_targets() -> None:
    cells = _cells()
    cells[3].status = "mismatch"
    verdicts = {t.name: t.met for t in targets(cells)}
    assert verdicts["W2 streamline / Quix Streams"] is None


def test_markdown_table_marks_mismatches_and_unsupported_cells() -> None:
    cells = _cells()
    cells[2].status = "mismatch"
    text = render_markdown(cells, {"cpu_model": "test cpu", "cores": 2}, {"events": 1000})
    assert "| streamline | W2 tumbling count+sum | 50,000 |" in text
    assert "**MISMATCH**" in text
    assert "| n/a |" in text
    assert "faust-streaming W3: no session windows" in text
    assert "test cpu, 2 cores" in text


def test_w1_alo_is_w1_with_an_at_least_once_guarantee(tmp_path: Path) -> None:
    ctx = Context("t", "127.0.0.1:9092", tmp_path, ROOT / "schemas", 100)
    topologies = {}
    for workload in ("W1", "W1-alo"):
        launch = make_launch(ctx, "streamline", workload, "orders", "tp1")
        path = tmp_path / "topologies" / f"{launch.group}.yaml"
        topologies[workload] = yaml.safe_load(path.read_text())
    w1, alo = topologies["W1"], topologies["W1-alo"]
    assert (w1.pop("guarantee"), alo.pop("guarantee")) == ("exactly_once", "at_least_once")
    assert (w1.pop("name"), alo.pop("name")) == ("t-tp1-streamline-w1", "t-tp1-streamline-w1-alo")
    assert alo.pop("sink")["topic"] == "t-tp1-streamline-w1-alo-out"
    w1.pop("sink")
    assert alo == w1  # the same source, stages and commit interval


def _latency_cells(alo_p50: float, alo_p99: float) -> list[Cell]:
    return [
        Cell("streamline", "W1", events_per_s=90_000.0, cpu_s_per_m=11.0, p50_ms=63.0, p99_ms=119.0),
        Cell("streamline", "W1-alo", events_per_s=99_000.0, cpu_s_per_m=10.0,
             p50_ms=alo_p50, p99_ms=alo_p99),
        Cell("bytewax", "W1", events_per_s=67_000.0, cpu_s_per_m=15.0, p50_ms=13.0, p99_ms=32.0),
    ]  # fmt: skip


def test_at_least_once_latency_is_judged_against_bytewax_on_p50_and_p99() -> None:
    name = "W1 latency, at-least-once vs Bytewax (at-least-once)"

    def verdict(p50: float, p99: float) -> tuple[str, bool | None]:
        row = {t.name: t for t in round_two_targets(_latency_cells(p50, p99))}[name]
        return row.value, row.met

    assert verdict(12.0, 30.0) == ("0.94x (p50 12.0 vs 13.0 ms, p99 30.0 vs 32.0 ms)", True)
    assert verdict(13.0, 32.0)[1] is True  # equal is no worse
    assert verdict(14.0, 30.0) == ("1.08x (p50 14.0 vs 13.0 ms, p99 30.0 vs 32.0 ms)", False)
    assert verdict(12.0, 40.0)[1] is False  # p99 worse
    # the exactly-once W1 rows against Bytewax stay as they were
    met = {t.name: t.met for t in round_two_targets(_latency_cells(12.0, 30.0))}
    assert met["W1 p50 latency / Bytewax (at-least-once)'s"] is False
    assert met["W1 p99 latency / Bytewax (at-least-once)'s"] is False
    cells = [c for c in _latency_cells(12.0, 30.0) if c.workload != "W1-alo"]
    row = {t.name: t for t in round_two_targets(cells)}[name]
    assert (row.value, row.met) == ("not measured", None)


def test_w1_alo_throughput_is_reported_beside_w1_without_a_goal() -> None:
    row = {t.name: t for t in targets(_latency_cells(12.0, 30.0))}["W1-alo / W1"]
    assert (row.value, row.met) == ("110% (99,000 vs 90,000 events/s; CPU s/M 10.0 vs 11.0)", None)
    alone = {t.name: t for t in targets(_latency_cells(12.0, 30.0)[:1])}["W1-alo / W1"]
    assert (alone.value, alone.met) == ("not measured", None)
