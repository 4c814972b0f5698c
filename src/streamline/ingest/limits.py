"""Who may post (bearer tokens) and how often (a token bucket per token): pure logic."""

from __future__ import annotations

import hmac
import math
import os
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path

from streamline.errors import UsageError

TOKENS_ENV = "STREAMLINE_INGEST_TOKENS"  # comma-separated


def load_tokens(path: Path | None, environ: dict[str, str] | None = None) -> list[str]:
    """The accepted tokens: one a line in `path` (# comments), plus those in STREAMLINE_INGEST_TOKENS."""
    env = os.environ if environ is None else environ
    tokens = [t.strip() for t in env.get(TOKENS_ENV, "").split(",") if t.strip()]
    if path is not None:
        try:
            lines = path.read_text().splitlines()
        except OSError as exc:
            raise UsageError(f"cannot read the tokens file {path}: {exc.strerror}") from None
        tokens += [ln.strip() for ln in lines if ln.strip() and not ln.lstrip().startswith("#")]
        if not tokens:
            raise UsageError(f"the tokens file {path} holds no token")
    return tokens


class Authenticator:
    """Checks `Authorization: Bearer <token>`; with no tokens configured, everyone may post."""

    def __init__(self, tokens: list[str]) -> None:
        self._tokens = [t.encode() for t in tokens]

    @property
    def enabled(self) -> bool:
        return bool(self._tokens)

    def check(self, authorization: str | None) -> tuple[int, str | None]:
        """(200, token) when allowed, (401, None) without a bearer token, (403, None) with a wrong one."""
        if not self._tokens:
            return 200, None
        scheme, _, token = (authorization or "").partition(" ")
        if scheme.lower() != "bearer" or not token.strip():
            return 401, None
        given = token.strip().encode()
        # compare with every token, in constant time, so timing tells nothing about them
        matched = [t for t in self._tokens if hmac.compare_digest(t, given)]
        return (200, matched[0].decode()) if matched else (403, None)


@dataclass
class TokenBucket:
    """`rate` requests a second on average, at most `burst` at once."""

    rate: float
    burst: float
    clock: Callable[[], float] = time.monotonic
    _level: float = field(init=False)
    _at: float = field(init=False)

    def __post_init__(self) -> None:
        self._level = self.burst
        self._at = self.clock()

    def take(self) -> float:
        """0 when a request may pass now (and takes its token), else the seconds until one may."""
        now = self.clock()
        self._level = min(self.burst, self._level + (now - self._at) * self.rate)
        self._at = now
        if self._level >= 1:
            self._level -= 1
            return 0.0
        return (1 - self._level) / self.rate


class RateLimiter:
    """One token bucket per bearer token (one shared bucket when auth is off)."""

    def __init__(self, rate: float | None, burst: float | None = None) -> None:
        self.rate = rate
        self.burst = burst if burst is not None else max(1.0, rate or 1.0)
        self._buckets: dict[str | None, TokenBucket] = {}

    def retry_after(self, token: str | None) -> int:
        """0 when the request may pass, else whole seconds to put in Retry-After."""
        if not self.rate:
            return 0
        bucket = self._buckets.get(token)
        if bucket is None:
            bucket = self._buckets[token] = TokenBucket(self.rate, self.burst)
        wait = bucket.take()
        return 0 if wait == 0 else max(1, math.ceil(wait))
