"""A map whose calls run concurrently: an `async def` function, or a plain one in threads.

Calls run on one event loop per processing thread, at most `concurrency` at once.
Records with the same key form a chain whose calls run one after another, in offset
order; different keys run side by side. In the processing loop of a topology without
windows the calls run across batches (`call_window.py`): the stage passes on, per
partition, the completed prefix of what it holds, and the commit stops at the oldest
record still held. Elsewhere (windows, the test driver) the stage returns when every
call of the batch has completed (or exhausted its in-line attempts), with its outputs
in input order, so a slow call holds back the batch it is in, not the calls of other keys.

Calls may run again after a crash (their offsets were not committed): side effects in
a map are at-least-once; its outputs are exactly-once."""

from __future__ import annotations

import asyncio
import inspect
import logging
import threading
import time
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from typing import Any

from aiolimiter import AsyncLimiter

from streamline.observability.metrics import Metrics
from streamline.reliability.dead_letter import CIRCUIT_OPEN, MAP, Failure
from streamline.reliability.retry import AttemptsExhausted, RetryPolicy
from streamline.runtime.call_window import CallWindow
from streamline.runtime.circuit import STATE_VALUES, circuit_of
from streamline.runtime.record import Record
from streamline.runtime.stages import Dropped, Failed, Map, not_a_record
from streamline.topology.model import CircuitSpec, MapSpec, RateLimitSpec

log = logging.getLogger("streamline.runtime")
_local = threading.local()


def event_loop() -> asyncio.AbstractEventLoop:
    """The processing thread's event loop, shared by its concurrent maps across batches.

    One loop for the thread's lifetime, so clients user code keeps (an aiohttp session,
    an httpx.AsyncClient) stay bound to the loop they were made on.
    """
    loop: asyncio.AbstractEventLoop | None = getattr(_local, "loop", None)
    if loop is None or loop.is_closed():
        loop = _local.loop = asyncio.new_event_loop()
    return loop


class CircuitOpen:
    """The result of a record the open circuit let no call through for."""

    __slots__ = ("attempts", "reopens_in_s")

    def __init__(self, attempts: int, reopens_in_s: float) -> None:
        self.attempts = attempts
        self.reopens_in_s = reopens_in_s

    def failure(self, stage: str) -> Failure:
        wait_ms = max(int(self.reopens_in_s * 1000), MIN_CIRCUIT_WAIT_MS)
        return Failure(
            CIRCUIT_OPEN,
            f"the circuit of {stage} is open: no call made; waits {wait_ms} ms in the retry topic",
            stage,
            attempts=self.attempts,
            retry_after_ms=wait_ms,
        )


HOLD_PER_SLOT = 16
"""A pipelined map holds at most this many records per unit of `concurrency` before it
waits for the oldest to complete."""

MIN_CIRCUIT_WAIT_MS = 500
"""The shortest wait in the retry topic (a half-open circuit with all its probes out)."""


class CallTimedOut(Exception):
    """A call ran past the stage's `timeout` (a thread's call runs on, its result unused)."""


class ConcurrentMap(Map):
    """User code `dict -> dict | None` with up to `concurrency` calls in flight, per-key ordered."""

    def __init__(
        self,
        name: str,
        fn: Callable[[dict[str, Any]], Any],
        policy: RetryPolicy,
        concurrency: int,
        threads: int | None = None,
        timeout_ms: int | None = None,
        circuit: CircuitSpec | None = None,
        rate_limit: RateLimitSpec | None = None,
        on_retry: Callable[[], None] = lambda: None,
    ) -> None:
        super().__init__(name, fn, policy, on_retry)
        # a leaky bucket of `burst` calls draining at `per_second`: a token bucket's behaviour
        self._limiter = (
            AsyncLimiter(rate_limit.burst, rate_limit.burst / rate_limit.per_second)
            if rate_limit is not None
            else None
        )
        self._throttled = 0.0  # seconds spent waiting for the rate limit, not yet in the metrics
        self.circuit = circuit_of(circuit, self._circuit_moved)
        self._metrics: Metrics | None = None  # bound at the first report
        self._moves: list[str] = []  # circuit transitions not yet in the metrics
        self._durations: list[float] = []  # call times not yet in the metrics
        self.concurrency = concurrency
        self.timeout_s = timeout_ms / 1000 if timeout_ms is not None else None
        self.is_async = inspect.iscoroutinefunction(fn)
        self._executor = (
            ThreadPoolExecutor(threads, thread_name_prefix=f"map-{name}") if threads else None
        )
        self.inflight = 0
        self.window: CallWindow | None = None  # set when calls run across batches

    def process(self, batch: list[Record], failed: Failed, dropped: Dropped) -> list[Record]:
        if self.window is not None:
            done = self.window.take(batch)
        else:
            results = event_loop().run_until_complete(self._calls(batch))
            done = list(zip(batch, results, strict=True))
        out: list[Record] = []
        name = self.name
        for record, result in done:
            if isinstance(result, dict):
                record.value = result
                out.append(record)
            elif isinstance(result, AttemptsExhausted):
                failed(record, Failure(MAP, str(result), name, attempts=result.attempts))
            elif isinstance(result, CircuitOpen):
                failed(record, result.failure(name))
            else:
                not_a_record(name, record, result, failed, dropped)
        return out

    def pipeline(self, hold_limit: int | None = None) -> CallWindow:
        """Keep calls in flight across batches from now on (the processing loop's choice)."""
        limit = hold_limit if hold_limit is not None else HOLD_PER_SLOT * self.concurrency
        self.window = CallWindow(event_loop(), self._with_retries, self.concurrency, limit)
        return self.window

    @property
    def holds(self) -> bool:
        """Whether records of earlier batches wait here for their calls."""
        return self.window is not None and self.window.holds

    async def _calls(self, batch: list[Record]) -> list[Any]:
        """Every record's result (or AttemptsExhausted), in batch order."""
        results: list[Any] = [None] * len(batch)
        chains: dict[object, list[int]] = {}
        for i, record in enumerate(batch):
            key = record.out_key
            # a record without a key has nothing to keep order with: a chain of its own
            chains.setdefault(key if key is not None else (i,), []).append(i)
        slots = asyncio.Semaphore(self.concurrency)

        async def chain(indexes: list[int]) -> None:
            for i in indexes:
                async with slots:
                    results[i] = await self._with_retries(batch[i].value)

        await asyncio.gather(*(chain(indexes) for indexes in chains.values()))
        return results

    async def _with_retries(self, value: dict[str, Any]) -> Any:
        policy, circuit = self.policy, self.circuit
        attempt = 1
        while True:
            if self._limiter is not None:
                await self._acquire(self._limiter)
            if circuit is not None and not circuit.allow():
                return CircuitOpen(attempt - 1, circuit.reopens_in_s())
            self._in_flight(1)
            started = time.perf_counter()
            try:
                result = await self._call(value)
            except Exception as exc:
                self._done(started, False)
                if attempt >= policy.attempts:
                    exhausted = AttemptsExhausted(exc, attempt)
                    exhausted.__cause__ = exc
                    return exhausted
                self._retried(attempt, exc)
                await asyncio.sleep(policy.backoff_ms(attempt) / 1000.0)
                attempt += 1
                continue
            finally:
                self._in_flight(-1)
            self._done(started, True)
            return result

    async def _acquire(self, limiter: AsyncLimiter) -> None:
        if limiter.has_capacity():
            await limiter.acquire()
            return
        waited = time.perf_counter()
        await limiter.acquire()
        self._throttled += time.perf_counter() - waited

    def _in_flight(self, change: int) -> None:
        self.inflight += change
        if self._metrics is not None:
            self._metrics.calls.inflight(self.name, self.inflight)

    def _done(self, started: float, ok: bool) -> None:
        self.progressed_at = time.monotonic()
        self._durations.append(time.perf_counter() - started)
        if self.circuit is not None:
            self.circuit.record(ok)

    def _circuit_moved(self, to: str) -> None:
        log.warning("%s: the circuit is %s", self.name, to.replace("_", "-"))
        if self._metrics is not None:
            self._metrics.calls.circuit(self.name, to, STATE_VALUES[to])
        else:
            self._moves.append(to)

    def report(self, metrics: Metrics) -> None:
        """In-line retries, call times and circuit changes since the last report."""
        super().report(metrics)
        if self._metrics is None:
            self._metrics = metrics
            if self.circuit is not None:
                metrics.calls.circuit_state(self.name, STATE_VALUES[self.circuit.state])
        for to in self._moves:
            metrics.calls.circuit(self.name, to, STATE_VALUES[to])
        self._moves.clear()
        if self._durations:
            metrics.calls.observe(self.name, self._durations)
            self._durations = []
        if self._throttled:
            metrics.calls.throttled(self.name, self._throttled)
            self._throttled = 0.0

    async def _call(self, value: dict[str, Any]) -> Any:
        if self.timeout_s is None:
            return await self._run(value)
        if self._executor is not None:
            return await self._in_thread_with_timeout(value, self.timeout_s)
        try:
            return await asyncio.wait_for(self._run(value), self.timeout_s)
        except TimeoutError:
            raise CallTimedOut(
                f"the call took longer than {self.timeout_s * 1000:.0f} ms"
            ) from None

    async def _in_thread_with_timeout(self, value: dict[str, Any], timeout_s: float) -> Any:
        """The timeout runs from when a thread takes the call, not from the wait for a thread.

        A call past its timeout goes on in its thread (Python cannot stop it); its result
        is dropped, and the thread is busy until the function returns.
        """
        loop = asyncio.get_running_loop()
        started = loop.create_future()

        def run() -> Any:
            loop.call_soon_threadsafe(started.set_result, None)
            return self.fn(value)

        future = loop.run_in_executor(self._executor, run)
        await asyncio.wait({started, future}, return_when=asyncio.FIRST_COMPLETED)
        try:
            return await asyncio.wait_for(future, timeout_s)
        except TimeoutError:
            raise CallTimedOut(f"the call took longer than {timeout_s * 1000:.0f} ms") from None

    async def _run(self, value: dict[str, Any]) -> Any:
        if self.is_async:
            return await self.fn(value)  # type: ignore[misc]
        if self._executor is not None:
            return await asyncio.get_running_loop().run_in_executor(self._executor, self.fn, value)
        return self.fn(value)


def map_stage(
    name: str, fn: Callable[[dict[str, Any]], Any], spec: MapSpec, policy: RetryPolicy
) -> Map:
    """A plain `Map` for a plain function run one call at a time, else a `ConcurrentMap`.

    `policy` is the topology's; the stage's own `retry` replaces it. A plain function
    with a `timeout` runs in a thread (of one, unless `threads` says more), so the
    loop stops waiting for it.
    """
    if spec.retry is not None:
        backoff = spec.retry.backoff
        policy = RetryPolicy(
            attempts=spec.retry.attempts,
            initial_ms=backoff.initial,
            multiplier=backoff.multiplier,
            max_ms=backoff.max,
            jitter=backoff.jitter,
        )
    is_async = inspect.iscoroutinefunction(fn)
    plain = spec.threads is None and spec.timeout is None and spec.circuit is None
    plain = plain and spec.rate_limit is None
    if spec.in_flight == 1 and plain and not is_async:
        return Map(name, fn, policy)
    threads = spec.threads or (1 if not is_async else None)
    return ConcurrentMap(
        name, fn, policy, spec.in_flight, threads, spec.timeout, spec.circuit, spec.rate_limit
    )


def circuits(stages: list[Any]) -> dict[str, str]:
    """The state of each map stage's circuit, by stage path (for /readyz)."""
    return {s.name: s.circuit.state for s in stages if isinstance(s, ConcurrentMap) and s.circuit}
