"""Record checksums: the `streamline.checksum` header is the sha256 hex of the value bytes."""

from __future__ import annotations

import hashlib


def value_checksum(value: bytes | None) -> bytes:
    """The `streamline.checksum` header value of a record whose value is `value`."""
    return hashlib.sha256(value or b"").hexdigest().encode()
