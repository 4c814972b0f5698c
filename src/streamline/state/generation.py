"""The state generation, carried in the metadata of every offset streamline commits.

`streamline replay` resets offsets and starts a new generation; instances read it from
the committed offsets when partitions are assigned, and local state written under an
older generation is wiped (then rebuilt from the changelog). An offset committed
without streamline's metadata was set by another tool (e.g. Kafka's own
`kafka-consumer-groups --reset-offsets`): the runtime treats it as a rewind.
"""

from __future__ import annotations

import re

PREFIX = "streamline"
_PATTERN = re.compile(r"^streamline gen=(\d+)$")


def commit_metadata(generation: int) -> str:
    """The metadata streamline writes with every committed offset."""
    return f"{PREFIX} gen={generation}"


def generation_of(metadata: str | None) -> int | None:
    """The generation in a committed offset's metadata; None when streamline did not write it."""
    if not metadata:
        return None
    match = _PATTERN.match(metadata)
    return int(match.group(1)) if match else None
