"""Bearer tokens and the per-token token bucket of the ingest server."""

from __future__ import annotations

import time
from pathlib import Path

import pytest

from streamline.errors import UsageError
from streamline.ingest.keys import KeyEntry, KeyIndex
from streamline.ingest.limits import Authenticator, RateLimiter, TokenBucket, load_tokens


def test_tokens_come_from_the_file_and_the_environment(tmp_path: Path) -> None:
    (tmp_path / "tokens").write_text("# partners\nabc\n\n  def  \n")
    env = {"STREAMLINE_INGEST_TOKENS": "x, y"}
    assert load_tokens(tmp_path / "tokens", env) == ["x", "y", "abc", "def"]
    assert load_tokens(None, {}) == []


def test_a_tokens_file_without_tokens_is_refused(tmp_path: Path) -> None:
    (tmp_path / "tokens").write_text("# nobody yet\n")
    with pytest.raises(UsageError, match="holds no token"):
        load_tokens(tmp_path / "tokens", {})


def test_no_token_is_401_a_wrong_one_403_a_right_one_passes() -> None:
    auth = Authenticator(["abc"])
    assert auth.check(None) == (401, None)
    assert auth.check("Basic abc") == (401, None)
    assert auth.check("Bearer nope") == (403, None)
    assert auth.check("Bearer abc") == (200, "abc")
    assert Authenticator([]).check(None) == (200, None)


def test_the_bucket_allows_a_burst_then_one_request_per_interval() -> None:
    now = [0.0]
    bucket = TokenBucket(rate=2, burst=3, clock=lambda: now[0])
    assert [bucket.take() for _ in range(3)] == [0, 0, 0]
    assert bucket.take() == pytest.approx(0.5)
    now[0] = 0.5
    assert bucket.take() == 0
    assert bucket.take() == pytest.approx(0.5)


def test_each_token_has_its_own_bucket_and_retry_after_is_whole_seconds() -> None:
    limiter = RateLimiter(rate=0.25, burst=1)
    assert limiter.retry_after("a") == 0
    assert limiter.retry_after("a") == 4
    assert limiter.retry_after("b") == 0
    assert RateLimiter(None).retry_after("a") == 0


def test_idempotency_keys_are_forgotten_after_the_window() -> None:
    at = int(time.time() * 1000)
    index = KeyIndex(window_ms=60_000)
    index.put(b"k", KeyEntry(at_ms=at, records=5, body_sha256="d"))
    assert index.get(b"k", now_ms=at + 59_999) == KeyEntry(at, 5, "d")
    assert index.get(b"k", now_ms=at + 60_000) is None
    assert KeyEntry.decode(KeyEntry(1, 2, "x").encode()) == KeyEntry(1, 2, "x")
