"""Aggregate parsing, folding, merging and results (streamline.runtime.aggregates)."""

from __future__ import annotations

import json
from collections.abc import Sequence
from typing import Any

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from streamline.runtime.aggregates import AggregateCall, AggregateSpec, parse_aggregate

# --- parsing --------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("text", "call"),
    [
        ("count()", AggregateCall("count", None)),
        ("sum(amount)", AggregateCall("sum", "amount")),
        (" avg( amount ) ", AggregateCall("avg", "amount")),
        ("min(_x1)", AggregateCall("min", "_x1")),
        ("max(amount)", AggregateCall("max", "amount")),
        ("first(order_id)", AggregateCall("first", "order_id")),
        ("last(order_id)", AggregateCall("last", "order_id")),
    ],
)
def test_parses_every_function(text: str, call: AggregateCall) -> None:
    assert parse_aggregate(text) == call


def test_call_prints_like_the_topology_file() -> None:
    assert str(parse_aggregate(" sum( amount )")) == "sum(amount)"
    assert str(parse_aggregate("count( )")) == "count()"


@pytest.mark.parametrize(
    ("text", "message"),
    [
        ("median(amount)", r"unknown aggregate function 'median'.*expected one of count, sum"),
        ("SUM(amount)", "unknown aggregate function 'SUM'"),
        ("sum()", r"sum\(\) needs an input field.*'sum\(amount\)'"),
        ("first( )", r"first\(\) needs an input field"),
        ("count(amount)", r"count\(\) takes no field"),
        ("sum amount", "cannot parse aggregate 'sum amount'"),
        ("sum(a, b)", "invalid field name 'a,'|cannot parse"),
        ("sum(1x)", "invalid field name '1x'"),
        ("", "cannot parse aggregate ''"),
    ],
)
def test_rejects_bad_calls_with_a_clear_message(text: str, message: str) -> None:
    with pytest.raises(ValueError, match=message):
        parse_aggregate(text)


def test_spec_error_names_the_output_field() -> None:
    with pytest.raises(ValueError, match="aggregate 'p50': unknown aggregate function 'p50'"):
        AggregateSpec({"n": "count()", "p50": "p50(amount)"})


def test_input_fields_are_distinct_in_order_of_first_use() -> None:
    spec = AggregateSpec(
        {"n": "count()", "hi": "max(amount)", "id": "first(order_id)", "lo": "min(amount)"}
    )
    assert spec.input_fields == ("amount", "order_id")
    assert spec.output_fields == ("n", "hi", "id", "lo")
    assert spec.calls["hi"] == AggregateCall("max", "amount")


# --- semantics ------------------------------------------------------------------------

ALL = AggregateSpec(
    {
        "n": "count()",
        "total": "sum(v)",
        "lo": "min(v)",
        "hi": "max(v)",
        "mean": "avg(v)",
        "first_v": "first(v)",
        "last_v": "last(v)",
    }
)


def aggregate(spec: AggregateSpec, rows: Sequence[tuple[int, dict[str, Any]]]) -> dict[str, Any]:
    """Fold (event_time, value) rows in the given arrival order."""
    acc = spec.init()
    for seq, (t, value) in enumerate(rows):
        acc = spec.add(acc, value, t, seq)
    return spec.result(acc)


def test_empty_window_results() -> None:
    assert ALL.result(ALL.init()) == {
        "n": 0,
        "total": None,
        "lo": None,
        "hi": None,
        "mean": None,
        "first_v": None,
        "last_v": None,
    }


def test_count_is_an_int_and_counts_records_with_null_fields() -> None:
    result = aggregate(ALL, [(1, {"v": None}), (2, {"v": 3})])
    assert result["n"] == 2
    assert type(result["n"]) is int


def test_sum_of_ints_stays_int() -> None:
    result = aggregate(ALL, [(1, {"v": 2}), (2, {"v": 3})])
    assert result["total"] == 5
    assert type(result["total"]) is int


def test_sum_of_floats_is_float() -> None:
    result = aggregate(ALL, [(1, {"v": 1.5}), (2, {"v": 2})])
    assert result["total"] == 3.5
    assert type(result["total"]) is float


def test_avg_is_sum_over_count_as_float() -> None:
    result = aggregate(ALL, [(1, {"v": 1}), (2, {"v": 2})])
    assert result["mean"] == 1.5
    assert type(aggregate(ALL, [(1, {"v": 2})])["mean"]) is float


def test_nulls_are_ignored_by_field_functions() -> None:
    rows: list[tuple[int, dict[str, Any]]] = [
        (1, {"v": None}),
        (2, {"v": 4}),
        (3, {"v": None}),
        (4, {"v": 2}),
        (5, {"v": None}),
    ]
    result = aggregate(ALL, rows)
    assert result == {
        "n": 5,
        "total": 6,
        "lo": 2,
        "hi": 4,
        "mean": 3.0,
        "first_v": 4,
        "last_v": 2,
    }


def test_only_nulls_give_null_results_except_count() -> None:
    result = aggregate(ALL, [(1, {"v": None})])
    assert result == {**ALL.result(ALL.init()), "n": 1}


def test_min_and_max_accept_strings() -> None:
    spec = AggregateSpec({"lo": "min(s)", "hi": "max(s)"})
    assert aggregate(spec, [(1, {"s": "b"}), (2, {"s": "a"}), (3, {"s": "c"})]) == {
        "lo": "a",
        "hi": "c",
    }


def test_first_and_last_follow_event_time_not_arrival() -> None:
    rows = [(20, {"v": "b"}), (10, {"v": "a"}), (30, {"v": "c"}), (25, {"v": "x"})]
    spec = AggregateSpec({"f": "first(v)", "l": "last(v)"})
    assert aggregate(spec, rows) == {"f": "a", "l": "c"}


def test_first_and_last_break_event_time_ties_by_arrival() -> None:
    rows = [(10, {"v": "early"}), (10, {"v": "middle"}), (10, {"v": "late"})]
    spec = AggregateSpec({"f": "first(v)", "l": "last(v)"})
    assert aggregate(spec, rows) == {"f": "early", "l": "late"}


def test_add_and_merge_leave_their_inputs_unchanged() -> None:
    acc = ALL.add(ALL.init(), {"v": 1}, 1, 0)
    snapshot = list(acc)
    other = ALL.add(ALL.init(), {"v": 5}, 0, 1)
    ALL.add(acc, {"v": 2}, 2, 2)
    ALL.merge(acc, other)
    assert acc == snapshot


def test_missing_field_raises_key_error_and_leaves_accumulator_intact() -> None:
    acc = ALL.add(ALL.init(), {"v": 1}, 1, 0)
    snapshot = list(acc)
    with pytest.raises(KeyError, match="v"):
        ALL.add(acc, {"amount": 1}, 2, 1)
    assert acc == snapshot


def test_merge_combines_session_accumulators() -> None:
    early = ALL.add(ALL.add(ALL.init(), {"v": 1}, 10, 0), {"v": 7}, 12, 3)
    late = ALL.add(ALL.init(), {"v": 4}, 30, 1)
    expected = {
        "n": 3,
        "total": 12,
        "lo": 1,
        "hi": 7,
        "mean": 4.0,
        "first_v": 1,
        "last_v": 4,
    }
    assert ALL.result(ALL.merge(early, late)) == expected
    assert ALL.result(ALL.merge(late, early)) == expected


def test_merging_with_an_empty_accumulator_changes_nothing() -> None:
    acc = ALL.add(ALL.init(), {"v": 3}, 10, 0)
    assert ALL.merge(acc, ALL.init()) == acc
    assert ALL.merge(ALL.init(), acc) == acc


def test_accumulator_survives_a_json_round_trip() -> None:
    acc = ALL.add(ALL.add(ALL.init(), {"v": 2.5}, 10, 0), {"v": 1}, 5, 1)
    restored = json.loads(json.dumps(acc))
    assert restored == acc
    assert ALL.result(ALL.add(restored, {"v": 3}, 7, 2)) == ALL.result(ALL.add(acc, {"v": 3}, 7, 2))


# --- against a brute-force oracle -----------------------------------------------------

PROPERTY_SPEC = AggregateSpec(
    {
        "n": "count()",
        "total": "sum(v)",
        "lo": "min(v)",
        "hi": "max(v)",
        "mean": "avg(v)",
        "first_v": "first(v)",
        "last_v": "last(v)",
        "first_s": "first(s)",
        "last_s": "last(s)",
        "lo_s": "min(s)",
        "hi_s": "max(s)",
    }
)

Row = tuple[int, int, dict[str, Any]]  # (arrival_seq, event_time, value)


def brute_force(rows: Sequence[Row]) -> dict[str, Any]:
    """Every output computed the obvious way from the whole window."""

    def present(field: str) -> list[Any]:
        return [value[field] for _, _, value in rows if value[field] is not None]

    def by_time(field: str) -> list[Any]:
        ordered = sorted((t, seq, v[field]) for seq, t, v in rows if v[field] is not None)
        return [x for _, _, x in ordered]

    numbers, strings = present("v"), present("s")
    return {
        "n": len(rows),
        "total": sum(numbers) if numbers else None,
        "lo": min(numbers, default=None),
        "hi": max(numbers, default=None),
        "mean": sum(numbers) / len(numbers) if numbers else None,
        "first_v": by_time("v")[0] if numbers else None,
        "last_v": by_time("v")[-1] if numbers else None,
        "first_s": by_time("s")[0] if strings else None,
        "last_s": by_time("s")[-1] if strings else None,
        "lo_s": min(strings, default=None),
        "hi_s": max(strings, default=None),
    }


def assert_matches(actual: dict[str, Any], rows: Sequence[Row]) -> None:
    """Equal, with matching types; float sums within 1e-9 of the sum of magnitudes."""
    expected = brute_force(rows)
    assert actual.keys() == expected.keys()
    scale = sum(abs(v["v"]) for _, _, v in rows if v["v"] is not None)
    for field, want in expected.items():
        got = actual[field]
        assert type(got) is type(want), field
        if isinstance(want, float) and field in ("total", "mean"):
            assert abs(got - want) <= 1e-9 * scale, field
        else:
            assert got == want, field


@st.composite
def windows_of_rows(draw: st.DrawFn) -> list[Row]:
    """A window's records in arrival order: ints or floats, strings, nulls, tied times."""
    number = st.integers(-(10**12), 10**12) if draw(st.booleans()) else st.floats(-1e12, 1e12)
    numbers = (None, *draw(st.lists(number, min_size=1, max_size=8)))
    strings = (None, "", "a", "b", "ab", "é")
    # One draw per record, (time, number, string) packed in one integer, keeps generation fast.
    codes = draw(st.lists(st.integers(0, 41 * len(numbers) * len(strings) - 1), max_size=30))
    rows: list[Row] = []
    for seq, code in enumerate(codes):
        code, j = divmod(code, len(strings))
        t, i = divmod(code, len(numbers))
        rows.append((seq, t - 20, {"v": numbers[i], "s": strings[j]}))
    return rows


def fold(rows: Sequence[Row]) -> list[Any]:
    acc = PROPERTY_SPEC.init()
    for seq, t, value in rows:
        acc = PROPERTY_SPEC.add(acc, value, t, seq)
    return acc


@given(windows_of_rows())
@settings(max_examples=200, deadline=None)
def test_folding_matches_brute_force(rows: list[Row]) -> None:
    assert_matches(PROPERTY_SPEC.result(fold(rows)), rows)


@given(windows_of_rows(), st.data())
@settings(max_examples=200, deadline=None)
def test_merging_split_accumulators_matches_brute_force(
    rows: list[Row], data: st.DataObject
) -> None:
    # Any split of the records (not only contiguous: sessions merge interleaved
    # arrivals), each part folded and stored as JSON, then merged in any order.
    parts = data.draw(st.integers(1, 4))
    split = data.draw(st.integers(0, parts ** len(rows) - 1))
    owner = [split // parts**k % parts for k in range(len(rows))]
    accs = [
        json.loads(json.dumps(fold([r for r, o in zip(rows, owner, strict=True) if o == p])))
        for p in range(parts)
    ]
    order = data.draw(st.permutations(range(parts)))
    merged = accs[order[0]]
    for p in order[1:]:
        merged = PROPERTY_SPEC.merge(merged, accs[p])
    assert_matches(PROPERTY_SPEC.result(merged), rows)
