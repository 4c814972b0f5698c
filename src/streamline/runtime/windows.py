"""Which windows a record belongs to, and when a window may fire.

Window assigners answer *which window* (tumbling, hopping, session); they are
independent of *what* is computed in a window (``aggregates``) and of *when*
event time has progressed (``watermark``). Everything here is pure arithmetic on
epoch-millisecond integers, following docs/topology.md, "Windows,
watermarks and lateness":

- Tumbling ``size``: the window ``[floor(t/size)*size, +size)``.
- Hopping ``size``, ``advance``: every ``[k*advance, k*advance+size)`` containing
  ``t``. Both are aligned to the epoch, also for negative ``t`` (floor division).
- Session ``gap``, per key: a record joins every session ``(first, last)`` with
  ``first - gap <= t <= last + gap``, merging the sessions it bridges;
  ``window_start = first``, ``window_end = last + gap``.
- A window fires when ``watermark >= window_end + allowed_lateness``.
- A record is late when every window it would join has fired (for sessions,
  see ``SessionWindows.is_late``). Late records go to the late topic and change
  nothing.

Windows are half-open: ``start`` is inclusive, ``end`` exclusive, so a record
exactly at a tumbling window's ``end`` belongs to the next window.
"""

from __future__ import annotations

from collections.abc import Iterable
from typing import Final, NamedTuple


class Window(NamedTuple):
    """A time window ``[start, end)`` in epoch ms; the bounds written to the sink."""

    start: int
    end: int


# Builds a Window without NamedTuple's Python-level __new__: assignment runs
# per record, and this halves its cost.
_new_window = tuple.__new__


class Session(NamedTuple):
    """The event-time extent of one session of one key: its first and last record times."""

    first: int
    last: int


class SessionMerge(NamedTuple):
    """What a new record does to a key's sessions (result of ``SessionWindows.merge``).

    ``joined`` are the existing sessions the record joins, in ascending order:
    none (the record starts a new session), one (it extends that session) or
    several (it bridges them; they become one). The caller replaces all of them
    by ``session``, merging their accumulators.
    """

    joined: tuple[Session, ...]
    session: Session


def window_fires(window_end: int, allowed_lateness_ms: int, watermark: int) -> bool:
    """Whether a window ending at ``window_end`` (exclusive) fires at ``watermark``.

    It fires once the watermark reaches ``window_end + allowed_lateness``; with
    ``emit: final`` that is when it is emitted, once, and its state dropped.
    """
    return watermark >= window_end + allowed_lateness_ms


def unfired(windows: Iterable[Window], allowed_lateness_ms: int, watermark: int) -> list[Window]:
    """The windows among ``windows`` that have not fired at ``watermark``.

    A record that is not late is added only to these: a window that has fired
    has been emitted and must not change.
    """
    return [w for w in windows if watermark < w.end + allowed_lateness_ms]


def is_late(windows: Iterable[Window], allowed_lateness_ms: int, watermark: int) -> bool:
    """Whether a record assigned to ``windows`` is late: every one of them has fired.

    A record assigned to no window at all (possible only with hopping windows
    whose ``advance`` exceeds their ``size``) is not late; it belongs to no
    window and contributes to nothing.
    """
    any_window = False
    for window in windows:
        if watermark < window.end + allowed_lateness_ms:
            return False
        any_window = True
    return any_window


class TumblingWindows:
    """Fixed-size, non-overlapping, epoch-aligned windows: each record is in exactly one."""

    __slots__ = ("size_ms",)

    def __init__(self, size_ms: int) -> None:
        if size_ms <= 0:
            raise ValueError(f"tumbling window size must be > 0 ms, got {size_ms}")
        self.size_ms: Final = size_ms

    def window_of(self, event_time_ms: int) -> Window:
        """The one window containing ``event_time_ms``."""
        start = event_time_ms - event_time_ms % self.size_ms
        return Window(start, start + self.size_ms)

    def assign(self, event_time_ms: int) -> list[Window]:
        """The windows containing ``event_time_ms``: always exactly one."""
        return [self.window_of(event_time_ms)]

    def is_late(self, event_time_ms: int, allowed_lateness_ms: int, watermark: int) -> bool:
        """Whether a record at ``event_time_ms`` is late: its window has fired."""
        end = event_time_ms - event_time_ms % self.size_ms + self.size_ms
        return watermark >= end + allowed_lateness_ms

    def __repr__(self) -> str:
        return f"TumblingWindows(size_ms={self.size_ms})"


class HoppingWindows:
    """Fixed-size windows starting every ``advance_ms``, epoch-aligned.

    With ``advance < size`` they overlap and a record is in ``size/advance``
    windows (rounded up or down, depending on ``t``; exactly that many when
    ``advance`` divides ``size``). ``advance == size`` is tumbling. With
    ``advance > size`` there are gaps, and records in them are in no window.
    """

    __slots__ = ("advance_ms", "size_ms")

    def __init__(self, size_ms: int, advance_ms: int) -> None:
        if size_ms <= 0:
            raise ValueError(f"hopping window size must be > 0 ms, got {size_ms}")
        if advance_ms <= 0:
            raise ValueError(f"hopping window advance must be > 0 ms, got {advance_ms}")
        self.size_ms: Final = size_ms
        self.advance_ms: Final = advance_ms

    def assign(self, event_time_ms: int) -> list[Window]:
        """Every window ``[k*advance, k*advance+size)`` containing ``event_time_ms``, by start."""
        advance = self.advance_ms
        size = self.size_ms
        # Starts k*advance with t - size < k*advance <= t.
        first_start = ((event_time_ms - size) // advance + 1) * advance
        return [
            _new_window(Window, (start, start + size))
            for start in range(first_start, event_time_ms + 1, advance)
        ]

    def is_late(self, event_time_ms: int, allowed_lateness_ms: int, watermark: int) -> bool:
        """Whether a record at ``event_time_ms`` is late: all its windows have fired.

        The newest window ends last, so it is the one that decides.
        """
        last_start = event_time_ms // self.advance_ms * self.advance_ms
        if last_start + self.size_ms <= event_time_ms:
            return False  # in a gap between windows: in no window, so not late
        return watermark >= last_start + self.size_ms + allowed_lateness_ms

    def __repr__(self) -> str:
        return f"HoppingWindows(size_ms={self.size_ms}, advance_ms={self.advance_ms})"


class SessionWindows:
    """Per-key sessions: bursts of records separated by more than ``gap_ms`` of event time.

    Sessions are data-driven, so there is no ``assign``: the caller keeps each
    key's open sessions and, per record that is not late, calls ``merge`` to
    learn which of them the record joins and the session that results.

    The caller's loop for one key::

        if windows.is_late(t, allowed_lateness, watermark, fired_last):
            -> late topic
        else:
            m = windows.merge(open_sessions, t)
            acc = merge of the accumulators of m.joined, plus the record
            replace m.joined by m.session
        when the watermark moves: every open session s with
            windows.fires(s, allowed_lateness, watermark) is emitted and dropped,
            and fired_last = max(fired_last, s.last)
        fired_last may be forgotten once windows.fired_last_expired(...) says so
    """

    __slots__ = ("gap_ms",)

    def __init__(self, gap_ms: int) -> None:
        if gap_ms <= 0:
            raise ValueError(f"session gap must be > 0 ms, got {gap_ms}")
        self.gap_ms: Final = gap_ms

    def window(self, session: Session) -> Window:
        """The output bounds of a session: ``[first, last + gap)``."""
        return Window(session.first, session.last + self.gap_ms)

    def fires(self, session: Session, allowed_lateness_ms: int, watermark: int) -> bool:
        """Whether ``session`` fires at ``watermark``: at ``last + gap + allowed_lateness``."""
        return watermark >= session.last + self.gap_ms + allowed_lateness_ms

    def merge(self, sessions: Iterable[tuple[int, int]], event_time_ms: int) -> SessionMerge:
        """The sessions a record at ``event_time_ms`` joins, and the session that results.

        ``sessions`` are the key's open sessions as ``(first, last)`` pairs, in
        any order. The record joins each one with
        ``first - gap <= t <= last + gap`` (both ends inclusive); the result
        spans the record and everything it joined.
        """
        gap = self.gap_ms
        t = event_time_ms
        first = last = t
        joined: list[Session] = []
        for s_first, s_last in sessions:
            if s_first - gap <= t <= s_last + gap:
                joined.append(Session(s_first, s_last))
                if s_first < first:
                    first = s_first
                if s_last > last:
                    last = s_last
        joined.sort()
        return SessionMerge(tuple(joined), Session(first, last))

    def is_late(
        self,
        event_time_ms: int,
        allowed_lateness_ms: int,
        watermark: int,
        fired_last: int | None = None,
    ) -> bool:
        """Whether a record at ``event_time_ms`` is late for its key.

        ``fired_last`` is the ``last`` of the key's most recent session that has
        fired (``None`` if none has, or it has expired). The record is late when

        1. ``t + gap + allowed_lateness <= watermark``: the smallest session it
           could form, ``[t, t + gap)``, has already fired; or
        2. ``t <= fired_last + gap``: it would join (or lie before) a session
           that has already been emitted.

        Why both. Rule 1 alone is not enough: with gap 10 and no lateness, a
        session ``(0, 0)`` fires at watermark 10; a record at 5 arriving then
        passes rule 1 (5 + 10 > 10) but would join the emitted session, and
        would otherwise open a second session overlapping it. Rule 2 catches
        it, and keeps every emitted session of a key more than ``gap`` apart
        from the others, as if the input had been in order.

        The price of rule 1: a record whose own minimal session has fired is
        late even when it would extend a still-open session backwards. This is
        what bounds the state: a session's start can never move back past
        ``watermark - gap - allowed_lateness``, so ``fired_last`` is needed only
        until rule 1 covers rule 2 (``fired_last_expired``), and keeping the
        open sessions plus one integer per key is enough.
        """
        if event_time_ms + self.gap_ms + allowed_lateness_ms <= watermark:
            return True
        return fired_last is not None and event_time_ms <= fired_last + self.gap_ms

    def fired_last_expired(self, fired_last: int, allowed_lateness_ms: int, watermark: int) -> bool:
        """Whether a key's ``fired_last`` no longer matters to ``is_late`` and may be dropped.

        True once ``watermark >= fired_last + 2*gap + allowed_lateness``: every
        record rule 2 would call late is then late by rule 1 anyway.
        """
        return watermark >= fired_last + 2 * self.gap_ms + allowed_lateness_ms

    def __repr__(self) -> str:
        return f"SessionWindows(gap_ms={self.gap_ms})"
