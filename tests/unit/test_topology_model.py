"""The topology models: defaults, derived names, structure rules and the fingerprint."""

import re
from pathlib import Path
from typing import Any

import pytest
import yaml
from pydantic import ValidationError

from streamline.topology import Topology, TopologyError, load_topology
from streamline.topology.errors import problems_from_validation_error
from streamline.topology.model import AggregateCall, KeyByStage, WindowStage

PROJECT = Path(__file__).resolve().parents[2]
REVENUE = PROJECT / "topologies" / "revenue-per-minute.yaml"


def minimal(**overrides: Any) -> dict[str, Any]:
    data: dict[str, Any] = {
        "apiVersion": "streamline/v1",
        "name": "demo",
        "version": "1",
        "sources": [
            {
                "name": "orders",
                "topic": "orders",
                "schema": "com.example.Order",
                "event_time": "created_at",
                "watermark": {"max_out_of_orderness": "5s"},
            }
        ],
        "sink": {"topic": "valid-orders", "schema": "com.example.Order"},
    }
    data.update(overrides)
    return data


WINDOWED_STAGES = [
    {"key_by": "customer_id"},
    {"window": {"tumbling": "1m", "aggregate": {"n": "count()"}}},
]


def test_defaults_are_filled_in() -> None:
    topology = Topology.model_validate(minimal(stages=WINDOWED_STAGES))
    window = topology.window
    assert window is not None
    assert topology.sources[0].watermark.idle_timeout == 60_000
    assert (window.allowed_lateness, window.emit) == (0, "final")
    assert (topology.guarantee, topology.commit_interval, topology.lineage) == (
        "exactly_once",
        100,
        True,
    )
    assert topology.retry.attempts == 3
    assert topology.retry.topic_attempts == 0
    backoff = topology.retry.backoff
    assert (backoff.initial, backoff.multiplier, backoff.max, backoff.jitter) == (
        100,
        2.0,
        5000,
        True,
    )
    freshness = topology.freshness
    assert (freshness.max_staleness, freshness.breach_after, freshness.heartbeat_interval) == (
        300_000,
        900_000,
        5_000,
    )


def test_validate_stage_dead_letters_by_default() -> None:
    stage = {"validate": {"rules": [{"name": "positive", "expr": "amount > 0.0"}]}}
    topology = Topology.model_validate(minimal(stages=[stage]))
    assert topology.stages[0].validation.on_failure == "dead_letter"  # type: ignore[union-attr]


def test_breach_after_defaults_to_three_times_max_staleness() -> None:
    topology = Topology.model_validate(minimal(freshness={"max_staleness": "20m"}))
    assert topology.freshness.breach_after == 60 * 60_000


def test_owned_topic_names_derive_from_the_name() -> None:
    topology = Topology.model_validate(minimal())
    assert topology.dead_letter_topic == "demo.dlq"
    assert topology.late_topic == "demo.late"
    assert topology.retry_topic == "demo.retry"
    assert topology.repartition_topic == "demo.repartition"
    assert topology.changelog_topic("window") == "demo.window.changelog"
    assert topology.group_id == "demo"
    assert topology.transactional_id("host-1") == "demo-host-1"


def test_explicit_owned_topics_win_over_defaults() -> None:
    topology = Topology.model_validate(minimal(dead_letter_topic="errors", late_topic="too-late"))
    assert (topology.dead_letter_topic, topology.late_topic) == ("errors", "too-late")


def test_durations_are_kept_as_milliseconds() -> None:
    topology = load_topology(REVENUE)
    assert topology.sources[0].watermark.max_out_of_orderness == 5_000
    assert topology.window is not None and topology.window.tumbling == 60_000


@pytest.mark.parametrize(
    ("text", "function", "field"),
    [
        ("count()", "count", None),
        ("sum(amount)", "sum", "amount"),
        (" avg( amount ) ", "avg", "amount"),
        ("first(order_id)", "first", "order_id"),
    ],
)
def test_aggregates_parse_into_function_and_field(
    text: str, function: str, field: str | None
) -> None:
    call = AggregateCall.model_validate(text)
    assert (call.function, call.field) == (function, field)


@pytest.mark.parametrize(
    ("text", "message"),
    [
        ("median(amount)", "unknown aggregate function 'median'"),
        ("count(amount)", "takes no field"),
        ("sum()", "needs a field"),
        ("sum(amount", "expected function(field)"),
    ],
)
def test_bad_aggregates_say_what_is_wrong(text: str, message: str) -> None:
    with pytest.raises(ValidationError, match=re.escape(message)):
        AggregateCall.model_validate(text)


def test_key_by_takes_a_field_or_a_named_expression() -> None:
    expr_key = {"key_by": {"name": "region", "expr": "country + '/' + currency"}}
    by_field = Topology.model_validate(minimal(stages=WINDOWED_STAGES))
    by_expr = Topology.model_validate(minimal(stages=[expr_key, WINDOWED_STAGES[1]]))
    assert isinstance(by_field.key_by, KeyByStage) and by_field.key_by.key_name == "customer_id"
    assert isinstance(by_expr.key_by, KeyByStage) and by_expr.key_by.key_name == "region"


def test_stages_are_typed_by_their_key() -> None:
    topology = Topology.model_validate(minimal(stages=WINDOWED_STAGES))
    assert [type(s) for s in topology.stages] == [KeyByStage, WindowStage]


def rejection(data: dict[str, Any]) -> str:
    """The message a file with this content gets."""
    with pytest.raises(ValidationError) as caught:
        Topology.model_validate(data)
    return str(TopologyError("t.yaml", problems_from_validation_error(caught.value)))


@pytest.mark.parametrize(
    ("stages", "expected"),
    [
        ([WINDOWED_STAGES[1]], "stages[0].window: a window needs a key_by stage before it"),
        ([*WINDOWED_STAGES, {"filter": "true"}], "stages[2]: nothing may follow the window stage"),
        (
            [{"key_by": "a"}, {"key_by": "b"}, WINDOWED_STAGES[1]],
            "stages[1].key_by: a topology has at most one key_by stage",
        ),
    ],
)
def test_stage_order_is_checked(stages: list[dict[str, Any]], expected: str) -> None:
    assert expected in rejection(minimal(stages=stages))


def test_a_sink_that_is_also_a_source_is_rejected() -> None:
    message = rejection(minimal(sink={"topic": "orders", "schema": "com.example.Order"}))
    assert "sink.topic: topic 'orders' is also a source" in message


def test_values_are_not_coerced() -> None:
    message = rejection(minimal(version=3, lineage="no"))
    assert 'version: expected a string, got 3 (quote it: "3")' in message
    assert "lineage: expected true or false, got 'no'" in message


def test_hopping_advance_may_not_exceed_size() -> None:
    stages = [
        WINDOWED_STAGES[0],
        {"window": {"hopping": {"size": "1m", "advance": "2m"}, "aggregate": {"n": "count()"}}},
    ]
    assert "stages[1].window.hopping.advance: must not be longer than size" in rejection(
        minimal(stages=stages)
    )


def test_equality_compares_content_not_origin() -> None:
    loaded = load_topology(REVENUE)
    assert loaded == Topology.model_validate(yaml.safe_load(REVENUE.read_text()))


def reorder(value: Any) -> Any:
    """The same data with every mapping's keys in reverse order."""
    if isinstance(value, dict):
        return {key: reorder(value[key]) for key in reversed(list(value))}
    if isinstance(value, list):
        return [reorder(item) for item in value]
    return value


def test_fingerprint_ignores_key_order_and_formatting(tmp_path: Path) -> None:
    original = load_topology(REVENUE)
    rewritten = tmp_path / "topologies" / "revenue.yaml"
    rewritten.parent.mkdir()
    data = reorder(yaml.safe_load(REVENUE.read_text()))
    rewritten.write_text(yaml.safe_dump(data, sort_keys=False, default_flow_style=True, indent=4))
    assert load_topology(rewritten).fingerprint == original.fingerprint


def test_fingerprint_fills_defaults_and_normalises_durations() -> None:
    spelled_out = minimal(commit_interval="100ms", lineage=True)
    equivalent = minimal(freshness={"heartbeat_interval": "5000ms"})
    fingerprints = {
        Topology.model_validate(data).fingerprint for data in (minimal(), spelled_out, equivalent)
    }
    assert len(fingerprints) == 1


@pytest.mark.parametrize(
    "change",
    [{"version": "2"}, {"commit_interval": "200ms"}, {"lineage": False}, {"late_topic": "late"}],
)
def test_fingerprint_changes_with_content(change: dict[str, Any]) -> None:
    assert (
        Topology.model_validate(minimal(**change)).fingerprint
        != Topology.model_validate(minimal()).fingerprint
    )


def test_header_value_is_name_version_and_short_fingerprint() -> None:
    topology = load_topology(REVENUE)
    assert len(topology.fingerprint) == 64
    assert topology.fingerprint12 == topology.fingerprint[:12]
    assert topology.header_value == f"revenue-per-minute@3#{topology.fingerprint12}"


def test_canonical_form_reads_like_the_file() -> None:
    canonical = load_topology(REVENUE).canonical_json()
    assert '"revenue":"sum(amount)"' in canonical
    assert '"tumbling":60000' in canonical
    assert str(PROJECT) not in canonical


def test_map_mapping_form_is_the_shorthand_with_settings() -> None:
    short = Topology.model_validate(minimal(stages=[{"map": "examples.orders:to_eur"}]))
    long = Topology.model_validate(minimal(stages=[{"map": {"fn": "examples.orders:to_eur"}}]))
    assert short.stages[0].reference == long.stages[0].reference == "examples.orders:to_eur"  # type: ignore[union-attr]
    assert long.model_dump(mode="json", by_alias=True)["stages"] == [
        {"map": {"fn": "examples.orders:to_eur"}}
    ]


def test_map_mapping_form_names_the_bad_key() -> None:
    with pytest.raises(ValidationError) as info:
        Topology.model_validate(minimal(stages=[{"map": {"fx": "examples.orders:to_eur"}}]))
    problems = {(p.path, p.message) for p in problems_from_validation_error(info.value)}
    assert problems == {
        ("stages[0].map.fn", "required, but missing"),
        (
            "stages[0].map.fx",
            "unknown key; expected one of: fn, concurrency, threads, timeout, retry, circuit, "
            "rate_limit, output",
        ),
    }
