"""Calls kept in flight across batches: a concurrent map that does not drain at each batch.

In the processing loop a stateless topology's concurrent map takes a batch, starts its
calls and gives back, per source partition, the completed prefix of what it holds: the
records from the oldest one held up to (not including) the first whose call is still
running. The rest it holds into the next batches while their calls go on, so the window
of calls in flight does not empty at every batch and every commit.

`HeldOffsets` keeps the commit honest: each partition's position stops at the first
record a map still holds, so a transaction commits only completed records. An abort, a
rewind or a revoke drops what is held (calls not started are not made, a call in flight
runs on, its result unused); the consumer reads it again from the committed offsets.
"""

from __future__ import annotations

import asyncio
from collections import deque
from collections.abc import Awaitable, Callable, Iterable
from typing import TYPE_CHECKING, Any

from streamline.runtime.record import Record

if TYPE_CHECKING:
    from streamline.runtime.transaction import Transaction

TP = tuple[str, int]

SETTLE_S = 0.05
"""How long a batch that added no work waits for a held call to complete."""


class _Held:
    __slots__ = ("done", "dropped", "record", "result")

    def __init__(self, record: Record) -> None:
        self.record = record
        self.result: Any = None
        self.done = False
        self.dropped = False


class CallWindow:
    """The records one concurrent map holds, per partition in offset order, and their calls.

    Calls for one key run one after the other in offset order, across batches (a chain
    per key, a task that runs while the key has records waiting); at most `concurrency`
    run at once. `take` returns once no more than `concurrency` calls are waiting or
    running (so the next batch is needed to keep the window full) and some record is
    ready to go, or all are done; while `hold_limit` records are held, it waits for one.
    """

    def __init__(
        self,
        loop: asyncio.AbstractEventLoop,
        call: Callable[[dict[str, Any]], Awaitable[Any]],
        concurrency: int,
        hold_limit: int,
    ) -> None:
        self._loop = loop
        self._call = call
        self._concurrency = concurrency
        self._hold_limit = hold_limit
        self._slots = asyncio.Semaphore(concurrency)
        self._partitions: dict[TP, deque[_Held]] = {}
        self._chains: dict[object, deque[_Held]] = {}  # records waiting, by key
        self._tasks: set[asyncio.Task[None]] = set()
        self._held = 0
        self._outstanding = 0  # calls not yet completed (running or waiting)
        self._releasable = False  # some partition's oldest held record is done
        self._waiter: asyncio.Future[None] | None = None
        self._timed_out = False

    @property
    def holds(self) -> bool:
        return self._held > 0

    def take(self, batch: list[Record]) -> list[tuple[Record, Any]]:
        """Starts the batch's calls; (record, result) of the completed prefix of each partition."""
        for record in batch:
            self._start(record)
        if self._held:
            self._loop.run_until_complete(self._settle())
        return self._release()

    def held_from(self) -> dict[TP, int]:
        """The offset of the oldest record held, per partition holding any."""
        return {tp: held[0].record.offset for tp, held in self._partitions.items() if held}

    def drop(self, partitions: Iterable[TP] | None = None) -> None:
        """Forgets the held records of `partitions` (all by default): calls not started are
        not made; a call in flight runs on, its result unused."""
        for tp in list(self._partitions) if partitions is None else partitions:
            for held in self._partitions.pop(tp, ()):
                self._held -= 1
                held.dropped = True
        self._releasable = any(h and h[0].done for h in self._partitions.values())

    def _start(self, record: Record) -> None:
        held = _Held(record)
        tp = (record.topic, record.partition)
        partition = self._partitions.get(tp)
        if partition is None:
            partition = self._partitions[tp] = deque()
        partition.append(held)
        self._held += 1
        self._outstanding += 1
        key = record.out_key
        if key is not None:
            chain = self._chains.get(key)
            if chain is not None:  # its key's chain runs: the record waits its turn there
                chain.append(held)
                return
            chain = self._chains[key] = deque((held,))
        else:  # a record without a key has nothing to keep order with
            chain = deque((held,))
        task = self._loop.create_task(self._run(key, chain))
        self._tasks.add(task)
        task.add_done_callback(self._tasks.discard)

    async def _run(self, key: object, chain: deque[_Held]) -> None:
        slots, call, partitions = self._slots, self._call, self._partitions
        try:
            while chain:
                held = chain[0]
                if not held.dropped:
                    async with slots:
                        if not held.dropped:  # dropped while it waited for a slot
                            held.result = await call(held.record.value)
                            held.done = True
                chain.popleft()
                self._outstanding -= 1
                record = held.record
                partition = partitions.get((record.topic, record.partition))
                if held.done and partition and partition[0] is held:
                    self._releasable = True
                if self._waiter is not None and self._ready():
                    self._wake()
        finally:
            if key is not None and self._chains.get(key) is chain:
                del self._chains[key]

    def _ready(self) -> bool:
        if self._outstanding == 0:
            return True
        if self._outstanding > self._concurrency:
            return False
        if self._releasable:
            return True
        return self._timed_out and self._held < self._hold_limit

    def _wake(self) -> None:
        waiter = self._waiter
        if waiter is not None and not waiter.done():
            waiter.set_result(None)

    def _timeout(self) -> None:
        self._timed_out = True
        if self._ready():
            self._wake()

    async def _settle(self) -> None:
        self._timed_out = False
        if self._ready():
            return
        self._waiter = self._loop.create_future()
        timer = self._loop.call_later(SETTLE_S, self._timeout)
        try:
            await self._waiter
        finally:
            timer.cancel()
            self._waiter = None

    def _release(self) -> list[tuple[Record, Any]]:
        out: list[tuple[Record, Any]] = []
        if not self._releasable:
            return out
        for partition in self._partitions.values():
            while partition and partition[0].done:
                held = partition.popleft()
                out.append((held.record, held.result))
        self._held -= len(out)
        self._releasable = False
        return out


class HeldOffsets:
    """Positions that stop at the oldest record a map holds, so commits hold completed records.

    Around each batch's move of the positions: `uncap` puts back how far each partition
    was read, the batch moves them on, `cap` lowers each to the oldest held record.
    """

    def __init__(self, windows: list[CallWindow]) -> None:
        self.windows = windows
        self._read: dict[TP, int] = {}  # how far a capped partition was read
        self._unlisted: dict[TP, int] = {}  # first offset read and not yet in a commit's inputs

    def read(self, txn: Transaction, batch: list[Record], positions: dict[TP, int]) -> None:
        """`txn.read` the batch, each position stopping at the oldest record held."""
        self.uncap(positions)
        txn.read(batch, positions)
        unlisted = self._unlisted
        for tp, (first, _last) in txn.inputs.items():
            unlisted.setdefault(tp, first)
        self.cap(positions)

    def inputs(self, positions: dict[TP, int]) -> dict[TP, tuple[int, int]]:
        """The offsets a commit covers, per partition: from the first not yet listed in an
        earlier commit to just before the oldest record still held. A held record is listed
        by the commit that holds its output, so lineage ranges match what each commit did."""
        spans: dict[TP, tuple[int, int]] = {}
        for tp, first in list(self._unlisted.items()):
            end = positions.get(tp)
            if end is None or end <= first:
                continue
            spans[tp] = (first, end - 1)
            if tp in self._read:  # capped: the oldest held record is listed next time
                self._unlisted[tp] = end
            else:
                del self._unlisted[tp]
        return spans

    def uncap(self, positions: dict[TP, int]) -> None:
        positions.update(self._read)
        self._read = {}

    def cap(self, positions: dict[TP, int]) -> None:
        read = self._read
        for window in self.windows:
            for tp, offset in window.held_from().items():
                position = positions.get(tp)
                if position is not None and offset < position:
                    read.setdefault(tp, position)
                    positions[tp] = offset

    def drop(self, partitions: Iterable[TP] | None = None) -> None:
        """After an abort (all partitions) or a revoke: held records are read again later."""
        tps = None if partitions is None else list(partitions)
        for window in self.windows:
            window.drop(tps)
        if tps is None:
            self._read, self._unlisted = {}, {}
        else:
            for tp in tps:
                self._read.pop(tp, None)
                self._unlisted.pop(tp, None)


def pipelined_calls(pipeline: Any) -> HeldOffsets | None:
    """Turns on calls across batches for the concurrent maps of a stateless `pipeline`.

    The processing loop's commit cycle asks for it; the test driver, and topologies with
    windows (whose tasks take records partition by partition), keep draining each batch.
    """
    if pipeline.windowed:
        return None
    windows = [stage.pipeline() for stage in pipeline.stages if hasattr(stage, "pipeline")]
    return HeldOffsets(windows) if windows else None
