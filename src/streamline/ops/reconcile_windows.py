"""`reconcile` for windowed topologies: an input is accounted for by the window results.

A window result names, in `streamline.source`, the first and last offsets of the records
that formed it in its input partition; every input offset of a committed transaction
must be inside one such range of a fired window, or be a dead letter, a late record, a
record waiting in the retry topic, a counted drop (the transaction's inputs outside
every range and every name are at most its drops: a filtered record may lie inside a
range), or wait in a window that has not fired yet: the first window holding its event
time ends after every window the partition's results of the range name (windows fire in
the order of their ends, so one that ends no later than a fired one has fired too).

Supported: one source, tumbling or hopping windows, no repartitioning, no retry topic.
Other windowed topologies are refused (exit 2) with what is not supported yet.
"""

from __future__ import annotations

from array import array
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from streamline.errors import UsageError
from streamline.runtime.windows import HoppingWindows, TumblingWindows
from streamline.serde.convert import parse_timestamp_ms
from streamline.topology.model import Topology
from streamline.topology.resources import resources_of

NO_TIME = -(2**63)
"""The event time of an offset whose record was not read (or has no readable event time)."""

TP = tuple[str, int]


@dataclass(frozen=True)
class WindowShape:
    """Which windows hold an event time."""

    windows: TumblingWindows | HoppingWindows

    def first_end(self, event_time_ms: int) -> int:
        """The end of the first window holding `event_time_ms`."""
        return self.windows.assign(event_time_ms)[0].end


@dataclass(frozen=True)
class WindowReaders:
    """What reconcile reads from records: a source record's event time, a result's window end."""

    event_time: Callable[[bytes | None], int]
    window_end: Callable[[bytes | None], int]


def window_shape(topology: Topology) -> WindowShape:
    """The shape of a windowed topology reconcile supports; UsageError naming what is not."""
    window = topology.window
    assert window is not None
    resources = resources_of(topology)
    unsupported = []
    if window.session is not None:
        unsupported.append("session windows")
    if len(topology.sources) > 1:
        unsupported.append("several sources")
    if resources.needs_repartition:
        unsupported.append("repartitioning (a key_by other than the source's partitioned_by)")
    if resources.retrying:
        unsupported.append("retries through the retry topic")
    if unsupported:
        raise UsageError(
            f"reconcile of {topology.name} is not supported yet: windowed topologies with "
            + ", ".join(unsupported)
        )
    if window.hopping is not None:
        windows: TumblingWindows | HoppingWindows = HoppingWindows(
            window.hopping.size, window.hopping.advance
        )
    else:
        assert window.tumbling is not None
        windows = TumblingWindows(window.tumbling)
    return WindowShape(windows)


def window_readers(
    source: Callable[[bytes], dict[str, Any]],
    sink: Callable[[bytes], dict[str, Any]],
    event_time_field: str,
) -> WindowReaders:
    """Readers over the source and sink decoders (`AvroCodec.decode`)."""
    return WindowReaders(_time_reader(source, event_time_field), _time_reader(sink, "window_end"))


def _time_reader(
    decode: Callable[[bytes], dict[str, Any]], field: str
) -> Callable[[bytes | None], int]:
    """Reads a time field as the runtime does (a long, or an ISO-8601 string); NO_TIME when
    the value does not decode or holds none (such a source record is a dead letter)."""

    def read(value: bytes | None) -> int:
        if value is None:
            return NO_TIME
        try:
            found = decode(value).get(field)
            if isinstance(found, int) and not isinstance(found, bool):
                return found
            return parse_timestamp_ms(str(found))
        except Exception:  # any undecodable record: the runtime dead-letters it
            return NO_TIME

    return read


class WindowCoverage:
    """The offset ranges the fired windows name, and the source records' event times."""

    def __init__(
        self, shape: WindowShape, readers: WindowReaders, spans: dict[TP, list[int]]
    ) -> None:
        self.shape = shape
        self.readers = readers
        self.spans = spans
        self.ranges: dict[TP, list[tuple[int, int]]] = {tp: [] for tp in spans}
        self.times = {tp: array("q", [NO_TIME]) * (b - a + 1) for tp, (a, b) in spans.items()}
        self.fired_end = dict.fromkeys(spans, NO_TIME)  # the latest end of a fired window

    def saw(self, tp: TP, offset: int, value: bytes | None) -> None:
        """A source record of the span."""
        self.times[tp][offset - self.spans[tp][0]] = self.readers.event_time(value)

    def add(self, tp: TP, first: int, last: int, value: bytes | None) -> bool:
        """A window result naming input offsets first..last of `tp`; False when `tp` is not
        a partition of the range."""
        if tp not in self.ranges:
            return False
        self.ranges[tp].append((first, last))
        self.fired_end[tp] = max(self.fired_end[tp], self.readers.window_end(value))
        return True

    def covered(self, tp: TP) -> bytearray:
        """One byte per offset of the span: 1 when inside some fired window's range."""
        base, end = self.spans[tp]
        marks = bytearray(end - base + 1)
        merged: list[list[int]] = []
        for first, last in sorted(self.ranges[tp]):
            if merged and first <= merged[-1][1] + 1:
                merged[-1][1] = max(merged[-1][1], last)
            else:
                merged.append([first, last])
        for first, last in merged:
            a, b = max(first, base) - base, min(last, end) - base
            if a <= b:
                marks[a : b + 1] = b"\x01" * (b - a + 1)
        return marks

    def open(self, tp: TP, offset: int) -> bool:
        """Whether the record at `offset` waits in a window that has not fired: its first
        window ends after the latest window of the partition that did."""
        t = self.times[tp][offset - self.spans[tp][0]]
        return t != NO_TIME and self.shape.first_end(t) > self.fired_end[tp]
