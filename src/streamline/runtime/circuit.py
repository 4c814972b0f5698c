"""A circuit breaker per map stage: stop calling a dependency that mostly fails.

Closed, it counts the outcomes of the calls over the last `window`; once at least
`min_calls` were made there and the share that failed reaches `failure_rate`, it
opens. Open, it allows no call; the stage sends its records to the retry topic to wait
until the circuit may close. After `open_for` it is half-open: up to `probes` calls go
through; as many successes close it, one failure opens it again for `open_for`.

Pure logic with an injectable clock: the stage asks `allow()` before each call and
reports each outcome with `record(ok)`.
"""

from __future__ import annotations

import time
from collections import deque
from collections.abc import Callable
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from streamline.topology.model import CircuitSpec

CLOSED, HALF_OPEN, OPEN = "closed", "half_open", "open"
STATE_VALUES = {CLOSED: 0, HALF_OPEN: 1, OPEN: 2}
"""`streamline_circuit_state`'s value for each state."""


class CircuitBreaker:
    """The state of one stage's circuit; `on_transition(to)` hears every change."""

    def __init__(
        self,
        failure_rate: float,
        min_calls: int,
        window_s: float,
        open_for_s: float,
        probes: int = 3,
        clock: Callable[[], float] = time.monotonic,
        on_transition: Callable[[str], None] = lambda to: None,
    ) -> None:
        self.failure_rate = failure_rate
        self.min_calls = min_calls
        self.window_s = window_s
        self.open_for_s = open_for_s
        self.probes = probes
        self._clock = clock
        self._on_transition = on_transition
        self.state = CLOSED
        self.opened_at = 0.0
        self._outcomes: deque[tuple[float, bool]] = deque()
        self._failures = 0
        self._probing = 0  # probe calls in flight while half-open
        self._probe_successes = 0

    def allow(self) -> bool:
        """Whether a call may go out now (a half-open circuit counts it as a probe)."""
        if self.state == CLOSED:
            return True
        if self.state == OPEN:
            if self._clock() - self.opened_at < self.open_for_s:
                return False
            self._move(HALF_OPEN)
            self._probing = self._probe_successes = 0
        if self._probing >= self.probes:
            return False
        self._probing += 1
        return True

    def record(self, ok: bool) -> None:
        """The outcome of a call that `allow()` let through."""
        now = self._clock()
        if self.state == HALF_OPEN:
            self._probing = max(self._probing - 1, 0)
            if not ok:
                self._open(now)
                return
            self._probe_successes += 1
            if self._probe_successes >= self.probes:
                self._outcomes.clear()
                self._failures = 0
                self._move(CLOSED)
            return
        if self.state == OPEN:
            return  # a call that started before the circuit opened
        self._outcomes.append((now, ok))
        self._failures += not ok
        self._expire(now)
        calls = len(self._outcomes)
        if calls >= self.min_calls and self._failures >= self.failure_rate * calls:
            self._open(now)

    def reopens_in_s(self) -> float:
        """Seconds until an open circuit lets probes through (0 unless open)."""
        if self.state != OPEN:
            return 0.0
        return max(self.opened_at + self.open_for_s - self._clock(), 0.0)

    def _open(self, now: float) -> None:
        self.opened_at = now
        self._outcomes.clear()
        self._failures = 0
        self._move(OPEN)

    def _expire(self, now: float) -> None:
        outcomes = self._outcomes
        while outcomes and now - outcomes[0][0] > self.window_s:
            _, ok = outcomes.popleft()
            self._failures -= not ok

    def _move(self, to: str) -> None:
        if to != self.state:
            self.state = to
            self._on_transition(to)


def circuit_of(
    spec: CircuitSpec | None,
    on_transition: Callable[[str], None],
    clock: Callable[[], float] = time.monotonic,
) -> CircuitBreaker | None:
    """The breaker of a `circuit:` setting (a map's or a webhook sink's); None without one."""
    if spec is None:
        return None
    return CircuitBreaker(
        spec.failure_rate,
        spec.min_calls,
        spec.window / 1000,
        spec.open_for / 1000,
        spec.probes,
        clock=clock,
        on_transition=on_transition,
    )
