"""State values as compact JSON (streamline.state.codec)."""

from __future__ import annotations

import datetime
import math
import uuid
from decimal import Decimal
from typing import Any

import pytest

from streamline.state.codec import decode_value, encode_value


def test_accumulators_are_compact_json() -> None:
    assert encode_value([1, 2.5, None, "é", [True]]) == '[1,2.5,null,"é",[true]]'.encode()


@pytest.mark.parametrize(
    "value",
    [
        b"\x00\xff",
        datetime.datetime(2026, 1, 2, 3, 4, 5, 678000, tzinfo=datetime.UTC),
        datetime.date(2026, 1, 2),
        datetime.time(3, 4, 5, 6),
        Decimal("12.340"),
        uuid.UUID("12345678-1234-5678-1234-567812345678"),
        {"nested": [1, {"a": None}]},
        0.1 + 0.2,
        2**70,
    ],
)
def test_values_round_trip_with_their_type(value: Any) -> None:
    decoded = decode_value(encode_value([value]))[0]
    assert decoded == value
    assert type(decoded) is type(value)


def test_non_finite_floats_round_trip() -> None:
    decoded = decode_value(encode_value([math.inf, -math.inf, math.nan]))
    assert decoded[:2] == [math.inf, -math.inf]
    assert math.isnan(decoded[2])


def test_unsupported_value_is_a_type_error_naming_the_type() -> None:
    with pytest.raises(TypeError, match="cannot keep a value of type set"):
        encode_value([{1, 2}])


@pytest.mark.parametrize("data", [b"", b"[1,", b"[1] trailing", b"\xff"])
def test_bytes_that_are_not_a_state_value_are_a_value_error(data: bytes) -> None:
    with pytest.raises(ValueError):
        decode_value(data)
