"""Window state larger than memory: peak RSS and time for many keys in open windows.

Adds ``--keys`` distinct keys into open tumbling windows of a ``WindowOperator``
on a real ``PartitionStore`` (RocksDB in a temporary directory, default
options), committing every ``--commit-every`` records the way the runtime
does (changelog records taken from ``pending_changes()``, then ``commit``).
Then fires every window, in slices, committing after each. Prints the time
of each phase and the peak RSS (``VmHWM`` from /proc/self/status). Target:
1M keys under 400 MB.

    python -m bench.state_memory --keys 1000000

``--ops`` instead measures the cost of single operations (store reads and
writes, commits, operator adds and fires, the state codec against a struct
layout)::

    python -m bench.state_memory --ops
"""

from __future__ import annotations

import argparse
import struct
import tempfile
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

from streamline.runtime.aggregates import AggregateSpec
from streamline.runtime.window_operator import WindowOperator
from streamline.runtime.window_state import WindowKind
from streamline.state.codec import decode_value, encode_value
from streamline.state.store import PartitionStore, StoreOptions

HOUR = 3_600_000
BASE = 1_767_225_600_000  # 2026-01-01T00:00:00Z, the start of a window
SPEC = AggregateSpec(
    {
        "order_count": "count()",
        "revenue": "sum(amount)",
        "max_amount": "max(amount)",
        "min_amount": "min(amount)",
        "avg_amount": "avg(amount)",
        "first_order": "first(order_id)",
        "last_order": "last(order_id)",
    }
)


def memory_kb() -> dict[str, int]:
    """VmHWM (peak RSS) and VmRSS of this process, in kB."""
    out = {}
    for line in Path("/proc/self/status").read_text().splitlines():
        name, _, rest = line.partition(":")
        if name in ("VmHWM", "VmRSS"):
            out[name] = int(rest.split()[0])
    return out


def directory_mb(path: Path) -> float:
    return sum(p.stat().st_size for p in path.rglob("*") if p.is_file()) / 1e6


def order(i: int) -> dict[str, Any]:
    return {"amount": 10.0 + i % 997 * 0.25, "order_id": f"order-{i:09d}"}


def run_memory(keys: int, commit_every: int) -> None:
    with tempfile.TemporaryDirectory(prefix="streamline-bench-") as tmp:
        path = Path(tmp) / "bench" / "window" / "0"
        store = PartitionStore(path, generation=1, fingerprint="bench")
        op = WindowOperator(
            "tumbling", size_ms=HOUR, allowed_lateness_ms=0, aggregates=SPEC, store=store
        )
        changelog_offset = 0
        start = time.perf_counter()
        for i in range(keys):
            t = BASE + i % 1_000_000  # every record in the window [BASE, BASE + 1h)
            op.add(f"customer-{i:08d}", order(i), t, i, t - 5_000)
            if (i + 1) % commit_every == 0 or i + 1 == keys:
                changelog_offset += len(store.pending_changes())
                store.commit(changelog_offset)
        added = time.perf_counter() - start
        after_add = memory_kb()
        print(f"add     {keys:>9,} keys  {added:7.2f} s  {keys / added:>9,.0f} records/s")
        print(
            f"        peak RSS {after_add['VmHWM'] / 1024:.0f} MB, RSS {after_add['VmRSS'] / 1024:.0f} MB, "
            f"~{store.approx_keys():,} keys, {directory_mb(path):.0f} MB on disk"
        )

        start = time.perf_counter()
        fired = 0
        while results := op.fire(BASE + HOUR, limit=commit_every):
            fired += len(results)
            changelog_offset += len(store.pending_changes())
            store.commit(changelog_offset)
        elapsed = time.perf_counter() - start
        after_fire = memory_kb()
        print(f"fire    {fired:>9,} windows {elapsed:6.2f} s  {fired / elapsed:>9,.0f} windows/s")
        print(f"        peak RSS {after_fire['VmHWM'] / 1024:.0f} MB")
        store.close()


# --- per-operation costs -------------------------------------------------------------------


def report(label: str, seconds: float) -> None:
    print(f"{label:<60} {seconds * 1e6:8.2f} us")


def per_op(label: str, n: int, fn: Callable[[int], object]) -> None:
    start = time.perf_counter()
    for i in range(n):
        fn(i)
    report(label, (time.perf_counter() - start) / n)


def store_ops(directory: Path, n: int) -> None:
    store = PartitionStore(directory, 1)
    value = b"x" * 60
    for chunk in range(0, n, 20_000):
        for i in range(chunk, min(n, chunk + 20_000)):
            store.put(b"k%09d" % i, value)
        store.commit(chunk)
    print(f"PartitionStore with {n:,} committed keys (default options: durable commits)")
    per_op("get, key in RocksDB", n, lambda i: store.get(b"k%09d" % i))
    per_op("get, key absent (bloom filter)", n, lambda i: store.get(b"m%09d" % i))
    per_op("put (into the transaction overlay)", 20_000, lambda i: store.put(b"n%09d" % i, value))
    per_op("get, key in the overlay", 20_000, lambda i: store.get(b"n%09d" % i))
    start = time.perf_counter()
    store.commit(1)
    report("commit, per key of a 20,000-key transaction", (time.perf_counter() - start) / 20_000)

    def commit_one(i: int) -> None:
        store.put(b"c", b"v")
        store.commit(2 + i)

    per_op("commit of a 1-key transaction (WAL + checkpoint fsync)", 50, commit_one)
    for i in range(0, 1000, 2):
        store.put(b"k%09d" % i, value)
    start = time.perf_counter()
    count = sum(1 for _ in store.items(prefix=b"k"))
    report(
        "items(), per entry (RocksDB merged with the overlay)",
        (time.perf_counter() - start) / count,
    )
    store.close()


def operator_ops(
    directory: Path,
    label: str,
    kind: WindowKind,
    size_ms: int | None = None,
    advance_ms: int | None = None,
    gap_ms: int | None = None,
) -> None:
    store = PartitionStore(directory, 1, options=StoreOptions(sync_commits=False))
    op = WindowOperator(
        kind, size_ms=size_ms, advance_ms=advance_ms, gap_ms=gap_ms, aggregates=SPEC, store=store
    )
    keys = 20_000

    def add(i: int) -> object:
        return op.add(f"c{i % keys:08d}", order(i), BASE + i, i, BASE + i - 5_000)

    per_op(f"add {label}, new key", keys, add)
    per_op(f"add {label}, same keys, same transaction", keys, lambda i: add(keys + i))
    store.commit(1)
    per_op(f"add {label}, same keys, after commit", keys, lambda i: add(2 * keys + i))
    store.commit(2)
    start = time.perf_counter()
    fired = len(op.fire(BASE + 10 * HOUR))
    report(f"fire {label}, per window", (time.perf_counter() - start) / fired)
    per_op(f"fire {label}, nothing due", keys, lambda i: op.fire(BASE + 10 * HOUR))
    store.close()


def codec_ops() -> None:
    acc = SPEC.add(SPEC.init(), order(7), BASE, 7)
    state = [7, 9, BASE, BASE + 5, acc]
    encoded = encode_value(state)
    packed = _struct_encode(state)
    assert _struct_decode(packed) == state
    print(
        f"State codec, a window state of the spec example ({len(encoded)} bytes as JSON, "
        f"{len(packed)} as tagged struct)"
    )
    per_op("json encode (streamline.state.codec)", 100_000, lambda i: encode_value(state))
    per_op("json decode", 100_000, lambda i: decode_value(encoded))
    per_op(
        "tagged struct encode (a cached format per type tuple)",
        100_000,
        lambda i: _struct_encode(state),
    )
    per_op("tagged struct decode", 100_000, lambda i: _struct_decode(packed))
    fixed = struct.Struct(">qqqqqdddddq")
    numbers = (7, 9, BASE, BASE + 5, 1, 12.0, 12.0, 12.0, 12.0, 12.0, 1)
    per_op(
        "fixed struct encode (numbers only: cannot hold first/last)",
        100_000,
        lambda i: fixed.pack(*numbers),
    )


def run_ops(n: int) -> None:
    with tempfile.TemporaryDirectory(prefix="streamline-bench-") as tmp:
        store_ops(Path(tmp) / "store", n)
        print("\nWindowOperator, 20,000 keys (store without fsync; the spec example's aggregates)")
        operator_ops(Path(tmp) / "tumbling", "tumbling", "tumbling", size_ms=HOUR)
        operator_ops(
            Path(tmp) / "hopping",
            "hopping 3 windows",
            "hopping",
            size_ms=180_000,
            advance_ms=60_000,
        )
        operator_ops(Path(tmp) / "session", "session", "session", gap_ms=60_000)
    print()
    codec_ops()


# A struct layout that can hold what accumulators hold (None, ints, floats, strings):
# one type code per slot, numbers packed by a cached Struct, strings length-prefixed.
_CODES = {int: "q", float: "d", type(None): "n", str: "s"}
_ENCODERS: dict[tuple[type, ...], tuple[bytes, struct.Struct, list[int], list[int]]] = {}
_DECODERS: dict[bytes, tuple[struct.Struct, list[int], list[int], int]] = {}


def _struct_encode(state: list[Any]) -> bytes:
    flat = [*state[:4], *state[4]]
    types = tuple(map(type, flat))
    layout = _ENCODERS.get(types)
    if layout is None:
        codes = "".join(_CODES[t] for t in types)
        numbers = [i for i, c in enumerate(codes) if c in "qd"]
        strings = [i for i, c in enumerate(codes) if c == "s"]
        packer = struct.Struct(">" + "".join(codes[i] for i in numbers))
        layout = _ENCODERS[types] = (codes.encode(), packer, numbers, strings)
    codes_bytes, packer, numbers, strings = layout
    parts = [bytes([len(codes_bytes)]), codes_bytes, packer.pack(*[flat[i] for i in numbers])]
    for i in strings:
        data = flat[i].encode()
        parts += [len(data).to_bytes(2, "big"), data]
    return b"".join(parts)


def _struct_decode(data: bytes) -> list[Any]:
    n = data[0]
    codes_bytes = data[1 : 1 + n]
    layout = _DECODERS.get(codes_bytes)
    if layout is None:
        codes = codes_bytes.decode()
        numbers = [i for i, c in enumerate(codes) if c in "qd"]
        strings = [i for i, c in enumerate(codes) if c == "s"]
        unpacker = struct.Struct(">" + "".join(codes[i] for i in numbers))
        layout = _DECODERS[codes_bytes] = (unpacker, numbers, strings, n)
    unpacker, numbers, strings, size = layout
    flat: list[Any] = [None] * size
    for i, x in zip(numbers, unpacker.unpack_from(data, 1 + n), strict=True):
        flat[i] = x
    pos = 1 + n + unpacker.size
    for i in strings:
        length = int.from_bytes(data[pos : pos + 2], "big")
        flat[i] = data[pos + 2 : pos + 2 + length].decode()
        pos += 2 + length
    return [*flat[:4], flat[4:]]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n", 1)[0])
    parser.add_argument("--keys", type=int, default=1_000_000, help="distinct keys to add")
    parser.add_argument("--commit-every", type=int, default=20_000, help="records per commit")
    parser.add_argument("--ops", action="store_true", help="measure single operations instead")
    args = parser.parse_args()
    if args.ops:
        run_ops(min(args.keys, 200_000))
    else:
        run_memory(args.keys, args.commit_every)


if __name__ == "__main__":
    main()
