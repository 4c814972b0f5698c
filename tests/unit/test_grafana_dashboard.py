"""deploy/grafana/streamline.json is a Grafana dashboard that queries only what streamline exports."""

from __future__ import annotations

import itertools
from typing import Any

import pytest

from tests.support.dashboard import (
    Exposition,
    Use,
    exercised_metrics,
    load_dashboard,
    metric_uses,
    missing,
    panels,
    queries,
)

DATASOURCE = {"type": "prometheus", "uid": "${datasource}"}

COVERED = {
    "streamline_stage_inflight",
    "streamline_call_seconds",
    "streamline_circuit_state",
    "streamline_circuit_transitions",
    "streamline_throttled_seconds",
    "streamline_records_in",
    "streamline_records_out",
    "streamline_consumer_lag",
    "streamline_watermark_ms",
    "streamline_watermark_lag_seconds",
    "streamline_staleness_seconds",
    "streamline_sla_status",
    "streamline_dead_letters",
    "streamline_late_records",
    "streamline_transaction_commit_seconds",
    "streamline_transaction_aborts",
    "streamline_restore_records",
    "streamline_restore_remaining",
    "streamline_rebalances",
    "streamline_end_to_end_latency_seconds",
    "streamline_ready",
    "streamline_assigned_partitions",
    "streamline_validation_failures",
    "streamline_quality_ratio",
    "streamline_field_null_ratio",
}
"""Families the dashboard must show (throughput, lag, event time, errors, transactions, state)."""


@pytest.fixture(scope="module")
def dashboard() -> dict[str, Any]:
    return load_dashboard()


@pytest.fixture(scope="module")
def exposition() -> Exposition:
    return Exposition.parse(exercised_metrics().render().decode())


def graph_panels(dashboard: dict[str, Any]) -> list[dict[str, Any]]:
    return [p for p in panels(dashboard) if p["type"] != "row"]


def test_the_dashboard_has_a_title_uid_schema_version_and_panels(dashboard: dict[str, Any]) -> None:
    assert dashboard["uid"] == "streamline"
    assert dashboard["title"]
    assert isinstance(dashboard["schemaVersion"], int)
    assert graph_panels(dashboard)


def test_panel_ids_are_unique(dashboard: dict[str, Any]) -> None:
    ids = [p["id"] for p in panels(dashboard)]
    assert all(isinstance(i, int) for i in ids)
    assert len(ids) == len(set(ids))


def test_every_panel_has_a_grid_position_inside_24_columns(dashboard: dict[str, Any]) -> None:
    for panel in panels(dashboard):
        pos = panel["gridPos"]
        assert {"h", "w", "x", "y"} <= set(pos), panel["title"]
        assert pos["h"] > 0 and pos["w"] > 0 and pos["x"] >= 0 and pos["y"] >= 0
        assert pos["x"] + pos["w"] <= 24, panel["title"]


def test_no_two_panels_overlap(dashboard: dict[str, Any]) -> None:
    def cells(panel: dict[str, Any]) -> set[tuple[int, int]]:
        pos = panel["gridPos"]
        return {
            (x, y)
            for x in range(pos["x"], pos["x"] + pos["w"])
            for y in range(pos["y"], pos["y"] + pos["h"])
        }

    for a, b in itertools.combinations(list(panels(dashboard)), 2):
        assert not cells(a) & cells(b), (a["title"], b["title"])


def test_every_graph_panel_queries_the_datasource_variable(dashboard: dict[str, Any]) -> None:
    for panel in graph_panels(dashboard):
        assert panel["datasource"] == DATASOURCE, panel["title"]
        assert panel["targets"], panel["title"]
        ref_ids = [t["refId"] for t in panel["targets"]]
        assert len(ref_ids) == len(set(ref_ids)), panel["title"]
        for target in panel["targets"]:
            assert target["datasource"] == DATASOURCE, panel["title"]
            assert target["expr"].strip(), panel["title"]


def test_the_variables_are_the_datasource_and_the_topology(dashboard: dict[str, Any]) -> None:
    variables = {v["name"]: v for v in dashboard["templating"]["list"]}
    assert variables["datasource"]["type"] == "datasource"
    assert variables["datasource"]["query"] == "prometheus"
    topology = variables["topology"]
    assert topology["datasource"] == DATASOURCE
    assert topology["query"]["query"] == "label_values(streamline_info, topology)"


def test_every_streamline_metric_in_a_panel_is_filtered_by_the_topology(
    dashboard: dict[str, Any],
) -> None:
    for panel in graph_panels(dashboard):
        for target in panel["targets"]:
            for use in metric_uses(target["expr"]):
                assert "topology" in use.labels, (panel["title"], use.sample)
            assert target["expr"].count('topology="$topology"') == len(
                metric_uses(target["expr"])
            ), (panel["title"], target["expr"])


def test_the_dashboard_shows_every_family_an_operator_needs(
    dashboard: dict[str, Any], exposition: Exposition
) -> None:
    shown = {
        exposition.family_of(use.sample)
        for _where, query in queries(dashboard)
        for use in metric_uses(query)
    }
    assert COVERED - shown == set()


def test_every_queried_metric_and_label_is_exported_by_streamline(
    dashboard: dict[str, Any], exposition: Exposition
) -> None:
    problems = [
        f"{where}: {problem}"
        for where, query in queries(dashboard)
        for problem in missing(metric_uses(query), exposition)
    ]
    assert problems == []


def test_the_exercised_metrics_write_every_family(exposition: Exposition) -> None:
    # missing() checks labels on samples: a family without samples could not be checked
    for name, kind in exposition.families.items():
        samples = [s for s in exposition.samples if exposition.family_of(s) == name]
        assert samples, f"{name} ({kind}) has no samples: extend exercised_metrics()"


# The analyser itself: what it extracts, and what it rejects.


def test_metric_uses_collects_selector_and_grouping_labels() -> None:
    uses = metric_uses(
        'sum by (topic, partition) (rate(streamline_records_in_total{topology="$topology"}'
        "[$__rate_interval]))"
    )
    assert uses == [
        Use("streamline_records_in_total", frozenset({"topic", "partition", "topology"}))
    ]


def test_metric_uses_scopes_a_grouping_to_its_own_argument() -> None:
    uses = metric_uses(
        "sum by (stage) (rate(streamline_stage_seconds_sum[5m])) / "
        "sum(rate(streamline_stage_records_total[5m]))"
    )
    assert uses == [
        Use("streamline_stage_seconds_sum", frozenset({"stage"})),
        Use("streamline_stage_records_total", frozenset()),
    ]


def test_metric_uses_reads_label_values_queries() -> None:
    assert metric_uses("label_values(streamline_info, topology)") == [
        Use("streamline_info", frozenset({"topology"}))
    ]


def test_metric_uses_ignores_metric_names_inside_label_values() -> None:
    assert metric_uses('streamline_ready{job="streamline_ready_total"}') == [
        Use("streamline_ready", frozenset({"job"}))
    ]


@pytest.mark.parametrize(
    "expr",
    [
        "sum(rate(streamline_records_in_total[5m])) by (topic)",
        "sum without (partition) (streamline_consumer_lag)",
        "streamline_ready * on (instance) streamline_assigned_partitions",
        "rate(kafka_server_bytes_in{topic='x'}[5m]) + streamline_ready",
    ],
)
def test_metric_uses_refuses_what_it_cannot_check(expr: str) -> None:
    with pytest.raises(ValueError):
        metric_uses(expr)


@pytest.mark.parametrize(
    ("expr", "problem"),
    [
        ("rate(streamline_records_in[5m])", "no such metric"),
        ("streamline_consumer_lag_total", "no such metric"),
        ("streamline_transaction_commit_seconds", "no such metric"),
        ("sum by (stage) (streamline_consumer_lag)", "no label ['stage']"),
        ("sum by (le) (streamline_transaction_commit_seconds_sum)", "no label ['le']"),
    ],
)
def test_missing_reports_wrong_names_suffixes_and_labels(
    expr: str, problem: str, exposition: Exposition
) -> None:
    found = missing(metric_uses(expr), exposition)
    assert len(found) == 1 and problem in found[0]


def test_missing_accepts_buckets_by_le_and_target_labels(exposition: Exposition) -> None:
    expr = "sum by (le, instance) (rate(streamline_transaction_commit_seconds_bucket[5m]))"
    assert missing(metric_uses(expr), exposition) == []
