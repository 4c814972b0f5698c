"""Durations as topology files write them (`100ms`, `5s`, `1m`, `2h`, `1d`), as milliseconds."""

from __future__ import annotations

import re

UNIT_MS: dict[str, int] = {
    "ms": 1,
    "s": 1_000,
    "m": 60_000,
    "h": 3_600_000,
    "d": 86_400_000,
}

_DURATION = re.compile(r"(\d+)(ms|s|m|h|d)")

UNITS = "ms, s, m, h or d, e.g. 100ms, 5s, 1m, 2h, 1d"


def parse_duration(text: object) -> int:
    """Milliseconds of a duration string such as `5s`; ValueError saying what is expected."""
    if not isinstance(text, str):
        bare_number = isinstance(text, int | float) and not isinstance(text, bool)
        shown = f"{text!r} (a number without a unit)" if bare_number else repr(text)
        raise ValueError(f"expected a duration with a unit ({UNITS}), got {shown}")
    match = _DURATION.fullmatch(text.strip())
    if match is None:
        raise ValueError(
            f"invalid duration {text!r}; expected a whole number with a unit ({UNITS})"
        )
    amount, unit = match.groups()
    return int(amount) * UNIT_MS[unit]


def format_duration(ms: int) -> str:
    """The shortest spelling of a millisecond count in the largest exact unit (`60000` -> `1m`)."""
    if ms == 0:
        return "0s"
    for unit in ("d", "h", "m", "s"):
        size = UNIT_MS[unit]
        if ms and ms % size == 0:
            return f"{ms // size}{unit}"
    return f"{ms}ms"
