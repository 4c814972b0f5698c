"""The per-partition checkpoint file (streamline.state.checkpoint)."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from streamline.state.checkpoint import (
    Checkpoint,
    read_checkpoint,
    remove_checkpoint,
    write_checkpoint,
)


def test_checkpoint_round_trips(tmp_path: Path) -> None:
    path = tmp_path / ".checkpoint"
    write_checkpoint(path, Checkpoint(1234, 2, "abc"))
    assert read_checkpoint(path) == Checkpoint(1234, 2, "abc")


def test_checkpoint_file_is_the_documented_json(tmp_path: Path) -> None:
    path = tmp_path / ".checkpoint"
    write_checkpoint(path, Checkpoint(7, 1, "fp"))
    assert json.loads(path.read_text()) == {
        "changelog_offset": 7,
        "generation": 1,
        "fingerprint": "fp",
    }


def test_writing_replaces_the_previous_checkpoint_and_leaves_no_temporary_file(
    tmp_path: Path,
) -> None:
    path = tmp_path / ".checkpoint"
    write_checkpoint(path, Checkpoint(1, 1, "a"))
    write_checkpoint(path, Checkpoint(2, 1, "a"), fsync=False)
    assert read_checkpoint(path) == Checkpoint(2, 1, "a")
    assert sorted(p.name for p in tmp_path.iterdir()) == [".checkpoint"]


def test_missing_checkpoint_reads_as_none(tmp_path: Path) -> None:
    assert read_checkpoint(tmp_path / ".checkpoint") is None


@pytest.mark.parametrize(
    "content",
    [
        b"",
        b"{not json",
        b"\xff\xfe",
        b"[1, 2, 3]",
        b'{"changelog_offset": 1, "generation": 1}',
        b'{"changelog_offset": "1", "generation": 1, "fingerprint": "x"}',
        b'{"changelog_offset": 1.5, "generation": 1, "fingerprint": "x"}',
        b'{"changelog_offset": true, "generation": 1, "fingerprint": "x"}',
        b'{"changelog_offset": -1, "generation": 1, "fingerprint": "x"}',
        b'{"changelog_offset": 1, "generation": null, "fingerprint": "x"}',
        b'{"changelog_offset": 1, "generation": 1, "fingerprint": 3}',
    ],
)
def test_corrupt_checkpoint_reads_as_none(tmp_path: Path, content: bytes) -> None:
    path = tmp_path / ".checkpoint"
    path.write_bytes(content)
    assert read_checkpoint(path) is None


def test_removing_deletes_checkpoint_and_leftover_temporary_file(tmp_path: Path) -> None:
    path = tmp_path / ".checkpoint"
    write_checkpoint(path, Checkpoint(1, 1, "a"))
    (tmp_path / ".checkpoint.tmp").write_bytes(b"partial")
    remove_checkpoint(path)
    assert list(tmp_path.iterdir()) == []
    remove_checkpoint(path)  # removing nothing is fine
