"""The window operator's types, the layout of its state in a store, and the state itself.

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
from typing import Any, Final, Literal, NamedTuple, Protocol

from streamline.runtime.aggregates import AggregateSpec
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


WATERMARK_KEY: Final = b"W"
TIMER: Final = b"T"
TIMERS_END: Final = b"U"
SESSION: Final = b"S"
WINDOW_TIMER: Final = 0
EXPIRY_TIMER: Final = 1
WINDOW_TAG: Final = b"\x00"
EXPIRY_TAG: Final = b"\x01"

TIME_OFFSET: Final = 1 << 63
MIN_TIME: Final = -(1 << 63)
MAX_TIME: Final = (1 << 63) - 1
pack_u64 = struct.Struct(">Q").pack


def timer_key_of(end: int, tag: bytes, key: bytes) -> bytes:
    return TIMER + pack_u64(end + TIME_OFFSET) + tag + key


def timer_bound(end: int) -> bytes:
    """The first possible timer key with this end (clamped to the timer range)."""
    if end <= MIN_TIME:
        return TIMER
    if end > MAX_TIME:
        return TIMERS_END
    return TIMER + pack_u64(end + TIME_OFFSET)


def timer_end(timer_key: bytes) -> int:
    return int.from_bytes(timer_key[1:9], "big") - TIME_OFFSET


# The per-transaction cache of decoded state is dropped beyond this many entries.
CACHE_LIMIT: Final = 10_000


class DecodedState:
    """Decoded values of the store keys read or written, kept across commits.

    Keys written in the open transaction are encoded into the store once, at
    `write_back` (the operator's flush: before a scan, a listing or a commit).
    """

    __slots__ = ("_cache", "_dirty", "_store")

    def __init__(self, store: WindowStore) -> None:
        self._store = store
        self._cache: dict[bytes, Any] = {}  # None: absent
        self._dirty: dict[bytes, None] = {}

    def read(self, key: bytes) -> Any:
        cache = self._cache
        if key in cache:
            return cache[key]
        raw = self._store.get(key)
        value = None if raw is None else decode_value(raw)
        if len(cache) >= CACHE_LIMIT:
            self.write_back()
            cache.clear()
        cache[key] = value
        return value

    def write(self, key: bytes, value: Any) -> None:
        self._cache[key] = value
        self._dirty[key] = None

    def remove(self, key: bytes) -> None:
        self._store.delete(key)
        self._cache[key] = None
        self._dirty.pop(key, None)

    def fold(
        self,
        key: bytes,
        spec: AggregateSpec,
        value: Mapping[str, Any],
        t: int,
        seq: int,
    ) -> bool:
        """Folds one record into the window state at `key` (as `fold` does); True if the
        state is new (its window had no record).

        The cached state is changed in place (the cache is dropped on a rollback), after
        the aggregates took the record: if they reject it, the state is unchanged.
        """
        cache = self._cache
        state = cache[key] if key in cache else self.read(key)
        if state is None:
            cache[key] = [seq, seq, t, t, spec.folder(spec.init(), value, t, seq)]
            self._dirty[key] = None
            return True
        state[4] = spec.folder(state[4], value, t, seq)  # raises before any change
        if seq < state[0]:
            state[0] = seq
        if seq > state[1]:
            state[1] = seq
        if t < state[2]:
            state[2] = t
        if t > state[3]:
            state[3] = t
        self._dirty[key] = None
        return False

    def take(self, key: bytes) -> Any:
        """The cached value of `key` (None if not cached), forgotten: the caller deletes it."""
        self._dirty.pop(key, None)
        return self._cache.pop(key, None)

    def write_back(self) -> None:
        """Writes the values changed since the last write-back into the store."""
        store, cache = self._store, self._cache
        dirty, self._dirty = self._dirty, {}
        for key in dirty:
            store.put(key, encode_value(cache[key]))

    def drop(self) -> None:
        """Forgets everything: the store's state went back or was replaced."""
        self._cache.clear()
        self._dirty.clear()


def fold(
    spec: AggregateSpec, state: list[Any] | None, value: Mapping[str, Any], t: int, seq: int
) -> list[Any]:
    """A window's state with one more record: [min_seq, max_seq, min_t, max_t, accumulator]."""
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


def window_result(
    spec: AggregateSpec, key: str, start: int, end: int, state: list[Any], final: bool
) -> WindowResult:
    min_seq, max_seq, min_t, max_t, acc = state
    return WindowResult(key, start, end, spec.result(acc), final, min_seq, max_seq, min_t, max_t)


def session_first(session: list[Any]) -> int:
    first: int = session[0]
    return first


def required(value: int | None, name: str, kind: str) -> int:
    if value is None:
        raise ValueError(f"{kind} windows need {name}")
    return value
