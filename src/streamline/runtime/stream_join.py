"""The buffers of a stream-stream join over one partition's store (pure: no Kafka).

Each side's records are buffered by join key and event time. A record that arrives
is matched against the other side's buffered records of its key whose event times are
at most `within` away, then buffered itself: a match is made as soon as both records
are there, whichever came first. A buffered record can still be matched until the
join's watermark passes `time + within + allowed_lateness`: after that, every record it
could match is late. It is then dropped from the buffer and, when the join type keeps
that side's unmatched records (`left`: the left side, `outer`: both) and it never
matched, returned once as unmatched.

The buffered records are held twice: in the store, which is changelogged and so what a
restore rebuilds, and in memory (`runtime/join_index.py`), which matching and expiry
read. The memory index is rebuilt from the store whenever the store goes back or is
replaced (a restore, an abort). Writes to the store are deferred to the end of the
transaction (the store's flusher): a record that is buffered and expired within one
transaction never reaches the store or its changelog.

Keys (the store is changelogged, so a restore rebuilds exactly this):
- `B side key-length key time topic offset` -> the buffered record: MessagePack of
  (key, time, value, origin, matched) (JSON in stores written before);
- `M` -> the watermark the buffers were last expired at (so a restart, whose watermark
  starts over, never lets in a record that could only have matched expired ones).
Stores written before the memory index also hold `X time side topic offset` -> buffer
key, an expiry index; those keys are deleted as the records they index expire.
"""

from __future__ import annotations

import json
import struct
from bisect import bisect_left
from typing import Any, Literal, NamedTuple

import msgpack

from streamline.runtime.join_index import JoinIndex
from streamline.state.store import PartitionStore

Side = Literal["L", "R"]
LEFT: Side = "L"
RIGHT: Side = "R"
_OFFSET = 2**63  # event times (signed) as unsigned big-endian, so keys sort by time
_META = b"M"
_BUFFER = b"B"
_EXPIRY = b"X"
_TIME = struct.Struct(">Q")
_POSITION = struct.Struct(">BQ")
_WATERMARK = struct.Struct(">q")
_LENGTH = struct.Struct(">H")


class Buffered(NamedTuple):
    """A record held by the join: its side, key, event time, value and where it came from."""

    side: Side
    key: str
    time: int
    value: dict[str, Any]
    origin: tuple[str, int, int]
    """(topic, partition, offset) of the record as it entered the topology."""
    matched: bool = False


class _Held:
    """A buffered record in memory, its store key, whether it ever matched (the record's
    own `matched` is as it arrived) and whether the store holds it yet."""

    __slots__ = ("buffer_key", "matched", "record", "stored")

    def __init__(self, record: Buffered, buffer_key: bytes, matched: bool, stored: bool) -> None:
        self.record = record
        self.buffer_key = buffer_key
        self.matched = matched
        self.stored = stored


def _time(t: int) -> bytes:
    return _TIME.pack(t + _OFFSET)


def _buffer_key(side: Side, key: str, time: int, position: bytes) -> bytes:
    encoded = key.encode()
    return b"".join(
        (_BUFFER, side.encode(), _LENGTH.pack(len(encoded)), encoded, _TIME.pack(time + _OFFSET),
         position)
    )  # fmt: skip


class JoinBuffers:
    """Both sides' buffers of one partition, matching and expiring them."""

    def __init__(
        self,
        store: PartitionStore,
        within_ms: int,
        allowed_lateness_ms: int,
        join_type: Literal["inner", "left", "outer"],
        topics: list[str],
    ) -> None:
        self.store = store
        self.within = within_ms
        self.lateness = allowed_lateness_ms
        self.keeps: frozenset[Side] = frozenset(
            {"inner": (), "left": (LEFT,), "outer": (LEFT, RIGHT)}[join_type]
        )
        self._topics = {t: i for i, t in enumerate(topics)}
        """Input topics by index, so records of two topics at one offset get distinct keys."""
        self._index: JoinIndex[_Held] = JoinIndex()
        self._unwritten: dict[bytes, _Held] = {}
        """Records added or changed in the open transaction, written to the store on flush."""
        self._legacy: list[tuple[int, bytes]] = []
        """(time, key) of the expiry index keys of an older store, deleted as they expire."""
        self._expired_at: int | None = None
        self._loaded_epoch = -1
        """The store's reset epoch the memory index was built at (-1: not built)."""
        self._packer = msgpack.Packer()
        store.add_flusher(self._flush)

    # --- the memory index, rebuilt from the store -------------------------------------

    def _current(self) -> None:
        if self._loaded_epoch != self.store.reset_epoch:
            self.reload()

    def reload(self) -> None:
        """Rebuilds the memory index from the store (after a restore or a rollback)."""
        store = self.store
        self._unwritten.clear()  # a rollback dropped them; nothing is written from here
        self._loaded_epoch = store.reset_epoch
        index: JoinIndex[_Held] = JoinIndex()
        for buffer_key, raw in store.items(prefix=_BUFFER):
            side: Side = LEFT if buffer_key[1:2] == b"L" else RIGHT
            record = self._decode(side, raw)
            held = _Held(record, buffer_key, record.matched, True)
            index.add(side, record.key, record.time, buffer_key[-_POSITION.size :], held)
        self._index = index
        self._legacy = [
            (_TIME.unpack_from(key, 1)[0] - _OFFSET, key) for key, _ in store.items(prefix=_EXPIRY)
        ]
        meta = store.get(_META)
        self._expired_at = None if meta is None else _WATERMARK.unpack(meta)[0]

    def _flush(self) -> None:
        """Writes the records added or changed in the open transaction into it."""
        unwritten = self._unwritten
        if not unwritten:
            return
        if self._loaded_epoch != self.store.reset_epoch:  # rolled back: they are gone
            unwritten.clear()
            return
        store = self.store
        encode = self._encode
        for buffer_key, held in unwritten.items():
            store.put(buffer_key, encode(held.record, held.matched))
            held.stored = True
        unwritten.clear()

    # --- the watermark the buffers were expired at -------------------------------------

    def expired_at(self) -> int | None:
        self._current()
        return self._expired_at

    def is_late(self, time: int, watermark: int) -> bool:
        """Whether a record at `time` comes too late: a record it could match may be expired."""
        return time < watermark - self.lateness

    # --- adding records -----------------------------------------------------------------

    def add(self, record: Buffered) -> list[Buffered]:
        """Buffers a (non-late) record; returns the other side's records it matches."""
        if self._loaded_epoch != self.store.reset_epoch:
            self.reload()
        side = record.side
        other: Side = RIGHT if side == LEFT else LEFT
        time = record.time
        within = self.within
        found = self._index.between(other, record.key, time - within, time + within)
        if not found:
            matches: list[Buffered] = []
            matched = False
        else:
            keeps = other in self.keeps
            matches = []
            for held in found:
                match = held.record
                if held.matched and not match.matched:  # as it is stored
                    match = Buffered(*match[:5], True)
                elif keeps and not held.matched:  # never unmatched, from now on
                    held.matched = True
                    self._unwritten[held.buffer_key] = held
                matches.append(match)
            matched = True
        topic, _, offset = record.origin
        position = _POSITION.pack(self._topics.get(topic, 255), offset)
        buffer_key = _buffer_key(side, record.key, time, position)
        held = _Held(record, buffer_key, matched or record.matched, False)
        self._index.add(side, record.key, time, position, held)
        self._unwritten[buffer_key] = held
        return matches

    # --- expiry -------------------------------------------------------------------------

    def expire(self, watermark: int) -> tuple[list[Buffered], int]:
        """Drops the records no later record can match at `watermark`: (those of a kept side
        that never matched, in event-time order, each once since it is gone after; how many
        were dropped in all)."""
        self._current()
        bound = watermark - self.within - self.lateness  # records before it are done
        known = self._expired_at
        if known is not None and watermark <= known:
            return [], 0
        store = self.store
        unwritten = self._unwritten
        keeps = self.keeps
        unmatched: list[Buffered] = []
        gone = self._index.expire(bound)
        for side, _, held in gone:
            if held.stored:
                store.delete(held.buffer_key)
            unwritten.pop(held.buffer_key, None)
            if side in keeps and not held.matched:
                unmatched.append(held.record)
        if self._legacy:
            done = bisect_left(self._legacy, (bound,))
            for _, legacy_key in self._legacy[:done]:
                store.delete(legacy_key)
            del self._legacy[:done]
        store.put(_META, _WATERMARK.pack(watermark))
        self._expired_at = watermark
        return unmatched, len(gone)

    def buffered(self) -> int:
        """How many records both sides hold."""
        self._current()
        return len(self._index)

    # --- encoding -----------------------------------------------------------------------

    def _encode(self, record: Buffered, matched: bool) -> bytes:
        packed: bytes = self._packer.pack(
            (record.key, record.time, record.value, record.origin, matched)
        )
        return packed

    @staticmethod
    def _decode(side: Side, raw: bytes) -> Buffered:
        if raw[:1] == b"[":  # JSON, as stores written before MessagePack hold
            stored_key, time, value, origin, matched = json.loads(raw)
        else:
            stored_key, time, value, origin, matched = msgpack.unpackb(raw)
        topic, partition, offset = origin
        return Buffered(side, stored_key, time, value, (topic, partition, offset), matched)
