"""The file sink: Parquet or JSONL files that become visible only for committed transactions.

The protocol is two-phase, like Flink's FileSink, tied to the loop's Kafka transaction:

1. records routed to the sink are buffered per input partition and `partition_by`
   values; at the commit, `prepare` writes each buffer to an in-progress file (a hidden
   `.part-...inprogress` name in its folder) and syncs it to disk, before the transaction
   commits (with the input offsets);
2. once the transaction has committed, `finalize` renames each in-progress file to its
   final name, `part-<topic>-<partition>-<first offset>-<last offset>.<format>`;
3. on an abort, `abort` deletes the in-progress files and drops the buffers (the input is
   read again). On a partition's assignment, `recover` looks at the files of that
   partition: an in-progress file wholly below the committed offset belongs to a
   transaction that committed just before a crash, and is renamed; any other in-progress
   file, and any final file reaching the committed offset or beyond, is deleted, and the
   records are written again from Kafka.

So a reader of the final folders never sees a partial file, an uncommitted record or a
duplicate (readers that skip hidden files, as pyarrow's datasets do, never see
in-progress ones). The commit is due once `roll.every` has passed since the transaction
began or the buffers hold about `roll.max_bytes`: one transaction per roll, so each
input partition writes one file per `partition_by` value and roll.
"""

from __future__ import annotations

import json
import logging
import os
import re
import time
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any
from urllib.parse import quote

from streamline.reliability.dead_letter import SINK, Failure
from streamline.runtime.record import Record
from streamline.serde.arrow import arrow_schema
from streamline.serde.fit import RecordFit
from streamline.serde.schema_store import Schema
from streamline.topology.model import FilesSpec

log = logging.getLogger("streamline.runtime")

TP = tuple[str, int]
INPROGRESS = ".inprogress"
_NAME = re.compile(r"\.?part-(?P<topic>.+)-(?P<partition>\d+)-(?P<first>\d+)-(?P<last>\d+)\.\w+")


@dataclass
class _Buffer:
    """The records of one input partition and one set of `partition_by` values."""

    folder: Path
    topic: str
    partition: int
    first: int
    last: int
    rows: list[dict[str, Any]] = field(default_factory=list)

    def file_name(self, extension: str) -> str:
        return f"part-{self.topic}-{self.partition}-{self.first:020d}-{self.last:020d}.{extension}"


def parse_name(name: str) -> tuple[TP, int, int] | None:
    """((topic, partition), first, last) of a part file's name, in progress or final."""
    match = _NAME.fullmatch(name.removesuffix(INPROGRESS))
    if match is None:
        return None
    tp = (match["topic"], int(match["partition"]))
    return tp, int(match["first"]), int(match["last"])


class FileSinkWriter:
    """One file sink: buffers, prepares, finalizes, aborts and recovers its files."""

    def __init__(self, name: str, spec: FilesSpec, schema: Schema, check: bool = False) -> None:
        self.name = name
        self.spec = spec
        self.schema = schema
        self.fit = RecordFit(schema)
        self.check = check
        """Check each record against the schema (after a map without `output:`)."""
        self.root = Path(spec.path)  # a relative path is taken from the working directory
        self.extension = spec.format
        self._arrow = arrow_schema(schema) if spec.format == "parquet" else None
        self._buffers: dict[tuple[TP, tuple[Any, ...]], _Buffer] = {}
        self._pending: list[tuple[Path, Path]] = []
        self.buffered_bytes = 0
        self.files_written = 0

    # --- records -----------------------------------------------------------------------

    def add(self, records: list[Record], failed: Callable[[Record, Failure], None]) -> int:
        """Buffers the records shaped to the sink's schema; a misfit is a `sink` dead letter.

        Returns how many were buffered."""
        if not records:
            return 0
        buffers, keys, shape = self._buffers, self.spec.partition_by, self.fit.shape
        added = 0
        for record in records:
            if self.check:
                misfit = self.fit.misfit(record.value)
                if misfit is not None:
                    failed(
                        record,
                        Failure(
                            SINK,
                            f"field {misfit[0]}: {misfit[1]}",
                            f"sinks.{self.name}",
                            field=misfit[0] or None,
                        ),
                    )
                    continue
            value = shape(record.value)
            added += 1
            slot = ((record.topic, record.partition), tuple(value.get(k) for k in keys))
            buffer = buffers.get(slot)
            if buffer is None:
                buffer = buffers[slot] = _Buffer(
                    self._folder(slot[1]),
                    record.topic,
                    record.partition,
                    record.offset,
                    record.offset,
                )
            buffer.last = record.offset
            buffer.rows.append(value)
        self.buffered_bytes += added * len(json.dumps(records[0].value, default=str))
        return added

    def _folder(self, values: tuple[Any, ...]) -> Path:
        folder = self.root
        for key, value in zip(self.spec.partition_by, values, strict=True):
            folder = folder / f"{key}={quote(str(value), safe='')}"
        return folder

    def planned(self) -> list[tuple[str, int, tuple[str, int, int, int]]]:
        """The files the next `prepare` writes: (absolute final path, records, (topic,
        partition, first, last) of their input)."""
        return [
            (
                str((b.folder / b.file_name(self.extension)).absolute()),
                len(b.rows),
                (b.topic, b.partition, b.first, b.last),
            )
            for b in self._buffers.values()
        ]

    def roll_due(self) -> bool:
        """Whether the buffers hold `roll.max_bytes` or more (the commit is then due)."""
        return self.buffered_bytes >= self.spec.roll.max_bytes

    # --- the two phases ------------------------------------------------------------------

    def prepare(self) -> None:
        """Writes every buffer to an in-progress file and syncs it (before the Kafka commit)."""
        for buffer in self._buffers.values():
            buffer.folder.mkdir(parents=True, exist_ok=True)
            final = buffer.folder / buffer.file_name(self.extension)
            temporary = buffer.folder / f".{final.name}{INPROGRESS}"
            self._write(temporary, buffer.rows)
            self._pending.append((temporary, final))
        self._buffers = {}
        self.buffered_bytes = 0

    def _write(self, path: Path, rows: list[dict[str, Any]]) -> None:
        if self._arrow is not None:
            import pyarrow as pa
            import pyarrow.parquet as pq

            table = pa.Table.from_pylist(rows, schema=self._arrow)
            pq.write_table(table, path)
            with open(path, "rb") as written:
                os.fsync(written.fileno())
            return
        with open(path, "wb") as out:
            out.write(
                b"".join(
                    json.dumps(row, default=str, ensure_ascii=False).encode() + b"\n"
                    for row in rows
                )
            )
            out.flush()
            os.fsync(out.fileno())

    def finalize(self) -> None:
        """Renames the prepared files to their final names (after the Kafka commit)."""
        folders = set()
        for temporary, final in self._pending:
            os.replace(temporary, final)
            folders.add(final.parent)
            self.files_written += 1
        for folder in folders:
            _sync_folder(folder)
        self._pending = []

    def abort(self) -> None:
        """Deletes the prepared files and drops the buffers: the input is read again."""
        for temporary, _final in self._pending:
            temporary.unlink(missing_ok=True)
        self._pending = []
        self._buffers = {}
        self.buffered_bytes = 0

    def recover(self, committed: Mapping[TP, int]) -> tuple[int, int]:
        """Settles the files of the partitions in `committed` (tp -> committed offset, 0 when
        none was): (files renamed, files deleted)."""
        renamed = deleted = 0
        if not self.root.exists():
            return renamed, deleted
        for path in _part_files(self.root):
            parsed = parse_name(path.name)
            if parsed is None or parsed[0] not in committed:
                continue
            tp, _first, last = parsed
            below = last < committed[tp]
            if path.name.endswith(INPROGRESS):
                if below:
                    os.replace(path, path.with_name(path.name[1:].removesuffix(INPROGRESS)))
                    renamed += 1
                else:
                    path.unlink()
                    deleted += 1
            elif not below:
                path.unlink()
                deleted += 1
        if renamed or deleted:
            log.info("file sink %s: %d files finalized, %d deleted", self.name, renamed, deleted)
        return renamed, deleted


def _part_files(root: Path) -> Iterable[Path]:
    for folder, _dirs, files in os.walk(root):
        for name in files:
            if "part-" in name:
                yield Path(folder) / name


def _sync_folder(folder: Path) -> None:
    fd = os.open(folder, os.O_RDONLY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


class FileSinks:
    """Every file sink of a topology: what the commit cycle calls at its phases."""

    def __init__(self, writers: list[FileSinkWriter], roll_every_ms: int) -> None:
        self.writers = writers
        self.roll_every_s = roll_every_ms / 1000

    def due(self, started: float) -> bool:
        """Whether the open transaction must commit to roll its files."""
        return time.monotonic() - started >= self.roll_every_s or any(
            w.roll_due() for w in self.writers
        )

    def prepare(self) -> None:
        for writer in self.writers:
            writer.prepare()

    def finalize(self) -> None:
        for writer in self.writers:
            writer.finalize()

    def abort(self) -> None:
        for writer in self.writers:
            writer.abort()

    def recover(self, committed: Mapping[TP, int]) -> None:
        for writer in self.writers:
            writer.recover(committed)
