"""The partitions this process holds, and how far it has read and committed each."""

from __future__ import annotations

TP = tuple[str, int]


class Offsets:
    """Assignment, positions and committed offsets, shared by the loop's objects.

    The task manager changes the assignment on rebalances; the commit cycle moves
    positions as batches are processed, commits them and rewinds to the committed
    offsets on an abort; health reads both for lag and freshness.
    """

    def __init__(self) -> None:
        self.assignment: set[TP] = set()
        self.positions: dict[TP, int] = {}
        """Next offset to read per partition, as processed (in the open transaction)."""
        self.committed: dict[TP, int] = {}
        """Next offset per partition as last committed: where an abort rewinds to."""
        self.committed_at_ms: int | None = None
        """Wall-clock time of this process's last commit (for heartbeats)."""
        self.generation = 0
        """The state generation, kept in the committed offsets' metadata."""
        self.just_assigned = False
        """Set on each assignment until the next commit: the first transaction after an
        assignment commits as soon as it has records, not a commit interval later, so
        partitions taken over (or back) show progress at once."""

    def assign(self, tp: TP) -> None:
        """`tp` is held from now on; its offsets are read from the group's commits."""
        self.assignment.add(tp)
        self.committed.pop(tp, None)
        self.positions.pop(tp, None)

    def start_at(self, tp: TP, offset: int) -> None:
        """`tp` is committed up to `offset` and is read from there."""
        self.committed[tp] = self.positions[tp] = offset

    def forget(self, tp: TP) -> None:
        """`tp` is no longer held."""
        self.assignment.discard(tp)
        self.positions.pop(tp, None)
        self.committed.pop(tp, None)

    def position(self, tp: TP) -> int | None:
        """Where reading `tp` has got to, committed or not."""
        return self.positions.get(tp, self.committed.get(tp))
