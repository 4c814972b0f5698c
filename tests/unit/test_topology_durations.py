"""Durations in topology files: `100ms`, `5s`, `1m`, `2h`, `1d`, as milliseconds."""

import pytest
from hypothesis import given
from hypothesis import strategies as st

from streamline.topology.durations import format_duration, parse_duration


@pytest.mark.parametrize(
    ("text", "ms"),
    [
        ("100ms", 100),
        ("5s", 5_000),
        ("1m", 60_000),
        ("2h", 7_200_000),
        ("1d", 86_400_000),
        ("0s", 0),
    ],
)
def test_each_unit_converts_to_milliseconds(text: str, ms: int) -> None:
    assert parse_duration(text) == ms


@pytest.mark.parametrize("text", ["", "5", "5 s", "1.5s", "-1s", "5sec", "1m30s", "s"])
def test_malformed_strings_are_rejected_naming_the_units(text: str) -> None:
    with pytest.raises(ValueError, match=r"ms, s, m, h or d"):
        parse_duration(text)


@pytest.mark.parametrize("value", [5, 2.5, True, None, ["5s"]])
def test_non_strings_are_rejected(value: object) -> None:
    with pytest.raises(ValueError, match="expected a duration with a unit"):
        parse_duration(value)


def test_a_bare_number_is_called_out_as_missing_its_unit() -> None:
    with pytest.raises(ValueError, match="a number without a unit"):
        parse_duration(30)


@given(st.integers(min_value=0, max_value=10**12))
def test_formatting_round_trips(ms: int) -> None:
    assert parse_duration(format_duration(ms)) == ms


def test_formatting_uses_the_largest_exact_unit() -> None:
    assert [format_duration(ms) for ms in (0, 1500, 60_000, 90_000, 86_400_000)] == [
        "0s",
        "1500ms",
        "1m",
        "90s",
        "1d",
    ]
