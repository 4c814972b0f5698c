"""The local checkpoint of one state partition: how far its RocksDB store follows the changelog.

Like Kafka Streams' ``.checkpoint`` file: after a transaction has committed
and its state changes are in RocksDB, the runtime records the changelog
offset up to which the local store is complete. On restart or reassignment,
restore reads the changelog from that offset instead of from the beginning
(docs/architecture.md, "State and checkpoints"). The file is small JSON::

    {"changelog_offset": 1234, "generation": 1, "fingerprint": "9f2c..."}

It is replaced atomically (temporary file, fsync, rename), so a crash leaves
either the old or the new checkpoint, never a torn one. The directory is not
fsynced after the rename: losing it in a power failure leaves the previous
checkpoint, an older offset, and replaying the changelog from an older offset
is harmless (its records are whole values). A missing or unreadable file
reads as ``None``: the caller then restores from scratch, which is always
correct, only slower. Removal, by contrast, is made durable: a deleted
checkpoint that came back would vouch for a wiped store.
"""

from __future__ import annotations

import json
import os
from dataclasses import dataclass
from pathlib import Path

CHECKPOINT_FILE = ".checkpoint"
"""The checkpoint's file name inside a partition's state directory."""


@dataclass(frozen=True, slots=True)
class Checkpoint:
    """What the local store of one partition holds, as of its last commit or restore."""

    changelog_offset: int
    """The changelog offset to resume a restore from: every change below it is in the store."""
    generation: int
    """The state generation the store belongs to; state of another generation is wiped."""
    fingerprint: str
    """The topology fingerprint that wrote the store (for diagnostics)."""


def write_checkpoint(path: Path, checkpoint: Checkpoint, *, fsync: bool = True) -> None:
    """Replace the checkpoint file at ``path`` atomically.

    ``fsync=False`` skips flushing the file to disk (for tests and benchmarks:
    a power failure could then leave an empty file, which reads as no checkpoint).
    """
    data = json.dumps(
        {
            "changelog_offset": checkpoint.changelog_offset,
            "generation": checkpoint.generation,
            "fingerprint": checkpoint.fingerprint,
        },
        separators=(",", ":"),
    ).encode()
    tmp = path.with_name(path.name + ".tmp")
    fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o644)
    try:
        os.write(fd, data)
        if fsync:
            os.fsync(fd)
    finally:
        os.close(fd)
    os.replace(tmp, path)


def read_checkpoint(path: Path) -> Checkpoint | None:
    """The checkpoint stored at ``path``; ``None`` if it is missing, unreadable or malformed."""
    try:
        data = json.loads(path.read_bytes())
    except (OSError, ValueError):
        return None
    if not isinstance(data, dict):
        return None
    offset = _as_int(data.get("changelog_offset"))
    generation = _as_int(data.get("generation"))
    fingerprint = data.get("fingerprint")
    if offset is None or offset < 0 or generation is None or not isinstance(fingerprint, str):
        return None
    return Checkpoint(offset, generation, fingerprint)


def remove_checkpoint(path: Path) -> None:
    """Delete the checkpoint at ``path`` (and a leftover temporary file), if present."""
    for candidate in (path, path.with_name(path.name + ".tmp")):
        candidate.unlink(missing_ok=True)
    _fsync_directory(path.parent)


def _as_int(value: object) -> int | None:
    return value if isinstance(value, int) and not isinstance(value, bool) else None


def _fsync_directory(directory: Path) -> None:
    # The rename (or unlink) is durable only once the directory entry is.
    try:
        fd = os.open(directory, os.O_RDONLY)
    except OSError:
        return
    try:
        os.fsync(fd)
    except OSError:
        pass
    finally:
        os.close(fd)
