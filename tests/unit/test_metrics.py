"""Prometheus series of one topology (streamline.observability.metrics)."""

from __future__ import annotations

import pytest

from streamline.observability.metrics import Metrics


@pytest.fixture
def metrics() -> Metrics:
    return Metrics("orders-eur")


def test_records_in_adds_up_per_partition(metrics: Metrics) -> None:
    metrics.records_in("orders", 0, 10)
    metrics.records_in("orders", 0, 5)
    metrics.records_in("orders", 1)
    assert metrics.value("records_in_total", topic="orders", partition=0) == 15
    assert metrics.value("records_in_total", topic="orders", partition=1) == 1


def test_every_series_is_labelled_by_topology_and_prefixed(metrics: Metrics) -> None:
    metrics.records_out("revenue", 3)
    assert metrics.value("streamline_records_out_total", topic="revenue") == 3
    assert metrics.value("records_out_total", topology="orders-eur", topic="revenue") == 3
    assert metrics.value("records_out_total", topology="other", topic="revenue") is None
    for line in metrics.render().decode().splitlines():
        if not line.startswith("#"):
            assert line.startswith("streamline_")
            assert 'topology="orders-eur"' in line


def test_two_instances_keep_separate_counts() -> None:
    a, b = Metrics("same"), Metrics("same")
    a.records_out("out", 2)
    assert a.value("records_out_total", topic="out") == 2
    assert b.value("records_out_total", topic="out") is None


def test_failure_counters_are_labelled_by_reason(metrics: Metrics) -> None:
    metrics.dead_letter("decode", "decode")
    metrics.dead_letter("decode", "decode", 2)
    metrics.dead_letter("validation", "validate")
    metrics.retry("map")
    metrics.late("orders", 4)
    metrics.dropped("filter", "false", 7)
    assert metrics.value("dead_letters_total", error_type="decode", stage="decode") == 3
    assert metrics.value("dead_letters_total", error_type="validation", stage="validate") == 1
    assert metrics.value("retries_total", stage="map") == 1
    assert metrics.value("late_records_total", topic="orders") == 4
    assert metrics.value("dropped_total", stage="filter", reason="false") == 7


def test_stage_time_is_per_batch_and_records_are_counted_beside_it(metrics: Metrics) -> None:
    metrics.observe_stage("map", 0.002, 100)
    metrics.observe_stage("map", 0.004, 50)
    assert metrics.value("stage_seconds_count", stage="map") == 2
    assert metrics.value("stage_seconds_sum", stage="map") == pytest.approx(0.006)
    assert metrics.value("stage_records_total", stage="map") == 150


def test_latency_histogram_counts_each_record_in_its_bucket(metrics: Metrics) -> None:
    metrics.observe_latency([0.005, 0.01, 0.3])
    metrics.observe_latency(iter([700.0]))
    name = "end_to_end_latency_seconds_bucket"
    assert metrics.value(name, le="0.01") == 2  # bounds are inclusive
    assert metrics.value(name, le="0.5") == 3
    assert metrics.value(name, le="600.0") == 3
    assert metrics.value(name, le="+Inf") == 4
    assert metrics.value("end_to_end_latency_seconds_count") == 4
    assert metrics.value("end_to_end_latency_seconds_sum") == pytest.approx(700.315)


def test_partition_gauges_hold_the_last_value(metrics: Metrics) -> None:
    metrics.partitions.set_lag("orders", 2, 100)
    metrics.partitions.set_lag("orders", 2, 40)
    metrics.partitions.set_committed_offset("orders", 2, 1234)
    metrics.partitions.set_watermark("orders", 2, 1_700_000_000_000)
    metrics.partitions.set_watermark_lag("orders", 2, 1.5)
    metrics.partitions.set_staleness("orders", 2, 0.5)
    labels = {"topic": "orders", "partition": 2}
    assert metrics.value("consumer_lag", **labels) == 40
    assert metrics.value("committed_offset", **labels) == 1234
    assert metrics.value("watermark_ms", **labels) == 1_700_000_000_000
    assert metrics.value("watermark_lag_seconds", **labels) == 1.5
    assert metrics.value("staleness_seconds", **labels) == 0.5


def test_sla_status_is_one_hot(metrics: Metrics) -> None:
    metrics.partitions.set_sla_status("orders", 0, "ok")
    metrics.partitions.set_sla_status("orders", 0, "breached")
    statuses = {
        s: metrics.value("sla_status", topic="orders", partition=0, status=s)
        for s in ("ok", "late", "breached")
    }
    assert statuses == {"ok": 0, "late": 0, "breached": 1}


def test_unknown_sla_status_is_rejected(metrics: Metrics) -> None:
    with pytest.raises(ValueError, match="unknown SLA status 'stale'"):
        metrics.partitions.set_sla_status("orders", 0, "stale")  # type: ignore[arg-type]


def test_removing_a_partition_drops_its_gauges_and_keeps_its_counter(metrics: Metrics) -> None:
    for p in (0, 1):
        metrics.records_in("orders", p, 3)
        metrics.partitions.set_lag("orders", p, 7)
        metrics.partitions.set_committed_offset("orders", p, 9)
        metrics.partitions.set_watermark("orders", p, 1)
        metrics.partitions.set_watermark_lag("orders", p, 1.0)
        metrics.partitions.set_staleness("orders", p, 1.0)
        metrics.partitions.set_sla_status("orders", p, "late")
    metrics.partitions.remove_partition("orders", 0)
    for name in ("consumer_lag", "committed_offset", "watermark_ms", "staleness_seconds"):
        assert metrics.value(name, topic="orders", partition=0) is None
        assert metrics.value(name, topic="orders", partition=1) is not None
    assert metrics.value("watermark_lag_seconds", topic="orders", partition=0) is None
    assert metrics.value("sla_status", topic="orders", partition=0, status="late") is None
    assert metrics.value("sla_status", topic="orders", partition=1, status="late") == 1
    assert metrics.value("records_in_total", topic="orders", partition=0) == 3
    exported = metrics.render().decode().splitlines()
    left = [s for s in exported if 'partition="0"' in s and "records_in" not in s]
    assert left == []


def test_a_removed_partition_comes_back_when_reassigned(metrics: Metrics) -> None:
    metrics.partitions.set_lag("orders", 0, 7)
    metrics.partitions.set_sla_status("orders", 0, "ok")
    metrics.partitions.remove_partition("orders", 0)
    metrics.partitions.set_lag("orders", 0, 3)
    metrics.partitions.set_sla_status("orders", 0, "late")
    assert metrics.value("consumer_lag", topic="orders", partition=0) == 3
    assert metrics.value("sla_status", topic="orders", partition=0, status="late") == 1


def test_removing_an_unknown_partition_is_harmless(metrics: Metrics) -> None:
    metrics.partitions.remove_partition("orders", 9)
    metrics.stores.remove_store_partition("totals", 9)


def test_transactions_count_commits_and_aborts_by_reason(metrics: Metrics) -> None:
    metrics.transaction_committed(0.02)
    metrics.transaction_committed(0.03)
    metrics.transaction_aborted("fenced")
    assert metrics.value("transactions_total") == 2
    assert metrics.value("transaction_commit_seconds_count") == 2
    assert metrics.value("transaction_aborts_total", reason="fenced") == 1


def test_rebalances_are_counted_by_kind_and_start_at_zero(metrics: Metrics) -> None:
    assert metrics.value("rebalances_total", kind="lost") == 0
    metrics.rebalance("assigned")
    metrics.rebalance("revoked")
    metrics.rebalance("assigned")
    assert metrics.value("rebalances_total", kind="assigned") == 2
    assert metrics.value("rebalances_total", kind="revoked") == 1
    with pytest.raises(ValueError, match="unknown rebalance kind"):
        metrics.rebalance("moved")  # type: ignore[arg-type]


def test_state_store_series_and_their_removal(metrics: Metrics) -> None:
    metrics.stores.set_state_keys("totals", 0, 42)
    metrics.stores.restored("totals", 0, 100)
    metrics.stores.restored("totals", 0, 50)
    metrics.stores.set_restore_remaining("totals", 0, 0)
    assert metrics.value("state_keys", store="totals", partition=0) == 42
    assert metrics.value("restore_records_total", store="totals", partition=0) == 150
    assert metrics.value("restore_remaining", store="totals", partition=0) == 0
    metrics.stores.remove_store_partition("totals", 0)
    assert metrics.value("state_keys", store="totals", partition=0) is None
    assert metrics.value("restore_remaining", store="totals", partition=0) is None
    assert metrics.value("restore_records_total", store="totals", partition=0) == 150


def test_ready_starts_false_and_follows_set_ready(metrics: Metrics) -> None:
    assert metrics.value("ready") == 0
    assert not metrics.is_ready
    metrics.set_ready(True)
    assert metrics.value("ready") == 1
    assert metrics.is_ready
    metrics.set_assigned_partitions(3)
    assert metrics.value("assigned_partitions") == 3


def test_info_exports_one_series_for_the_latest_version(metrics: Metrics) -> None:
    metrics.set_info("3", "abc123")
    metrics.set_info("4", "def456")
    assert metrics.value("info", version="3", fingerprint="abc123") is None
    assert metrics.value("info", version="4", fingerprint="def456") == 1


def test_value_is_none_for_a_series_never_written(metrics: Metrics) -> None:
    assert metrics.value("records_in_total", topic="nope", partition=0) is None
    assert metrics.value("no_such_metric") is None


def test_latency_batches_land_in_the_buckets_one_by_one_observations_would() -> None:
    from bisect import bisect_left
    from random import Random

    rng = Random(7)
    batches = [
        [rng.choice([0.01, 0.5, 600.0, rng.uniform(0, 900)]) for _ in range(n)] for n in (0, 1, 500)
    ]
    metrics = Metrics("t")
    for batch in batches:
        metrics.observe_latency(batch)
    histogram = metrics._latency
    expected = [0] * (len(histogram._bounds) + 1)
    for v in (v for batch in batches for v in batch):
        expected[bisect_left(histogram._bounds, v)] += 1
    assert histogram._counts == expected
    assert histogram._sum == pytest.approx(sum(v for batch in batches for v in batch))
