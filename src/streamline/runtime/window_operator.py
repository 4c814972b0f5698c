"""The window/aggregate stage over a state store: add records, fire windows, emit results.

``WindowOperator`` joins the three pure parts of windowing (Bytewax's split):
*which window* (``windows``: tumbling, hopping, session assigners and their
lateness rules), *what* is computed (``aggregates.AggregateSpec``) and *when*
(the watermark the caller passes in, from ``watermark``). It keeps every open
window in a ``WindowStore`` (a ``state.PartitionStore`` in production), so
state far larger than memory is fine and survives restarts through the
store's changelog and checkpoint. It does no Kafka I/O: the runtime passes
records in and writes the returned results.

Semantics (docs/topology.md, "Windows, watermarks and lateness"):

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

The key layout in the store and the decoded-state cache are in ``window_state``.
"""

from __future__ import annotations

import struct
from collections.abc import Mapping
from functools import reduce
from itertools import islice
from typing import Any, Final

from streamline.runtime.aggregates import AggregateSpec
from streamline.runtime.watermark import NO_WATERMARK
from streamline.runtime.window_state import (
    EXPIRY_TAG,
    SESSION,
    TIMER,
    TIMERS_END,
    WATERMARK_KEY,
    WINDOW_TAG,
    WINDOW_TIMER,
    AddResult,
    DecodedState,
    EmitMode,
    WindowKind,
    WindowResult,
    WindowStore,
    fold,
    required,
    session_first,
    timer_bound,
    timer_end,
    timer_key_of,
    window_result,
)
from streamline.runtime.windows import HoppingWindows, SessionWindows, TumblingWindows
from streamline.state.codec import decode_value

_ON_TIME: Final = AddResult()
_NEVER: Final = 1 << 64
_pack_i64 = struct.Struct(">q").pack
_unpack_i64 = struct.Struct(">q").unpack


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
            self._tumbling = TumblingWindows(required(size_ms, "size_ms", kind))
            self._size = self._tumbling.size_ms
        elif kind == "hopping":
            self._hopping = HoppingWindows(
                required(size_ms, "size_ms", kind), required(advance_ms, "advance_ms", kind)
            )
            self._size = self._hopping.size_ms
        elif kind == "session":
            self._sessions = SessionWindows(required(gap_ms, "gap_ms", kind))
            self._gap = self._sessions.gap_ms
        else:
            raise ValueError(f"unknown window kind {kind!r}: expected tumbling, hopping or session")
        # Decoded states (None: absent) of keys read or written, kept across commits;
        # the keys in _dirty changed in the open transaction and are encoded into
        # the store once, when it flushes (before a scan, a listing or a commit).
        self._state = state = DecodedState(store)
        self._read, self._write, self._remove = state.read, state.write, state.remove
        self._fold = state.fold
        self._watermark_dirty = False
        store.add_flusher(self.flush)
        self._epoch = store.epoch
        self._reset_epoch = store.reset_epoch
        self._watermark = self._stored_watermark()
        # Earliest watermark at which some timer is due; None: unknown, look it up.
        self._next_due: int | None = None
        # Every timer key below this has fired: scans start here, past RocksDB's
        # tombstones of fired timers.
        self._scan_from = TIMER

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
        end_of_due = timer_bound(w - self._lateness + 1)  # timers ending at or before are due
        results: list[WindowResult] = []
        while True:
            scan = self._store.items(self._scan_from, end_of_due)
            due = list(scan if limit is None else islice(scan, limit))
            for timer_key, value in due:
                end = timer_end(timer_key)
                if self._sessions is None:
                    results.append(self._fire_window(timer_key, value, end))
                elif timer_key[9] == WINDOW_TIMER:
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
        timer_key = timer_key_of(end, WINDOW_TAG, key.encode())
        if self._fold(timer_key, self.aggregates, value, t, seq):
            self._timer_added(end)
        if self._updates:
            new = self._read(timer_key)
            return AddResult(
                None, (window_result(self.aggregates, key, end - size, end, new, False),)
            )
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
            timer_key = timer_key_of(window.end, WINDOW_TAG, encoded_key)
            state = self._read(timer_key)
            changes.append(
                (timer_key, window.end, state is None, fold(self.aggregates, state, value, t, seq))
            )
        updates = []
        for timer_key, end, created, new in changes:
            self._write(timer_key, new)
            if created:
                self._timer_added(end)
            if self._updates:
                updates.append(
                    window_result(self.aggregates, key, end - self._size, end, new, False)
                )
        return AddResult(None, tuple(updates)) if updates else _ON_TIME

    def _fire_window(self, timer_key: bytes, value: bytes, end: int) -> WindowResult:
        state = self._state.take(timer_key)
        if state is None:
            state = decode_value(value)
        self._store.delete(timer_key)
        key = timer_key[10:].decode()
        return window_result(self.aggregates, key, end - self._size, end, state, True)

    # --- sessions -------------------------------------------------------------------------

    def _add_session(
        self, key: str, value: Mapping[str, Any], t: int, seq: int, w: int
    ) -> AddResult:
        sessions_of = self._sessions
        assert sessions_of is not None
        gap, lateness = self._gap, self._lateness
        encoded_key = key.encode()
        session_key = SESSION + encoded_key
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
        kept.sort(key=session_first)
        self._write(session_key, [fired_last, kept])
        timer_kept = False
        for s in merged:
            if s[1] == last:
                timer_kept = True
            else:
                self._store.delete(timer_key_of(s[1] + gap, WINDOW_TAG, encoded_key))
        if not timer_kept:
            self._store.put(timer_key_of(last + gap, WINDOW_TAG, encoded_key), b"")
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
        session_key = SESSION + encoded_key
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
            store.put(timer_key_of(expiry, EXPIRY_TAG, encoded_key), b"")
            self._timer_added(expiry)

    def _expire_session_key(self, timer_key: bytes, w: int) -> None:
        assert self._sessions is not None
        self._store.delete(timer_key)
        session_key = SESSION + timer_key[10:]
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
        self._state.write_back()
        if self._watermark_dirty:
            self._watermark_dirty = False
            self._store.put(WATERMARK_KEY, _pack_i64(self._watermark))

    def _advance(self, watermark: int) -> int:
        if watermark > self._watermark:
            self._watermark = watermark
            self._watermark_dirty = True
        return self._watermark

    def _stored_watermark(self) -> int:
        raw = self._store.get(WATERMARK_KEY)
        return NO_WATERMARK if raw is None else int(_unpack_i64(raw)[0])

    def _timer_added(self, end: int) -> None:
        due = end + self._lateness
        if self._next_due is not None and due < self._next_due:
            self._next_due = due

    def _find_next_due(self) -> int:
        for timer_key, _ in self._store.items(self._scan_from, TIMERS_END):
            return timer_end(timer_key) + self._lateness
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
            self._state.drop()
            self._watermark_dirty = False
            self._reset_epoch = store.reset_epoch
            self._watermark = self._stored_watermark()
            self._next_due = None
            self._scan_from = TIMER

    def __repr__(self) -> str:
        windows = self._tumbling or self._hopping or self._sessions
        return (
            f"WindowOperator({windows!r}, allowed_lateness_ms={self._lateness}, "
            f"emit={self.emit!r}, aggregates={self.aggregates!r})"
        )
