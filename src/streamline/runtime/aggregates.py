"""What a window computes: the aggregate functions of a ``window.aggregate`` block.

A window's aggregate block maps output fields to calls such as
``revenue: sum(amount)`` or ``order_count: count()``. ``AggregateSpec`` parses
that mapping once and then folds records into an *accumulator*: one flat list
holding the running state of every aggregate of the window. The accumulator is
a plain value (``None``, ints, floats and the input field values themselves),
so it can be stored as JSON or msgpack in RocksDB and the changelog as is.

Functions (docs/topology.md, "window"):

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


# One step per aggregate, specialised at parse time. ``add`` is one generated
# function holding every aggregate's step (a call per aggregate per record
# would cost more than the steps); a merger combines slots of b into a.
_Merger = Callable[[Accumulator, Accumulator], None]
_Reader = Callable[[Accumulator], Any]
_Add = Callable[[Accumulator, Record, int, int], Accumulator]

# The step of each function on ``new`` (a copy of the accumulator), slot {i}, field {f}.
_STEPS: Final[Mapping[str, str]] = {
    "count": "new[{i}] += 1",
    "sum": """x = record[{f}]
if x is not None:
    s = new[{i}]
    new[{i}] = x if s is None else s + x""",
    "min": """x = record[{f}]
if x is not None:
    m = new[{i}]
    if m is None or x < m:
        new[{i}] = x""",
    "max": """x = record[{f}]
if x is not None:
    m = new[{i}]
    if m is None or x > m:
        new[{i}] = x""",
    "avg": """x = record[{f}]
if x is not None:
    new[{i}] += x
    new[{i} + 1] += 1""",
    "first": """x = record[{f}]
if x is not None:
    t0 = new[{i} + 1]
    if t0 is None or t < t0 or (t == t0 and seq < new[{i} + 2]):
        new[{i}] = x
        new[{i} + 1] = t
        new[{i} + 2] = seq""",
    "last": """x = record[{f}]
if x is not None:
    t0 = new[{i} + 1]
    if t0 is None or t > t0 or (t == t0 and seq > new[{i} + 2]):
        new[{i}] = x
        new[{i} + 1] = t
        new[{i} + 2] = seq""",
}


def _compile_add(steps: list[tuple[AggregateCall, int]]) -> _Add:
    """One function folding a record into a copy of the accumulator, every aggregate in line."""
    lines = ["def add(acc, record, t, seq):", "    new = acc.copy()"]
    for call, i in steps:
        step = _STEPS[call.function].format(i=i, f=repr(call.field))
        lines += ["    " + line for line in step.splitlines()]
    lines.append("    return new")
    namespace: dict[str, Any] = {}
    exec(compile("\n".join(lines), "<aggregates>", "exec"), {"__builtins__": {}}, namespace)
    add: _Add = namespace["add"]
    return add


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

    __slots__ = ("_add", "_init", "_mergers", "_readers", "calls", "input_fields")

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
        steps: list[tuple[AggregateCall, int]] = []
        mergers: list[_Merger] = []
        readers: list[tuple[str, _Reader]] = []
        for output_field, call in calls.items():
            i = len(init)
            init.extend(_initial(call.function))
            steps.append((call, i))
            mergers.append(_merger(call.function, i))
            readers.append((output_field, _reader(call.function, i)))
        self._init: Final = tuple(init)
        self._add: Final = _compile_add(steps)
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
        return self._add(acc, record, event_time_ms, arrival_seq)

    @property
    def folder(self) -> Callable[[Accumulator, Record, int, int], Accumulator]:
        """`add` itself (the generated function), for a caller that folds many records."""
        return self._add

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
