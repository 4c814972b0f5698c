"""What a window computes: the aggregate functions of a ``window.aggregate`` block.

A window's aggregate block maps output fields to calls such as
``revenue: sum(amount)`` or ``order_count: count()``. ``AggregateSpec`` parses
that mapping once and then folds records into an *accumulator*: one flat list
holding the running state of every aggregate of the window. The accumulator is
a plain value (``None``, ints, floats and the input field values themselves),
so it can be stored as JSON or msgpack in RocksDB and the changelog as is.

Functions (shared/spec/topology.md):

- ``count()``: number of records, an int.
- ``sum(f)``: sum of ``f``; stays an int while every value is an int.
- ``min(f)``, ``max(f)``: numbers or strings (values of one field must be
  mutually comparable).
- ``avg(f)``: ``sum / count`` as a float.
- ``first(f)``, ``last(f)``: the value of ``f`` of the earliest / latest record
  by event time; equal event times are ordered by arrival (``arrival_seq``).

Null values (``None``) of ``f`` are ignored by every function that takes a
field: they are not summed, not counted by ``avg``, and never chosen by
``min``/``max``/``first``/``last``. A function that has seen no non-null value
results in ``None``; ``count()`` counts every record, nulls or not.
"""

from __future__ import annotations

import re
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from typing import Any, Final

Accumulator = list[Any]
"""The running state of all aggregates of one window: a flat, serializable list."""

Record = Mapping[str, Any]
"""A decoded record value: field name to value."""

FUNCTIONS: Final[tuple[str, ...]] = ("count", "sum", "min", "max", "avg", "first", "last")
"""The aggregate functions a topology may use."""

_CALL = re.compile(r"\s*([A-Za-z_][A-Za-z0-9_]*)\s*\(\s*([^()\s]*)\s*\)\s*")
_FIELD = re.compile(r"[A-Za-z_][A-Za-z0-9_]*")

# Number of accumulator slots each function uses.
_WIDTH: Final[Mapping[str, int]] = {
    "count": 1,  # [n]
    "sum": 1,  # [sum or None]
    "min": 1,  # [min or None]
    "max": 1,  # [max or None]
    "avg": 2,  # [sum, n]
    "first": 3,  # [value, event_time, arrival_seq], all None until set
    "last": 3,
}


@dataclass(frozen=True, slots=True)
class AggregateCall:
    """One parsed aggregate, e.g. ``sum(amount)``: the function and its input field."""

    function: str
    field: str | None
    """The input field; ``None`` for ``count()``."""

    def __str__(self) -> str:
        return f"{self.function}({self.field or ''})"


def parse_aggregate(text: str) -> AggregateCall:
    """Parse ``"sum(amount)"`` / ``"count()"``; ``ValueError`` saying what is wrong otherwise."""
    match = _CALL.fullmatch(text)
    if match is None:
        raise ValueError(
            f"cannot parse aggregate {text!r}: expected 'function(field)' such as "
            f"'sum(amount)', or 'count()'"
        )
    function, field = match.group(1), match.group(2)
    if function not in _WIDTH:
        raise ValueError(
            f"unknown aggregate function {function!r} in {text!r}: "
            f"expected one of {', '.join(FUNCTIONS)}"
        )
    if function == "count":
        if field:
            raise ValueError(
                f"count() takes no field, got {text!r}: it counts records, write 'count()'"
            )
        return AggregateCall("count", None)
    if not field:
        raise ValueError(
            f"{function}() needs an input field in {text!r}, e.g. '{function}(amount)'"
        )
    if _FIELD.fullmatch(field) is None:
        raise ValueError(
            f"invalid field name {field!r} in {text!r}: expected a record field name "
            f"(letters, digits and '_', not starting with a digit)"
        )
    return AggregateCall(function, field)


# One step per aggregate, specialised at parse time. An adder folds one record
# into acc (which add() has already copied); a merger combines slots of b into a.
_Adder = Callable[[Accumulator, Record, int, int], None]
_Merger = Callable[[Accumulator, Accumulator], None]
_Reader = Callable[[Accumulator], Any]


def _count_adder(i: int) -> _Adder:
    def add(acc: Accumulator, record: Record, t: int, seq: int) -> None:
        acc[i] += 1

    return add


def _sum_adder(i: int, field: str) -> _Adder:
    def add(acc: Accumulator, record: Record, t: int, seq: int) -> None:
        x = record[field]
        if x is not None:
            s = acc[i]
            acc[i] = x if s is None else s + x

    return add


def _min_adder(i: int, field: str) -> _Adder:
    def add(acc: Accumulator, record: Record, t: int, seq: int) -> None:
        x = record[field]
        if x is not None:
            m = acc[i]
            if m is None or x < m:
                acc[i] = x

    return add


def _max_adder(i: int, field: str) -> _Adder:
    def add(acc: Accumulator, record: Record, t: int, seq: int) -> None:
        x = record[field]
        if x is not None:
            m = acc[i]
            if m is None or x > m:
                acc[i] = x

    return add


def _avg_adder(i: int, field: str) -> _Adder:
    def add(acc: Accumulator, record: Record, t: int, seq: int) -> None:
        x = record[field]
        if x is not None:
            acc[i] += x
            acc[i + 1] += 1

    return add


def _first_adder(i: int, field: str) -> _Adder:
    def add(acc: Accumulator, record: Record, t: int, seq: int) -> None:
        x = record[field]
        if x is not None:
            t0 = acc[i + 1]
            if t0 is None or t < t0 or (t == t0 and seq < acc[i + 2]):
                acc[i] = x
                acc[i + 1] = t
                acc[i + 2] = seq

    return add


def _last_adder(i: int, field: str) -> _Adder:
    def add(acc: Accumulator, record: Record, t: int, seq: int) -> None:
        x = record[field]
        if x is not None:
            t0 = acc[i + 1]
            if t0 is None or t > t0 or (t == t0 and seq > acc[i + 2]):
                acc[i] = x
                acc[i + 1] = t
                acc[i + 2] = seq

    return add


def _adder(call: AggregateCall, i: int) -> _Adder:
    if call.field is None:
        return _count_adder(i)
    makers: dict[str, Callable[[int, str], _Adder]] = {
        "sum": _sum_adder,
        "min": _min_adder,
        "max": _max_adder,
        "avg": _avg_adder,
        "first": _first_adder,
        "last": _last_adder,
    }
    return makers[call.function](i, call.field)


def _merger(function: str, i: int) -> _Merger:
    if function == "count":

        def merge_count(a: Accumulator, b: Accumulator) -> None:
            a[i] += b[i]

        return merge_count
    if function == "avg":

        def merge_avg(a: Accumulator, b: Accumulator) -> None:
            a[i] += b[i]
            a[i + 1] += b[i + 1]

        return merge_avg
    if function == "sum":

        def merge_sum(a: Accumulator, b: Accumulator) -> None:
            x, y = a[i], b[i]
            if y is not None:
                a[i] = y if x is None else x + y

        return merge_sum
    if function == "min":

        def merge_min(a: Accumulator, b: Accumulator) -> None:
            x, y = a[i], b[i]
            if y is not None and (x is None or y < x):
                a[i] = y

        return merge_min
    if function == "max":

        def merge_max(a: Accumulator, b: Accumulator) -> None:
            x, y = a[i], b[i]
            if y is not None and (x is None or y > x):
                a[i] = y

        return merge_max
    earliest = function == "first"

    def merge_ordered(a: Accumulator, b: Accumulator) -> None:
        # first/last: keep the slots whose (event_time, arrival_seq) wins.
        tb = b[i + 1]
        if tb is None:
            return
        ta = a[i + 1]
        if ta is not None:
            b_key = (tb, b[i + 2])
            a_key = (ta, a[i + 2])
            if (a_key < b_key) if earliest else (a_key > b_key):
                return
        a[i : i + 3] = b[i : i + 3]

    return merge_ordered


def _reader(function: str, i: int) -> _Reader:
    if function == "avg":

        def read_avg(acc: Accumulator) -> float | None:
            n: int = acc[i + 1]
            return acc[i] / n if n else None

        return read_avg

    def read_slot(acc: Accumulator) -> Any:
        return acc[i]

    return read_slot


def _initial(function: str) -> list[Any]:
    if function == "count":
        return [0]
    if function == "avg":
        return [0, 0]
    return [None] * _WIDTH[function]


class AggregateSpec:
    """The aggregates of one window stage, compiled for per-record use.

    Built from the topology's ``aggregate`` mapping (output field to call), e.g.
    ``AggregateSpec({"order_count": "count()", "revenue": "sum(amount)"})``.
    The accumulator it works on is a flat list (``init``); ``add`` folds one
    record in, ``merge`` combines two accumulators (session merges, or
    partial results), ``result`` gives the output fields.

    ``add`` and ``merge`` never modify their arguments; they return a new list,
    so an accumulator read from the state store or buffered in a transaction
    stays valid if processing fails half-way.
    """

    __slots__ = ("_adders", "_init", "_mergers", "_readers", "calls", "input_fields")

    def __init__(self, aggregates: Mapping[str, str]) -> None:
        """Parse ``{output_field: "func(field)"}``; ``ValueError`` naming the bad entry."""
        calls: dict[str, AggregateCall] = {}
        for output_field, text in aggregates.items():
            try:
                calls[output_field] = parse_aggregate(text)
            except ValueError as exc:
                raise ValueError(f"aggregate {output_field!r}: {exc}") from None
        self.calls: Final[Mapping[str, AggregateCall]] = calls
        """Output field to parsed call, in the topology's order (for type checking)."""
        self.input_fields: Final[tuple[str, ...]] = tuple(
            dict.fromkeys(c.field for c in calls.values() if c.field is not None)
        )
        """The distinct record fields the aggregates read, in order of first use."""

        init: list[Any] = []
        adders: list[_Adder] = []
        mergers: list[_Merger] = []
        readers: list[tuple[str, _Reader]] = []
        for output_field, call in calls.items():
            i = len(init)
            init.extend(_initial(call.function))
            adders.append(_adder(call, i))
            mergers.append(_merger(call.function, i))
            readers.append((output_field, _reader(call.function, i)))
        self._init: Final = tuple(init)
        self._adders: Final = tuple(adders)
        self._mergers: Final = tuple(mergers)
        self._readers: Final = tuple(readers)

    @property
    def output_fields(self) -> tuple[str, ...]:
        """The output fields, in the topology's order."""
        return tuple(self.calls)

    def init(self) -> Accumulator:
        """A fresh accumulator: the state of a window with no records."""
        return list(self._init)

    def add(
        self, acc: Accumulator, record: Record, event_time_ms: int, arrival_seq: int
    ) -> Accumulator:
        """``acc`` with one more record folded in (a new list; ``acc`` is unchanged).

        ``arrival_seq`` orders records of equal event time for ``first``/``last``;
        the caller supplies a strictly increasing number. Raises ``KeyError`` if
        the record lacks an input field, and ``TypeError`` for values that
        cannot be summed or compared; ``acc`` is untouched then.
        """
        new = acc.copy()
        for add in self._adders:
            add(new, record, event_time_ms, arrival_seq)
        return new

    def merge(self, a: Accumulator, b: Accumulator) -> Accumulator:
        """The accumulator of the records of ``a`` and ``b`` together (a new list)."""
        new = a.copy()
        for merge in self._mergers:
            merge(new, b)
        return new

    def result(self, acc: Accumulator) -> dict[str, Any]:
        """The output fields of a window: ``{output_field: value}``."""
        return {name: read(acc) for name, read in self._readers}

    def __repr__(self) -> str:
        inner = ", ".join(f"{name}={call}" for name, call in self.calls.items())
        return f"AggregateSpec({inner})"
