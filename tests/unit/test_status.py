"""`streamline status`'s pure part: states, the graph, upstream causes, history, exit code."""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Any

from streamline.ops.status import (
    Activity,
    exit_code,
    graph_edges,
    lineage_activity,
    parse_beat,
    root_causes,
    summarize,
)

NOW = 1_800_000_000_000


def beat(
    name: str,
    source: str,
    sink: str,
    status: str,
    at: int = NOW - 1_000,
    instance: str = "i1",
    lag: int | None = 0,
    **extra: Any,
) -> dict[str, Any]:
    return {
        "topology": name,
        "version": "1",
        "fingerprint": "f" * 64,
        "instance": instance,
        "time": at,
        "partitions": [
            {
                "topic": source,
                "partition": 0,
                "watermark": at - 500,
                "last_event_time": at - 500,
                "committed_offset": 5,
                "end_offset": 5 + (lag or 0),
                "lag": lag,
                "staleness_ms": 500,
                "status": status,
            }
        ],
        "ready": True,
        "last_commit": at - 200,
        "sla": {"max_staleness": 2000, "breach_after": 4000, "heartbeat_interval": 500},
        "topics": {"sources": [source], "sink": sink, "dead_letters": f"{name}.dlq"},
        **extra,
    }


def rows_of(*documents: dict[str, Any], activity: dict[str, Activity] | None = None):  # type: ignore[no-untyped-def]
    beats = [b for d in documents if (b := parse_beat(d)) is not None]
    return {r.name: r for r in summarize(beats, activity or {}, NOW)}


def test_a_chain_late_at_its_head_names_the_head_as_the_cause_downstream() -> None:
    rows = rows_of(
        beat("a", "in", "ab", "late"),
        beat("b", "ab", "bc", "late"),
        beat("c", "bc", "out", "breached"),
    )
    assert rows["a"].label == "late"
    assert rows["b"].label == "late (upstream: a)"
    assert rows["c"].label == "breached (upstream: a)"
    assert rows["c"].upstreams == ["b"]
    assert exit_code(list(rows.values())) == 1
    assert graph_edges(list(rows.values())) == [("a", "b"), ("b", "c")]


def test_all_ok_exits_0_and_names_no_upstream() -> None:
    rows = rows_of(beat("a", "in", "ab", "ok"), beat("b", "ab", "out", "ok"))
    assert [r.label for r in rows.values()] == ["ok", "ok"]
    assert exit_code(list(rows.values())) == 0


def test_a_late_topology_below_an_ok_one_is_its_own_cause() -> None:
    rows = rows_of(beat("a", "in", "ab", "ok"), beat("b", "ab", "out", "late"))
    assert rows["b"].label == "late"
    assert exit_code(list(rows.values())) == 1


def test_the_newest_beat_of_each_live_instance_decides_and_a_silent_one_is_down() -> None:
    rows = rows_of(
        beat("a", "in", "out", "late", at=NOW - 5_000),
        beat("a", "in", "out", "ok", at=NOW - 1_000),
        beat("gone", "x", "y", "ok", at=NOW - 60_000),
    )
    assert rows["a"].state == "ok"
    assert rows["a"].instances == ["i1"]
    assert rows["gone"].state == "down"
    assert rows["gone"].instances == [] and rows["gone"].ready is False


def test_instances_add_up_lag_and_the_worst_partition_wins() -> None:
    one = beat("a", "in", "out", "ok", instance="i1", lag=3)
    two = beat("a", "in", "out", "late", instance="i2", lag=4)
    two["partitions"][0]["partition"] = 1
    rows = rows_of(one, two)
    assert rows["a"].state == "late"
    assert rows["a"].lag == 7
    assert rows["a"].instances == ["i1", "i2"]


def test_history_keeps_the_worst_state_of_each_minute() -> None:
    minute = NOW - NOW % 60_000
    rows = rows_of(
        beat("a", "in", "out", "ok", at=minute - 50_000),
        beat("a", "in", "out", "breached", at=minute - 30_000),
        beat("a", "in", "out", "ok", at=minute + 100),
    )
    assert rows["a"].history == [(minute - 60_000, "breached"), (minute, "ok")]


def test_only_filters_rows_but_causes_come_from_every_topology() -> None:
    beats = [
        parse_beat(beat("a", "in", "ab", "late")),
        parse_beat(beat("b", "ab", "out", "late")),
    ]
    rows = summarize([b for b in beats if b], {}, NOW, only=["b*"])
    assert [r.label for r in rows] == ["late (upstream: a)"]


def test_root_causes_survive_a_cycle() -> None:
    upstreams = {"a": ["b"], "b": ["a"], "c": ["b"]}
    states = {"a": "late", "b": "late", "c": "late"}
    assert root_causes("c", states, upstreams) == ["a", "b"]


def test_lineage_activity_counts_dead_letters_and_late_records_per_topology() -> None:
    event = {
        "eventTime": "2027-01-15T08:00:00.000+00:00",
        "job": {"name": "a"},
        "run": {
            "facets": {"streamline_counts": {"late": 2, "dead_letters": {"decode": 3, "map": 1}}}
        },
        "inputs": [{"name": "in"}],
        "outputs": [
            {"name": "out"},
            {"namespace": "kafka://k:9092", "name": "a.dlq"},
            {"namespace": "file", "name": "/lake/part-in-0-1-2.jsonl"},  # a file sink's file
            {"namespace": "http://h:8080", "name": "/hook"},  # a webhook
        ],
    }
    activity = lineage_activity([event, event, {"junk": 1}])
    assert activity["a"].dead_letters == 8
    assert activity["a"].late == 4
    assert activity["a"].last_commit == int(datetime(2027, 1, 15, 8, tzinfo=UTC).timestamp() * 1000)
    assert activity["a"].outputs == {"out", "a.dlq"}
    rows = rows_of(beat("a", "in", "out", "ok"), activity=activity)
    assert rows["a"].dead_letters_last_hour == 8 and rows["a"].late_last_hour == 4


def test_an_old_heartbeat_without_details_still_parses() -> None:
    document = beat("a", "in", "out", "ok")
    for key in ("ready", "last_commit", "sla", "topics"):
        del document[key]
    parsed = parse_beat(document)
    assert parsed is not None and parsed.sources == ("in",) and parsed.sink is None
    assert parse_beat({"nope": 1}) is None


def test_the_page_escapes_names_and_draws_one_arrow_per_edge() -> None:
    import re

    from streamline.cli.status_page import graph_svg, status_html

    rows = rows_of(
        beat("a<script>", "in", "ab", "late"),
        beat("b", "ab", "bc", "late"),
        beat("c", "bc", "out", "ok"),
    )
    page = status_html(list(rows.values()), 5, NOW)
    assert "<script>" not in page and "a&lt;script&gt;" in page
    assert 'http-equiv="refresh" content="5"' in page
    svg = graph_svg(list(rows.values()))
    assert len(re.findall(r'class="edge"', svg)) == 2
    # columns by depth: a, then b, then c, left to right
    xs = {
        name: int(x)
        for name, x in re.findall(r'data-topology="([^"]+)" data-state="\w+"><rect x="(\d+)"', svg)
    }
    assert xs["a&lt;script&gt;"] < xs["b"] < xs["c"]
