"""The buffers of a stream-stream join over one partition's store (pure: no Kafka).

Each side's records are buffered by join key and event time. A record that arrives
is matched against the other side's buffered records of its key whose event times are
at most `within` away, then buffered itself: a match is made as soon as both records
are there, whichever came first. A buffered record can still be matched until the
join's watermark passes `time + within + allowed_lateness`: after that, every record it
could match is late. It is then dropped from the buffer and, when the join type keeps
that side's unmatched records (`left`: the left side, `outer`: both) and it never
matched, returned once as unmatched.

Keys (the store is changelogged, so a restore rebuilds exactly this):
- `B side key-length key time topic offset` -> the buffered record (JSON);
- `X time side topic offset` -> its buffer key: the expiry index, in event-time order;
- `M` -> the watermark the buffers were last expired at (so a restart, whose watermark
  starts over, never lets in a record that could only have matched expired ones).
"""

from __future__ import annotations

import json
import struct
from dataclasses import dataclass
from typing import Any, Literal

from streamline.state.store import PartitionStore

Side = Literal["L", "R"]
LEFT: Side = "L"
RIGHT: Side = "R"
_OFFSET = 2**63  # event times (signed) as unsigned big-endian, so keys sort by time
_META = b"M"
_BUFFER = b"B"
_EXPIRY = b"X"


@dataclass(frozen=True)
class Buffered:
    """A record held by the join: its side, key, event time, value and where it came from."""

    side: Side
    key: str
    time: int
    value: dict[str, Any]
    origin: tuple[str, int, int]
    """(topic, partition, offset) of the record as it entered the topology."""
    matched: bool = False


def _time(t: int) -> bytes:
    return struct.pack(">Q", t + _OFFSET)


def _key_prefix(side: Side, key: str) -> bytes:
    encoded = key.encode()
    return _BUFFER + side.encode() + struct.pack(">H", len(encoded)) + encoded


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

    # --- the watermark the buffers were expired at -------------------------------------

    def expired_at(self) -> int | None:
        raw = self.store.get(_META)
        return None if raw is None else struct.unpack(">q", raw)[0]

    def is_late(self, time: int, watermark: int) -> bool:
        """Whether a record at `time` comes too late: a record it could match may be expired."""
        return time < watermark - self.lateness

    # --- adding records -----------------------------------------------------------------

    def add(self, record: Buffered) -> list[Buffered]:
        """Buffers a (non-late) record; returns the other side's records it matches."""
        other: Side = RIGHT if record.side == LEFT else LEFT
        prefix = _key_prefix(other, record.key)
        start = prefix + _time(record.time - self.within)
        end = prefix + _time(record.time + self.within + 1)
        matches: list[Buffered] = []
        store = self.store
        for key, raw in list(store.items(start, end)):
            found = self._decode(other, record.key, raw)
            matches.append(found)
            if other in self.keeps and not found.matched:  # never unmatched, from now on
                store.put(key, self._encode(found, matched=True))
        if matches:
            record = Buffered(
                record.side, record.key, record.time, record.value, record.origin, True
            )
        topic, _, offset = record.origin
        position = struct.pack(">BQ", self._topics.get(topic, 255), offset)
        buffer_key = _key_prefix(record.side, record.key) + _time(record.time) + position
        store.put(buffer_key, self._encode(record, record.matched))
        store.put(_EXPIRY + _time(record.time) + record.side.encode() + position, buffer_key)
        return matches

    # --- expiry -------------------------------------------------------------------------

    def expire(self, watermark: int) -> tuple[list[Buffered], int]:
        """Drops the records no later record can match at `watermark`: (those of a kept side
        that never matched, in event-time order, each once since it is gone after; how many
        were dropped in all)."""
        bound = watermark - self.within - self.lateness  # records before it are done
        known = self.expired_at()
        if known is not None and watermark <= known:
            return [], 0
        store = self.store
        unmatched: list[Buffered] = []
        dropped = 0
        for index_key, buffer_key in list(store.items(_EXPIRY, _EXPIRY + _time(bound))):
            raw = store.get(buffer_key)
            store.delete(index_key)
            if raw is None:
                continue
            store.delete(buffer_key)
            dropped += 1
            side: Side = LEFT if index_key[9:10] == b"L" else RIGHT
            if side in self.keeps:
                record = self._decode(side, None, raw)
                if not record.matched:
                    unmatched.append(record)
        store.put(_META, struct.pack(">q", watermark))
        return unmatched, dropped

    def buffered(self) -> int:
        """How many records both sides hold (a scan of the expiry index)."""
        return sum(1 for _ in self.store.items(prefix=_EXPIRY))

    # --- encoding -----------------------------------------------------------------------

    @staticmethod
    def _encode(record: Buffered, matched: bool) -> bytes:
        return json.dumps(
            [record.key, record.time, record.value, list(record.origin), matched],
            separators=(",", ":"),
        ).encode()

    @staticmethod
    def _decode(side: Side, key: str | None, raw: bytes) -> Buffered:
        stored_key, time, value, origin, matched = json.loads(raw)
        topic, partition, offset = origin
        return Buffered(side, stored_key, time, value, (topic, partition, offset), matched)
