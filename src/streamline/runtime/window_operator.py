"""The window/aggregate stage over a state store: add records, fire windows, emit results.

``WindowOperator`` joins the three pure parts of windowing (Bytewax's split):
*which window* (``windows``: tumbling, hopping, session assigners and their
lateness rules), *what* is computed (``aggregates.AggregateSpec``) and *when*
(the watermark the caller passes in, from ``watermark``). It keeps every open
window in a ``WindowStore`` (a ``state.PartitionStore`` in production), so
state far larger than memory is fine and survives restarts through the
store's changelog and checkpoint. It does no Kafka I/O: the runtime passes
records in and writes the returned results.

Semantics (shared/spec/topology.md, "Windows, watermarks and lateness,
exactly"):

- A record whose windows have all fired at the watermark is late: ``add``
  says why and changes nothing.
- A window fires when the watermark reaches ``window_end + allowed_lateness``;
  ``fire`` returns it once (``final=True``) and deletes its state. A window
  that is due but not fired yet already counts as fired for lateness, so
  results do not depend on how often the caller calls ``fire``.
- With ``emit="update"``, every ``add`` also returns the window's new result
  (``final=False``) with the window's bounds; the final firing still comes
  once. Session bounds grow as a session extends or merges, so its updates
  may carry different bounds over time.
- The operator's watermark never decreases, and it is kept in the store: after
  a restart, a record for a window that already fired is late instead of
  reopening it.

Key layout in the store (all integers big-endian, times offset by 2**63 so
that negative times sort before positive ones)::

    W                          -> the operator's watermark (8 bytes, signed)
    T <end:8> 00 <key utf-8>   -> timer of a window ending at ``end``, in end order;
                                  tumbling/hopping: the window's state itself,
                                  [min_seq, max_seq, min_t, max_t, accumulator]
                                  (its start is end - size); sessions: empty
    T <end:8> 01 <key utf-8>   -> sessions: when the key's fired_last may be forgotten
    S <key utf-8>              -> sessions: [fired_last, [[first, last, min_seq,
                                  max_seq, accumulator], ...]] for the key

Timers are found by one range scan up to ``watermark - allowed_lateness``;
values are compact JSON (``state.codec``).
"""

from __future__ import annotations

import struct
from collections.abc import Callable, Iterator, Mapping
from functools import reduce
from itertools import islice
from typing import Any, Final, Literal, NamedTuple, Protocol

from streamline.runtime.aggregates import AggregateSpec
from streamline.runtime.watermark import NO_WATERMARK
from streamline.runtime.windows import HoppingWindows, SessionWindows, TumblingWindows
from streamline.state.codec import decode_value, encode_value

WindowKind = Literal["tumbling", "hopping", "session"]
EmitMode = Literal["final", "update"]


class WindowStore(Protocol):
    """What the operator needs from its state: ``state.PartitionStore`` is one."""

    @property
    def epoch(self) -> int:
        """Changes when the open transaction ends or state is replaced."""

    @property
    def reset_epoch(self) -> int:
        """Changes when state goes back or is replaced (rollback, restore, wipe)."""

    def get(self, key: bytes) -> bytes | None:
        """The current value of ``key``, ``None`` if absent."""

    def put(self, key: bytes, value: bytes) -> None:
        """Set ``key`` in the open transaction."""

    def delete(self, key: bytes) -> None:
        """Delete ``key`` in the open transaction."""

    def items(
        self, start: bytes | None = None, end: bytes | None = None
    ) -> Iterator[tuple[bytes, bytes]]:
        """Entries with ``start <= key < end``, in key order."""

    def add_flusher(self, flush: Callable[[], None]) -> None:
        """Registers ``flush``, called before the store scans or hands out its changes."""


class WindowResult(NamedTuple):
    """One result of one key's window: what the runtime encodes for the sink."""

    key: str
    """The grouping key."""
    window_start: int
    """Inclusive start, epoch ms (a session's first event time)."""
    window_end: int
    """Exclusive end, epoch ms (a session's last event time + gap)."""
    aggregates: dict[str, Any]
    """Output field to value, as ``AggregateSpec.result`` gives them."""
    final: bool
    """True when the window has fired (emitted once); False for an ``emit: update`` update."""
    min_seq: int
    """Smallest ``seq`` of the records in the window (the first input offset)."""
    max_seq: int
    """Largest ``seq`` of the records in the window (the last input offset)."""
    min_event_time: int
    """Earliest event time among the window's records."""
    max_event_time: int
    """Latest event time among the window's records."""


class AddResult(NamedTuple):
    """What adding one record did: it was late (and why), or the updates to emit."""

    late_reason: str | None = None
    """Why the record is late (for the late topic's headers); ``None`` if it was not."""
    updates: tuple[WindowResult, ...] = ()
    """With ``emit: update``: the new result of every window the record changed."""

    @property
    def late(self) -> bool:
        """Whether the record was late: it goes to the late topic and changed nothing."""
        return self.late_reason is not None


_ON_TIME: Final = AddResult()

_WATERMARK_KEY: Final = b"W"
_TIMER: Final = b"T"
_TIMERS_END: Final = b"U"
_SESSION: Final = b"S"
_WINDOW_TIMER: Final = 0
_EXPIRY_TIMER: Final = 1
_WINDOW_TAG: Final = b"\x00"
_EXPIRY_TAG: Final = b"\x01"

_TIME_OFFSET: Final = 1 << 63
_MIN_TIME: Final = -(1 << 63)
_MAX_TIME: Final = (1 << 63) - 1
_NEVER: Final = 1 << 64
_pack_u64 = struct.Struct(">Q").pack
_pack_i64 = struct.Struct(">q").pack
_unpack_i64 = struct.Struct(">q").unpack

# The per-transaction cache of decoded state is dropped beyond this many entries.
_CACHE_LIMIT: Final = 10_000


def _timer_key(end: int, tag: bytes, key: bytes) -> bytes:
    return _TIMER + _pack_u64(end + _TIME_OFFSET) + tag + key


def _timer_bound(end: int) -> bytes:
    """The first possible timer key with this end (clamped to the timer range)."""
    if end <= _MIN_TIME:
        return _TIMER
    if end > _MAX_TIME:
        return _TIMERS_END
    return _TIMER + _pack_u64(end + _TIME_OFFSET)


def _timer_end(timer_key: bytes) -> int:
    return int.from_bytes(timer_key[1:9], "big") - _TIME_OFFSET


class WindowOperator:
    """Windowed aggregation of one window stage for one partition, with state in ``store``.

    ``kind`` picks the windows: ``tumbling`` (``size_ms``), ``hopping``
    (``size_ms``, ``advance_ms``) or ``session`` (``gap_ms``). Windows fire
    ``allowed_lateness_ms`` after their end. ``aggregates`` computes the
    output fields; ``emit`` is ``final`` or ``update``. All window state is in
    ``store``; the operator only caches decoded values for the store's open
    transaction, and notices commits, rollbacks and restores through the
    store's epochs.
    """

    def __init__(
        self,
        kind: WindowKind,
        *,
        size_ms: int | None = None,
        advance_ms: int | None = None,
        gap_ms: int | None = None,
        allowed_lateness_ms: int = 0,
        aggregates: AggregateSpec,
        emit: EmitMode = "final",
        store: WindowStore,
    ) -> None:
        if allowed_lateness_ms < 0:
            raise ValueError(f"allowed lateness must be >= 0 ms, got {allowed_lateness_ms}")
        if emit not in ("final", "update"):
            raise ValueError(f"emit must be 'final' or 'update', got {emit!r}")
        self.kind: Final = kind
        self.allowed_lateness_ms: Final = allowed_lateness_ms
        self.aggregates: Final = aggregates
        self.emit: Final = emit
        self._store = store
        self._lateness = allowed_lateness_ms
        self._updates = emit == "update"
        self._size = 0
        self._gap = 0
        self._tumbling: TumblingWindows | None = None
        self._hopping: HoppingWindows | None = None
        self._sessions: SessionWindows | None = None
        if kind == "tumbling":
            self._tumbling = TumblingWindows(_required(size_ms, "size_ms", kind))
            self._size = self._tumbling.size_ms
        elif kind == "hopping":
            self._hopping = HoppingWindows(
                _required(size_ms, "size_ms", kind), _required(advance_ms, "advance_ms", kind)
            )
            self._size = self._hopping.size_ms
        elif kind == "session":
            self._sessions = SessionWindows(_required(gap_ms, "gap_ms", kind))
            self._gap = self._sessions.gap_ms
        else:
            raise ValueError(f"unknown window kind {kind!r}: expected tumbling, hopping or session")
        # Decoded states (None: absent) of keys read or written, kept across commits;
        # the keys in _dirty changed in the open transaction and are encoded into
        # the store once, when it flushes (before a scan, a listing or a commit).
        self._cache: dict[bytes, Any] = {}
        self._dirty: dict[bytes, None] = {}
        self._watermark_dirty = False
        store.add_flusher(self.flush)
        self._epoch = store.epoch
        self._reset_epoch = store.reset_epoch
        self._watermark = self._stored_watermark()
        # Earliest watermark at which some timer is due; None: unknown, look it up.
        self._next_due: int | None = None
        # Every timer key below this has fired: scans start here, past RocksDB's
        # tombstones of fired timers.
        self._scan_from = _TIMER

    # --- the public API -------------------------------------------------------------------

    @property
    def watermark(self) -> int:
        """The highest watermark seen (kept in the store), ``NO_WATERMARK`` before any."""
        self._sync()
        return self._watermark

    def add(
        self, key: str, value: Mapping[str, Any], event_time_ms: int, seq: int, watermark: int
    ) -> AddResult:
        """Fold one record into the windows of ``key`` it belongs to, at ``watermark``.

        ``seq`` orders records of equal event time for ``first``/``last`` and is
        reported as ``min_seq``/``max_seq`` (the runtime passes the input
        offset). Returns the late reason, or (``emit: update``) the updated
        results. If the aggregates reject the record (``KeyError``,
        ``TypeError``), the exception propagates and no window changes.
        """
        if self._store.epoch != self._epoch:
            self._sync()
        w = self._advance(watermark)
        if self._tumbling is not None:
            return self._add_tumbling(key, value, event_time_ms, seq, w)
        if self._hopping is not None:
            return self._add_hopping(key, value, event_time_ms, seq, w)
        return self._add_session(key, value, event_time_ms, seq, w)

    def fire(self, watermark: int, limit: int | None = None) -> list[WindowResult]:
        """The final results of the windows due at ``watermark``, in end-time order.

        Their state is deleted, so each window is returned once. ``limit``
        caps the results of one call (when a million keys share a window end,
        the caller can fire and commit in slices); call again until it returns
        nothing. Cheap when nothing is due: the next due time is cached.
        """
        if limit is not None and limit <= 0:
            raise ValueError(f"limit must be > 0, got {limit}")
        self._sync()
        w = self._advance(watermark)
        if self._next_due is None:
            self._next_due = self._find_next_due()
        if w < self._next_due:
            return []
        end_of_due = _timer_bound(w - self._lateness + 1)  # timers ending at or before are due
        results: list[WindowResult] = []
        while True:
            scan = self._store.items(self._scan_from, end_of_due)
            due = list(scan if limit is None else islice(scan, limit))
            for timer_key, value in due:
                end = _timer_end(timer_key)
                if self._sessions is None:
                    results.append(self._fire_window(timer_key, value, end))
                elif timer_key[9] == _WINDOW_TIMER:
                    self._fire_session(timer_key, end, w, results)
                else:
                    self._expire_session_key(timer_key, w)  # no result: may need another round
            if limit is None or len(due) < limit:
                self._scan_from = end_of_due
                break
            self._scan_from = due[-1][0] + b"\x00"  # the key right after the last one handled
            if results:
                break
        self._next_due = self._find_next_due()
        return results

    # --- tumbling and hopping -------------------------------------------------------------

    def _add_tumbling(
        self, key: str, value: Mapping[str, Any], t: int, seq: int, w: int
    ) -> AddResult:
        size = self._size
        end = t - t % size + size
        if w >= end + self._lateness:
            return AddResult(
                f"window [{end - size}, {end}) closed at watermark {w} "
                f"(end + allowed lateness = {end + self._lateness})"
            )
        timer_key = _timer_key(end, _WINDOW_TAG, key.encode())
        state = self._read(timer_key)
        new = self._fold(state, value, t, seq)
        self._write(timer_key, new)
        if state is None:
            self._timer_added(end)
        if self._updates:
            return AddResult(None, (self._window_result(key, end - size, end, new, False),))
        return _ON_TIME

    def _add_hopping(
        self, key: str, value: Mapping[str, Any], t: int, seq: int, w: int
    ) -> AddResult:
        assert self._hopping is not None
        windows = self._hopping.assign(t)
        lateness = self._lateness
        open_windows = [window for window in windows if w < window.end + lateness]
        if not open_windows:
            if not windows:
                return _ON_TIME  # in a gap between windows: belongs to none
            last = windows[-1]
            return AddResult(
                f"all {len(windows)} windows of event time {t} closed at watermark {w} "
                f"(the last, [{last.start}, {last.end}), at {last.end + lateness})"
            )
        encoded_key = key.encode()
        # Compute every new state before writing any: a record the aggregates
        # reject then changes nothing.
        changes = []
        for window in open_windows:
            timer_key = _timer_key(window.end, _WINDOW_TAG, encoded_key)
            state = self._read(timer_key)
            changes.append((timer_key, window.end, state is None, self._fold(state, value, t, seq)))
        updates = []
        for timer_key, end, created, new in changes:
            self._write(timer_key, new)
            if created:
                self._timer_added(end)
            if self._updates:
                updates.append(self._window_result(key, end - self._size, end, new, False))
        return AddResult(None, tuple(updates)) if updates else _ON_TIME

    def _fold(
        self, state: list[Any] | None, value: Mapping[str, Any], t: int, seq: int
    ) -> list[Any]:
        spec = self.aggregates
        if state is None:
            return [seq, seq, t, t, spec.add(spec.init(), value, t, seq)]
        min_seq, max_seq, min_t, max_t, acc = state
        return [
            seq if seq < min_seq else min_seq,
            seq if seq > max_seq else max_seq,
            t if t < min_t else min_t,
            t if t > max_t else max_t,
            spec.add(acc, value, t, seq),
        ]

    def _window_result(
        self, key: str, start: int, end: int, state: list[Any], final: bool
    ) -> WindowResult:
        min_seq, max_seq, min_t, max_t, acc = state
        return WindowResult(
            key, start, end, self.aggregates.result(acc), final, min_seq, max_seq, min_t, max_t
        )

    def _fire_window(self, timer_key: bytes, value: bytes, end: int) -> WindowResult:
        state = self._cache.pop(timer_key, None)
        self._dirty.pop(timer_key, None)
        if state is None:
            state = decode_value(value)
        self._store.delete(timer_key)
        key = timer_key[10:].decode()
        return self._window_result(key, end - self._size, end, state, True)

    # --- sessions -------------------------------------------------------------------------

    def _add_session(
        self, key: str, value: Mapping[str, Any], t: int, seq: int, w: int
    ) -> AddResult:
        sessions_of = self._sessions
        assert sessions_of is not None
        gap, lateness = self._gap, self._lateness
        encoded_key = key.encode()
        session_key = _SESSION + encoded_key
        state = self._read(session_key)
        fired_last: int | None = None
        sessions: list[list[Any]] = []
        if state is not None:
            fired_last, sessions = state
        # Sessions due at w count as fired even if fire() has not run yet.
        closed_last = fired_last
        due_last = w - gap - lateness
        open_sessions: list[list[Any]] = []
        for session in sessions:
            if session[1] <= due_last:
                if closed_last is None or session[1] > closed_last:
                    closed_last = session[1]
            else:
                open_sessions.append(session)
        if sessions_of.is_late(t, lateness, w, closed_last):
            if t + gap + lateness <= w:
                return AddResult(
                    f"a session at event time {t} would close at {t + gap + lateness}, "
                    f"at or before watermark {w}"
                )
            return AddResult(
                f"event time {t} is within the gap ({gap} ms) after a session of this key "
                f"that already closed (its last event at {closed_last}), at watermark {w}"
            )
        merge = sessions_of.merge([(s[0], s[1]) for s in open_sessions], t)
        joined = set(merge.joined)
        merged = [s for s in open_sessions if (s[0], s[1]) in joined]
        spec = self.aggregates
        acc = reduce(spec.merge, [s[4] for s in merged]) if merged else spec.init()
        acc = spec.add(acc, value, t, seq)
        min_seq = min([seq, *(s[2] for s in merged)])
        max_seq = max([seq, *(s[3] for s in merged)])
        first, last = merge.session
        kept = [s for s in sessions if (s[0], s[1]) not in joined]
        kept.append([first, last, min_seq, max_seq, acc])
        kept.sort(key=_session_first)
        self._write(session_key, [fired_last, kept])
        timer_kept = False
        for s in merged:
            if s[1] == last:
                timer_kept = True
            else:
                self._store.delete(_timer_key(s[1] + gap, _WINDOW_TAG, encoded_key))
        if not timer_kept:
            self._store.put(_timer_key(last + gap, _WINDOW_TAG, encoded_key), b"")
            self._timer_added(last + gap)
        if self._updates:
            result = WindowResult(
                key, first, last + gap, spec.result(acc), False, min_seq, max_seq, first, last
            )
            return AddResult(None, (result,))
        return _ON_TIME

    def _fire_session(
        self, timer_key: bytes, end: int, w: int, results: list[WindowResult]
    ) -> None:
        assert self._sessions is not None
        store = self._store
        store.delete(timer_key)
        encoded_key = timer_key[10:]
        session_key = _SESSION + encoded_key
        state = self._read(session_key)
        if state is None:
            return
        fired_last, sessions = state
        last = end - self._gap
        fired = next((s for s in sessions if s[1] == last), None)
        if fired is None:
            return
        first, _, min_seq, max_seq, acc = fired
        results.append(
            WindowResult(
                encoded_key.decode(),
                first,
                end,
                self.aggregates.result(acc),
                True,
                min_seq,
                max_seq,
                first,
                last,
            )
        )
        remaining = [s for s in sessions if s is not fired]
        if fired_last is None or last > fired_last:
            fired_last = last
        if remaining:
            self._write(session_key, [fired_last, remaining])
        elif self._sessions.fired_last_expired(fired_last, self._lateness, w):
            self._remove(session_key)
        else:
            # Only fired_last is left; it is needed until rule 1 of is_late covers it.
            self._write(session_key, [fired_last, []])
            expiry = fired_last + 2 * self._gap
            store.put(_timer_key(expiry, _EXPIRY_TAG, encoded_key), b"")
            self._timer_added(expiry)

    def _expire_session_key(self, timer_key: bytes, w: int) -> None:
        assert self._sessions is not None
        self._store.delete(timer_key)
        session_key = _SESSION + timer_key[10:]
        state = self._read(session_key)
        if state is None:
            return
        fired_last, sessions = state
        if not sessions and self._sessions.fired_last_expired(fired_last, self._lateness, w):
            self._remove(session_key)

    # --- state access ---------------------------------------------------------------------

    def flush(self) -> None:
        """Writes the states changed since the last flush into the store's open transaction."""
        self._sync()
        store, cache = self._store, self._cache
        dirty, self._dirty = self._dirty, {}
        for key in dirty:
            store.put(key, encode_value(cache[key]))
        if self._watermark_dirty:
            self._watermark_dirty = False
            store.put(_WATERMARK_KEY, _pack_i64(self._watermark))

    def _read(self, key: bytes) -> Any:
        cache = self._cache
        if key in cache:
            return cache[key]
        raw = self._store.get(key)
        value = None if raw is None else decode_value(raw)
        if len(cache) >= _CACHE_LIMIT:
            self.flush()
            cache.clear()
        cache[key] = value
        return value

    def _write(self, key: bytes, value: Any) -> None:
        self._cache[key] = value
        self._dirty[key] = None

    def _remove(self, key: bytes) -> None:
        self._store.delete(key)
        self._cache[key] = None
        self._dirty.pop(key, None)

    def _advance(self, watermark: int) -> int:
        if watermark > self._watermark:
            self._watermark = watermark
            self._watermark_dirty = True
        return self._watermark

    def _stored_watermark(self) -> int:
        raw = self._store.get(_WATERMARK_KEY)
        return NO_WATERMARK if raw is None else int(_unpack_i64(raw)[0])

    def _timer_added(self, end: int) -> None:
        due = end + self._lateness
        if self._next_due is not None and due < self._next_due:
            self._next_due = due

    def _find_next_due(self) -> int:
        for timer_key, _ in self._store.items(self._scan_from, _TIMERS_END):
            return _timer_end(timer_key) + self._lateness
        return _NEVER

    def _sync(self) -> None:
        """Drop what was cached or changed for state that went back or was replaced.

        A commit keeps the cache: its states are the committed ones (the store
        flushed them first). A rollback, restore or wipe drops it, and the
        changes not yet flushed belong to the aborted transaction.
        """
        store = self._store
        if store.epoch == self._epoch:
            return
        self._epoch = store.epoch
        if store.reset_epoch != self._reset_epoch:
            self._cache.clear()
            self._dirty.clear()
            self._watermark_dirty = False
            self._reset_epoch = store.reset_epoch
            self._watermark = self._stored_watermark()
            self._next_due = None
            self._scan_from = _TIMER

    def __repr__(self) -> str:
        windows = self._tumbling or self._hopping or self._sessions
        return (
            f"WindowOperator({windows!r}, allowed_lateness_ms={self._lateness}, "
            f"emit={self.emit!r}, aggregates={self.aggregates!r})"
        )


def _session_first(session: list[Any]) -> int:
    first: int = session[0]
    return first


def _required(value: int | None, name: str, kind: str) -> int:
    if value is None:
        raise ValueError(f"{kind} windows need {name}")
    return value
