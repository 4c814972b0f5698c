"""The local state of one store for one input partition: a RocksDB database behind a transaction.

Layering, as in Quix Streams: RocksDB (rocksdict, raw bytes) holds what has
committed; a ``TransactionOverlay`` holds what the current Kafka transaction
has changed; ``PartitionStore`` reads through both and owns the commit cycle
of its partition (docs/architecture.md, "The exactly-once commit protocol" and "State and checkpoints"):

1. While a transaction is open, ``put``/``delete`` only change the overlay;
   ``get`` and ``items`` see the overlay over RocksDB.
2. The runtime produces ``pending_changes()`` to the changelog topic inside
   the transaction.
3. After the Kafka transaction commits: ``commit(offset)`` applies the
   overlay in one RocksDB write batch, then writes the checkpoint. On abort:
   ``rollback()``.
4. On assignment: ``begin_restore(end)`` says where to replay the changelog
   from (wiping state it cannot trust), ``restore(changes)`` applies replayed
   records, ``finish_restore(offset)`` records how far the replay went.

A crash between the write batch and the checkpoint leaves RocksDB ahead of
the checkpoint; the replay then re-applies changes that are already there,
which is harmless because the changelog holds whole values, not deltas.

Memory stays bounded: the block cache and the memtables of every store in
the process share one budget (``StoreOptions``), so state larger than memory
lives on disk. Nothing here talks to Kafka.
"""

from __future__ import annotations

import functools
from collections.abc import Callable, Iterable, Iterator
from dataclasses import dataclass
from pathlib import Path
from types import TracebackType
from typing import cast

from rocksdict import (
    BlockBasedIndexType,
    BlockBasedOptions,
    Cache,
    DBCompressionType,
    Options,
    Rdict,
    ReadOptions,
    WriteBatch,
    WriteBufferManager,
    WriteOptions,
)

from streamline.state.checkpoint import (
    CHECKPOINT_FILE,
    Checkpoint,
    read_checkpoint,
    remove_checkpoint,
    write_checkpoint,
)
from streamline.state.transaction import TransactionOverlay

_MIB = 1024 * 1024


@dataclass(frozen=True, slots=True)
class StoreOptions:
    """RocksDB sizing for the stores of a process.

    Stores opened with equal options share one block cache and one memtable
    budget, so memory does not grow with the number of partitions or keys.
    """

    block_cache_bytes: int = 32 * _MIB
    """LRU cache of data, index and filter blocks, shared by the stores."""
    write_buffer_bytes: int = 16 * _MIB
    """Size of one memtable before it is flushed to disk."""
    write_buffer_budget_bytes: int = 64 * _MIB
    """All memtables of all stores together; beyond it RocksDB flushes early."""
    bloom_bits_per_key: int = 10
    """Bloom filter density: lookups of absent keys (new windows) rarely touch disk."""
    sync_commits: bool = True
    """fsync the WAL, then the checkpoint, on commit: after a power failure the
    checkpoint never claims writes RocksDB lost. Turn off only for tests and benchmarks."""


DEFAULT_OPTIONS = StoreOptions()


def partition_path(state_dir: Path, topology: str, store: str, partition: int) -> Path:
    """Where the state of ``store`` for ``partition`` lives: ``<state_dir>/<topology>/<store>/<n>``."""
    return state_dir / topology / store / str(partition)


class PartitionStore:
    """Key-value state (bytes to bytes) of one store for one partition, with a transaction.

    ``path`` is the partition's state directory: RocksDB lives in ``db/``
    inside it and the checkpoint in ``.checkpoint``. ``generation`` is the
    state generation this process runs; ``fingerprint`` (the topology's) is
    recorded in the checkpoint for diagnostics.
    """

    def __init__(
        self,
        path: Path | str,
        generation: int,
        *,
        fingerprint: str = "",
        options: StoreOptions = DEFAULT_OPTIONS,
    ) -> None:
        self.path = Path(path)
        self.generation = generation
        self.fingerprint = fingerprint
        self.path.mkdir(parents=True, exist_ok=True)
        self._db_path = self.path / "db"
        self._checkpoint_path = self.path / CHECKPOINT_FILE
        self._rocks_options = _rocks_options(options)
        self._durable = options.sync_commits
        self._write_options = WriteOptions()
        self._write_options.sync = options.sync_commits
        self._db = Rdict(str(self._db_path), self._rocks_options)
        self._closed = False
        self._overlay = TransactionOverlay()
        self._checkpoint = read_checkpoint(self._checkpoint_path)
        self.epoch = 0
        """Changes whenever the open transaction ends (commit, rollback) or state is
        replaced (restore, wipe): callers caching reads for one transaction drop them."""
        self.reset_epoch = 0
        """Changes when state goes back or is replaced (rollback, restore, wipe): callers
        caching anything derived from committed state recompute it."""
        self._flushers: list[Callable[[], None]] = []

    def add_flusher(self, flush: Callable[[], None]) -> None:
        """Registers a writer that defers its writes: `flush` puts them into the transaction.

        The store calls it before it lists, counts, scans or commits the open
        transaction's changes, so a deferring writer (the window operator keeps
        the states it changed as objects and encodes each once per transaction)
        is never seen half-written. Its own reads must go through its cache.
        """
        self._flushers.append(flush)

    def _flush(self) -> None:
        for flush in self._flushers:
            flush()

    # --- reads and writes of the open transaction ---------------------------------------

    def get(self, key: bytes) -> bytes | None:
        """The value of ``key`` as the open transaction sees it; ``None`` if absent."""
        changes = self._overlay.changes
        if key in changes:
            return changes[key]
        value: bytes | None = self._db.get(key)
        return value

    def put(self, key: bytes, value: bytes) -> None:
        """Set ``key`` to ``value`` in the open transaction."""
        self._overlay.put(key, value)

    def delete(self, key: bytes) -> None:
        """Delete ``key`` in the open transaction (a changelog tombstone on commit)."""
        self._overlay.delete(key)

    def items(
        self,
        start: bytes | None = None,
        end: bytes | None = None,
        *,
        prefix: bytes | None = None,
    ) -> Iterator[tuple[bytes, bytes]]:
        """The entries with ``start <= key < end`` (or starting with ``prefix``), in key order.

        Pending writes of the open transaction are merged in: they replace
        committed values, and pending deletions hide them. Do not commit, roll
        back or restore while iterating.
        """
        if prefix is not None:
            if start is not None or end is not None:
                raise ValueError("items() takes either prefix or a start/end range, not both")
            start, end = prefix, prefix_end(prefix)
        self._flush()
        return self._merged_items(start, end)

    def _merged_items(
        self, start: bytes | None, end: bytes | None
    ) -> Iterator[tuple[bytes, bytes]]:
        changes = self._overlay.changes
        pending = iter(self._overlay.keys_between(start, end))
        read_options = ReadOptions()
        if end is not None:
            # Bounds the seek too: RocksDB need not walk deleted keys past the range.
            read_options.set_iterate_upper_bound(end)
        committed = cast(
            Iterator[tuple[bytes, bytes]], self._db.items(from_key=start, read_opt=read_options)
        )
        next_pending = next(pending, None)
        for key, value in committed:
            while next_pending is not None and next_pending < key:
                pending_value = changes.get(next_pending)
                if pending_value is not None:
                    yield next_pending, pending_value
                next_pending = next(pending, None)
            if next_pending == key:
                pending_value = changes.get(key)
                if pending_value is not None:
                    yield key, pending_value
                next_pending = next(pending, None)
            else:
                yield key, value
        while next_pending is not None:
            pending_value = changes.get(next_pending)
            if pending_value is not None:
                yield next_pending, pending_value
            next_pending = next(pending, None)

    def pending_changes(self) -> list[tuple[bytes, bytes | None]]:
        """The open transaction's changes, for the changelog: ``(key, value or None)``.

        One entry per key, in the order of each key's last write; ``None`` is a
        deletion (a tombstone on the compacted changelog topic).
        """
        self._flush()
        return list(self._overlay.changes.items())

    @property
    def pending_count(self) -> int:
        """How many keys the open transaction has changed."""
        self._flush()
        return len(self._overlay)

    # --- the commit cycle -------------------------------------------------------------

    def commit(self, changelog_offset: int) -> None:
        """Apply the open transaction to RocksDB, then checkpoint ``changelog_offset``.

        Call it only after the Kafka transaction holding this transaction's
        changelog records has committed. ``changelog_offset`` is where a
        restore would resume: past the last changelog record written so far.
        """
        self._flush()
        changes = self._overlay.changes
        if changes:
            batch = WriteBatch(raw_mode=True)
            for key, value in changes.items():
                if value is None:
                    batch.delete(key)
                else:
                    batch.put(key, value)
            self._db.write(batch, self._write_options)
        current = self._checkpoint
        if changes or current is None or current.changelog_offset != changelog_offset:
            self._write_checkpoint(changelog_offset)
        self._overlay.clear()
        self.epoch += 1

    def rollback(self) -> None:
        """Drop the open transaction's changes (the Kafka transaction was aborted)."""
        self._overlay.clear()
        self.epoch += 1
        self.reset_epoch += 1

    # --- restore ------------------------------------------------------------------------

    def checkpoint(self) -> Checkpoint | None:
        """The stored checkpoint; ``None`` when there is none (the store must be rebuilt)."""
        return self._checkpoint

    def begin_restore(self, changelog_end: int) -> int:
        """The changelog offset to replay from; wipes local state it cannot trust first.

        The checkpoint is used when it exists, belongs to this store's
        generation and does not lie past ``changelog_end`` (the changelog
        partition's end offset; a checkpoint beyond it means the topic was
        recreated). Otherwise the store is wiped and ``0`` returned: replay
        everything.
        """
        current = self._checkpoint
        if (
            current is not None
            and current.generation == self.generation
            and current.changelog_offset <= changelog_end
        ):
            return current.changelog_offset
        self.wipe()
        return 0

    def restore(self, changes: Iterable[tuple[bytes, bytes | None]]) -> None:
        """Apply changelog records ``(key, value or None)`` directly to RocksDB, in order.

        For replaying the changelog before the partition is processed; there
        must be no open transaction changes.
        """
        if self._overlay.changes:
            raise RuntimeError(
                "cannot restore a store with uncommitted changes: commit or roll back first"
            )
        batch = WriteBatch(raw_mode=True)
        for key, value in changes:
            if value is None:
                batch.delete(key)
            else:
                batch.put(key, value)
        if batch.len():
            self._db.write(batch)
        self.epoch += 1
        self.reset_epoch += 1

    def finish_restore(self, changelog_offset: int) -> None:
        """Record that the store holds every changelog record below ``changelog_offset``."""
        self._db.flush_wal(self._durable)
        self._write_checkpoint(changelog_offset)
        self.epoch += 1

    def wipe(self) -> None:
        """Delete all local state and the checkpoint; the store is then empty and usable."""
        self._overlay.clear()
        self._db.close()
        Rdict.destroy(str(self._db_path), self._rocks_options)
        remove_checkpoint(self._checkpoint_path)
        self._checkpoint = None
        self._db = Rdict(str(self._db_path), self._rocks_options)
        self.epoch += 1
        self.reset_epoch += 1

    # --- housekeeping -------------------------------------------------------------------

    def approx_keys(self) -> int:
        """An estimate of the number of keys (RocksDB's estimate plus pending new values)."""
        self._flush()
        estimate = self._db.property_int_value("rocksdb.estimate-num-keys") or 0
        pending = sum(1 for value in self._overlay.changes.values() if value is not None)
        return estimate + pending

    def close(self) -> None:
        """Close RocksDB, dropping uncommitted changes. Safe to call twice."""
        if self._closed:
            return
        self._closed = True
        self._overlay.clear()
        self._db.close()

    def __enter__(self) -> PartitionStore:
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        traceback: TracebackType | None,
    ) -> None:
        self.close()

    def __repr__(self) -> str:
        return f"PartitionStore({str(self.path)!r}, generation={self.generation})"

    def _write_checkpoint(self, changelog_offset: int) -> None:
        checkpoint = Checkpoint(changelog_offset, self.generation, self.fingerprint)
        write_checkpoint(self._checkpoint_path, checkpoint, fsync=self._durable)
        self._checkpoint = checkpoint


def prefix_end(prefix: bytes) -> bytes | None:
    """The smallest key above every key starting with ``prefix`` (``None``: no such key)."""
    trimmed = prefix.rstrip(b"\xff")
    if not trimmed:
        return None
    return trimmed[:-1] + bytes([trimmed[-1] + 1])


@functools.cache
def _shared_memory(options: StoreOptions) -> tuple[Cache, WriteBufferManager]:
    # One cache and one memtable budget per distinct StoreOptions, for the whole process.
    cache = Cache(options.block_cache_bytes)
    return cache, WriteBufferManager(options.write_buffer_budget_bytes, False)


def _rocks_options(options: StoreOptions) -> Options:
    cache, write_buffers = _shared_memory(options)
    table = BlockBasedOptions()
    table.set_block_cache(cache)
    table.set_bloom_filter(options.bloom_bits_per_key, False)
    # Index and filter blocks count against the cache instead of growing with the
    # data. Partitioned into 4 KB pieces: a whole filter of a large file does not
    # fit a cache shard, and reloading it on every lookup made adds 8x slower
    # beyond 700k keys (bench/state_memory.py).
    table.set_cache_index_and_filter_blocks(True)
    table.set_pin_l0_filter_and_index_blocks_in_cache(True)
    table.set_index_type(BlockBasedIndexType.two_level_index_search())
    table.set_partition_filters(True)
    table.set_metadata_block_size(4096)
    table.set_pin_top_level_index_and_filter(True)
    rocks = Options(raw_mode=True)
    rocks.create_if_missing(True)
    rocks.set_block_based_table_factory(table)
    rocks.set_write_buffer_size(options.write_buffer_bytes)
    rocks.set_max_write_buffer_number(2)
    rocks.set_write_buffer_manager(write_buffers)
    rocks.set_compression_type(DBCompressionType.lz4())
    rocks.set_level_compaction_dynamic_level_bytes(True)
    rocks.set_max_background_jobs(2)
    rocks.set_keep_log_file_num(2)
    rocks.set_max_log_file_size(_MIB)
    return rocks
