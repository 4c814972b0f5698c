"""`streamline ingest http` against the real broker, driven by an HTTP client we don't own (httpx)."""

from __future__ import annotations

import os
import threading
import uuid
from collections import Counter
from concurrent.futures import ThreadPoolExecutor
from typing import Any

import httpx
import pytest

from streamline.serde import AvroCodec, SchemaStore
from tests.helpers import ROOT, read_all
from tests.support.ingest import IngestServer, jsonl, orders

FULL = os.environ.get("STREAMLINE_ACCEPTANCE_SCALE") == "full"
SCHEMA = "com.example.Order"
NDJSON = {"Content-Type": "application/x-ndjson"}


def _values(kafka, topic: str, expected: int) -> list[dict[str, Any]]:  # type: ignore[no-untyped-def]
    store = SchemaStore(ROOT / "schemas")
    codec = AvroCodec(store, store.get(SCHEMA))
    return [codec.decode(m.value()) for m in read_all(kafka, topic, timeout=60, expected=expected)]


@pytest.fixture
def server(bootstrap_env, make_topic, tmp_path):  # type: ignore[no-untyped-def]
    topic = make_topic("ingest", partitions=3)
    started = IngestServer(
        bootstrap_env,
        tmp_path / "ingest.log",
        "--topic",
        topic,
        "--schema",
        SCHEMA,
        "--key-field",
        "customer_id",
        "--instance-id",
        uuid.uuid4().hex[:8],
    ).start()
    started.topic = topic  # type: ignore[attr-defined]
    yield started
    started.stop()


def test_concurrent_batches_land_exactly_once_and_invalid_batches_send_nothing(
    server, kafka
) -> None:  # type: ignore[no-untyped-def]
    total = 100_000 if FULL else 6_000
    records = orders(total)
    batches = [records[i : i + 500] for i in range(0, total, 500)]
    bad_batches = {i: i % 500 for i in range(3, len(batches), 4)}  # batch -> the invalid record

    def post(number: int) -> tuple[int, dict[str, Any]]:
        batch = list(batches[number])
        if number in bad_batches:
            at = bad_batches[number]
            batch[at] = dict(batch[at], amount="lots")
        answer = httpx.post(
            f"{server.url}/v1/topics/{server.topic}",
            content=jsonl(batch),
            headers=NDJSON,
            timeout=60,
        )
        return answer.status_code, answer.json()

    with ThreadPoolExecutor(8) as pool:
        answers = list(pool.map(post, range(len(batches))))

    for number, (status, body) in enumerate(answers):
        if number in bad_batches:
            assert status == 400, body
            assert body["errors"] == [
                {
                    "index": bad_batches[number],
                    "field": "amount",
                    "reason": "'lots' is not a valid double",
                }
            ]
        else:
            assert (status, body) == (
                200,
                {"topic": server.topic, "records": 500, "replayed": False},
            )
    sent = [r for n, b in enumerate(batches) if n not in bad_batches for r in b]
    landed = _values(kafka, server.topic, len(sent))
    assert len(landed) == len(sent)
    assert sorted(landed, key=lambda r: r["order_id"]) == sent


@pytest.mark.slow
def test_retried_requests_are_written_once_across_two_sigkills(
    bootstrap_env, make_topic, kafka, tmp_path
) -> None:  # type: ignore[no-untyped-def]
    topic = make_topic("ingest-idem", partitions=3)
    server = IngestServer(
        bootstrap_env,
        tmp_path / "ingest.log",
        "--topic",
        topic,
        "--schema",
        SCHEMA,
        "--instance-id",
        uuid.uuid4().hex[:8],
    ).start()
    total = 100_000 if FULL else 5_000
    records = orders(total)
    batches = [records[i : i + 500] for i in range(0, total, 500)]
    done = Counter[str]()
    lock = threading.Lock()

    def send(number: int, key: str) -> None:
        """Posts until answered 200: through SIGKILLs, 503s and refused connections."""
        while True:
            try:
                answer = httpx.post(
                    f"{server.url}/v1/topics/{topic}",
                    content=jsonl(batches[number]),
                    headers={**NDJSON, "Idempotency-Key": key},
                    timeout=30,
                )
                if answer.status_code == 200:
                    assert answer.json()["records"] == 500
                    with lock:
                        done["ok"] += 1
                    return
                assert answer.status_code == 503, answer.text
            except httpx.TransportError:
                pass
            threading.Event().wait(0.2)

    def client(number: int) -> None:
        key = f"batch-{number}"
        send(number, key)
        send(number, key)  # every request retried once with the same key

    def killer() -> None:
        for threshold in (len(batches) // 3, 2 * len(batches) // 3):
            while True:
                with lock:
                    if done["ok"] >= threshold:
                        break
                threading.Event().wait(0.05)
            server.kill()
            server.start()

    chaos = threading.Thread(target=killer)
    chaos.start()
    try:
        with ThreadPoolExecutor(8) as pool:
            list(pool.map(client, range(len(batches))))
        chaos.join(120)
    finally:
        server.stop()
    assert done["ok"] == 2 * len(batches)
    landed = _values(kafka, topic, total)
    counts = Counter(r["order_id"] for r in landed)
    assert [k for k, c in counts.items() if c > 1] == []
    assert sorted(landed, key=lambda r: r["order_id"]) == records


def test_checksum_stamps_the_sha256_of_each_value(bootstrap_env, make_topic, kafka, tmp_path):  # type: ignore[no-untyped-def]
    import hashlib

    topic = make_topic("ingest-sum")
    server = IngestServer(
        bootstrap_env,
        tmp_path / "ingest.log",
        "--topic",
        topic,
        "--schema",
        SCHEMA,
        "--checksum",
        "--instance-id",
        uuid.uuid4().hex[:8],
    ).start()
    try:
        records = orders(20)
        answer = httpx.post(
            f"{server.url}/v1/topics/{topic}", content=jsonl(records), headers=NDJSON, timeout=60
        )
        assert answer.status_code == 200, answer.text
    finally:
        server.stop()
    landed = read_all(kafka, topic, timeout=60, expected=len(records))
    assert len(landed) == len(records)
    for message in landed:
        headers = dict(message.headers() or [])
        assert (
            headers["streamline.checksum"] == hashlib.sha256(message.value()).hexdigest().encode()
        )
