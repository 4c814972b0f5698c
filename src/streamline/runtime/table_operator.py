"""A table partition: the rows of one partition of a table's topic, in RocksDB.

A table (`tables:` in the topology) is a compacted topic read into state. Each partition
of it is a `PartitionStore` whose `StoreSpec` has `changelog=False`: the table's own
topic is its history, nothing else is written, and the store's checkpoint is the offset
of that topic read so far. Records are upserts: applying them again from an older
offset ends in the same state, so the table needs no transaction.

- a plain table holds the latest row per key: store key = the table key (UTF-8);
- a versioned table holds the versions of each key, as of `valid_from`: store key =
  table key, a zero byte, then `valid_from` as 8 big-endian bytes (shifted to sort
  unsigned), so a lookup as of T reads the key's versions up to T and takes the last.
  A tombstone is a version with an empty value (no row from then on). Versions older
  than `history` behind the newest one are forgotten, except the one in force then.

Rows are stored as JSON of the table fields the joins read; lookups go through a bounded
cache of decoded rows (a key's entry is dropped when the table changes it). `TableState` holds the
partitions this instance has, for the join stages to look up in. Nothing here talks to
Kafka (`table_manager.py` does).
"""

from __future__ import annotations

import bisect
import hashlib
import json
import struct
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from streamline.reliability.dead_letter import Failure
from streamline.runtime.operators import OperatorStore, StoreSpec
from streamline.runtime.record import Record
from streamline.serde import AvroCodec, DecodeError
from streamline.serde.convert import parse_timestamp_ms
from streamline.state.store import PartitionStore, partition_path

TABLE_DECODE = "table_decode"
"""The error type of a table record that does not decode or has no key."""

_SHIFT = 1 << 63
_VERSION = struct.Struct(">Q")
CACHE_KEYS = 100_000
"""Decoded keys a table partition keeps in memory for lookups (then the cache starts over)."""
_TABLE_GENERATION = 0
"""Tables do not follow the topology's state generation: a replay of the stream never
invalidates them (their history is their own topic)."""


def _encode_time(ms: int) -> bytes:
    return _VERSION.pack(ms + _SHIFT)


def _decode_time(data: bytes) -> int:
    return int(_VERSION.unpack(data)[0]) - _SHIFT


@dataclass(frozen=True)
class TableSettings:
    """What every partition of one table shares."""

    name: str
    topic: str
    codec: AvroCodec
    key_field: str | None
    valid_from: str | None
    history_ms: int | None
    """Set for a versioned table."""
    fields: tuple[str, ...]
    """The table fields the joins read: what a row keeps."""
    topology: str
    state_dir: Path
    global_: bool = False
    """Every instance holds every partition of the table."""

    @property
    def store_name(self) -> str:
        return f"table-{self.name}"

    @property
    def stage(self) -> str:
        """How failures name the table."""
        return f"tables.{self.name}"

    @property
    def versioned(self) -> bool:
        return self.history_ms is not None

    @property
    def layout(self) -> str:
        """A digest of what a row holds: stored state with another layout is reloaded."""
        text = json.dumps([self.fields, self.key_field, self.valid_from, self.versioned])
        return hashlib.sha256(text.encode()).hexdigest()


class TablePartition:
    """One partition of a table: its store, applying the topic's records and answering lookups."""

    def __init__(self, settings: TableSettings, partition: int) -> None:
        self.settings = settings
        self.partition = partition
        path = partition_path(settings.state_dir, settings.topology, settings.store_name, partition)
        self.store = PartitionStore(path, _TABLE_GENERATION, fingerprint=settings.layout)
        checkpoint = self.store.checkpoint()
        if checkpoint is not None and checkpoint.fingerprint != settings.layout:
            self.store.wipe()  # the rows hold other fields: load the table again
        self.stores = [
            OperatorStore(
                StoreSpec(settings.store_name, settings.topic, changelog=False), self.store
            )
        ]
        self.applied = 0
        self._cache: dict[str, Any] = {}  # key -> row (plain) or (times, rows) (versioned)

    def start_offset(self, end: int) -> int:
        """The offset to read the topic from: the checkpoint's, else 0 (the store is wiped)."""
        return self.store.begin_restore(end)

    # --- applying the table's topic ----------------------------------------------------

    def apply(self, records: list[Record], failures: list[tuple[Record, Failure]]) -> None:
        """Upserts (and tombstones) of the topic, in offset order; bad ones fail, the rest load."""
        settings = self.settings
        for record in records:
            try:
                key, row, valid_from = self._parse(record)
            except ValueError as exc:
                failures.append((record, Failure(TABLE_DECODE, str(exc), settings.stage)))
                continue
            self._cache.pop(key.decode(), None)
            if settings.versioned:
                self._put_version(key, row, valid_from)
            elif row is None:
                self.store.delete(key)
            else:
                self.store.put(key, row)
            self.applied += 1

    def _parse(self, record: Record) -> tuple[bytes, bytes | None, int]:
        """(store key, row or None for a tombstone, valid_from) of one table record."""
        settings = self.settings
        record_key = record.key.decode("utf-8", "replace") if record.key is not None else None
        valid_from = record.event_time
        if record.raw is None:
            if record_key is None:
                raise ValueError(f"table {settings.name}: a tombstone without a record key")
            return record_key.encode(), None, valid_from
        try:
            value = settings.codec.decode(record.raw)
        except DecodeError as exc:
            raise ValueError(f"table {settings.name}: {exc}") from exc
        if settings.key_field is not None:
            key_value = value.get(settings.key_field)
            if key_value is None:
                raise ValueError(f"table {settings.name}: no key in field {settings.key_field!r}")
            key = str(key_value)
        elif record_key is None:
            raise ValueError(f"table {settings.name}: no record key (the table key)")
        else:
            key = record_key
        if settings.valid_from is not None:
            valid_from = _timestamp(value.get(settings.valid_from), settings)
        row = json.dumps({f: value.get(f) for f in settings.fields}, separators=(",", ":"))
        return key.encode(), row.encode(), valid_from

    def _put_version(self, key: bytes, row: bytes | None, valid_from: int) -> None:
        store = self.store
        prefix = key + b"\x00"
        store.put(prefix + _encode_time(valid_from), row if row is not None else b"")
        history = self.settings.history_ms
        assert history is not None
        versions = [k for k, _ in store.items(prefix=prefix)]
        newest = _decode_time(versions[-1][len(prefix) :])
        cutoff = newest - history
        in_force = [k for k in versions if _decode_time(k[len(prefix) :]) <= cutoff]
        for old in in_force[:-1]:  # keep the version in force at the cutoff
            store.delete(old)

    def checkpoint(self, offset: int) -> None:
        """Writes the applied rows, and records that the store holds the topic below `offset`."""
        self.store.commit(offset)

    # --- lookups -----------------------------------------------------------------------

    def lookup(self, key: str, as_of: int) -> dict[str, Any] | None:
        """The row of `key` (as of event time `as_of` for a versioned table), or None."""
        cache = self._cache
        entry = cache.get(key, _MISSING)
        if entry is _MISSING:
            if len(cache) >= CACHE_KEYS:
                cache.clear()
            entry = cache[key] = self._load(key)
        if not self.settings.versioned:
            return entry  # type: ignore[no-any-return]
        times, rows = entry
        at = bisect.bisect_right(times, as_of)
        return rows[at - 1] if at else None

    def _load(self, key: str) -> Any:
        if not self.settings.versioned:
            row = self.store.get(key.encode())
            return json.loads(row) if row is not None else None
        prefix = key.encode() + b"\x00"
        times, rows = [], []
        for k, value in self.store.items(prefix=prefix):
            times.append(_decode_time(k[len(prefix) :]))
            rows.append(json.loads(value) if value else None)
        return times, rows

    def keys(self) -> int:
        return self.store.approx_keys()

    def close(self) -> None:
        self.store.close()


_MISSING = object()


def _timestamp(value: object, settings: TableSettings) -> int:
    if isinstance(value, int) and not isinstance(value, bool):
        return value
    try:
        return parse_timestamp_ms(value)  # type: ignore[arg-type]
    except (TypeError, ValueError, AttributeError):
        raise ValueError(
            f"table {settings.name}: valid_from field {settings.valid_from} holds {value!r}"
        ) from None


class TableState:
    """The table partitions this instance holds, by table name and partition number."""

    def __init__(self, settings: list[TableSettings]) -> None:
        self.settings = {s.name: s for s in settings}
        self.partitions: dict[str, dict[int, TablePartition]] = {s.name: {} for s in settings}
        self.sync: Callable[[list[tuple[Record, Failure]]], None] = lambda _failures: None
        """Reads the tables up to their topics' current ends (the table manager's `follow`),
        adding the table records that failed; a join calls it before each batch."""

    def __bool__(self) -> bool:
        return bool(self.settings)

    def of(self, table: str) -> dict[int, TablePartition]:
        return self.partitions[table]
