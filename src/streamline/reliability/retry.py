"""Retry policy for user code (map stages): attempts and exponential backoff with jitter."""

from __future__ import annotations

import random
import time
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any


@dataclass(frozen=True)
class RetryPolicy:
    """`attempts` in-line tries per record, waiting `initial * multiplier**n` (capped at `max`) between."""

    attempts: int = 3
    initial_ms: int = 100
    multiplier: float = 2.0
    max_ms: int = 5000
    jitter: bool = True

    def backoff_ms(self, attempt: int, rng: random.Random | None = None) -> float:
        """The wait after failed attempt number `attempt` (1-based); with jitter, uniform in [d/2, d]."""
        delay = min(float(self.max_ms), self.initial_ms * self.multiplier ** (attempt - 1))
        if self.jitter:
            delay *= 0.5 + 0.5 * (rng or random).random()
        return delay


class AttemptsExhausted(Exception):
    """Every in-line attempt failed; `last` is the final error and `attempts` how many were made."""

    def __init__(self, last: BaseException, attempts: int) -> None:
        super().__init__(f"{type(last).__name__}: {last}")
        self.last = last
        self.attempts = attempts


def call_with_retries(
    fn: Callable[[Any], Any],
    arg: Any,
    policy: RetryPolicy,
    sleep: Callable[[float], None] = time.sleep,
    on_retry: Callable[[int, BaseException], None] | None = None,
) -> Any:
    """`fn(arg)`, retried in line per `policy`; raises AttemptsExhausted after the last failure."""
    attempt = 1
    while True:
        try:
            return fn(arg)
        except Exception as exc:
            if attempt >= policy.attempts:
                raise AttemptsExhausted(exc, attempt) from exc
            if on_retry is not None:
                on_retry(attempt, exc)
            sleep(policy.backoff_ms(attempt) / 1000.0)
            attempt += 1
