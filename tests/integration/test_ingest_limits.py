"""The ingest server's refusals (401, 403, 413, 429, 503) and its operations endpoints."""

from __future__ import annotations

import os
import time
import uuid

import httpx
import pytest

from streamline.dev.broker import DevBroker, free_port
from streamline.kafka.admin import create_topics
from streamline.kafka.connection import Connection
from tests.helpers import ROOT
from tests.support.ingest import IngestServer, jsonl, orders

SCHEMA = "com.example.Order"
NDJSON = {"Content-Type": "application/x-ndjson"}
# one token per test, so that each has a rate-limit bucket of its own
TOKEN, LIMITED, OPS = ("s3cret-" + uuid.uuid4().hex for _ in range(3))
WRONG = "wrong-" + uuid.uuid4().hex


@pytest.fixture(scope="module")
def guarded(kafka, tmp_path_factory):  # type: ignore[no-untyped-def]
    topic = f"ingest-guard-{uuid.uuid4().hex[:8]}"
    create_topics(kafka, {topic: (1, {})})
    folder = tmp_path_factory.mktemp("guarded")
    (folder / "tokens").write_text(f"# the partners' tokens\n{TOKEN}\n{LIMITED}\n{OPS}\n")
    env = {
        **os.environ,
        "STREAMLINE_BOOTSTRAP_SERVERS": kafka.bootstrap_servers,
        "STREAMLINE_SCHEMAS": str(ROOT / "schemas"),
    }
    tmp_path = folder
    server = IngestServer(
        env,
        tmp_path / "ingest.log",
        *("--topic", topic, "--schema", SCHEMA, "--tokens-file", str(tmp_path / "tokens")),
        *("--rate-limit", "0.5", "--rate-burst", "2", "--max-body-bytes", "2000"),
        *("--instance-id", uuid.uuid4().hex[:8]),
    ).start()
    server.topic = topic  # type: ignore[attr-defined]
    yield server
    server.stop()


def _post(server, body: bytes, token: str | None = TOKEN) -> httpx.Response:  # type: ignore[no-untyped-def]
    headers = dict(NDJSON)
    if token is not None:
        headers["Authorization"] = f"Bearer {token}"
    return httpx.post(f"{server.url}/v1/topics/{server.topic}", content=body, headers=headers)


def test_a_request_without_a_token_gets_401(guarded) -> None:  # type: ignore[no-untyped-def]
    answer = _post(guarded, jsonl(orders(1)), token=None)
    assert answer.status_code == 401
    assert answer.headers["WWW-Authenticate"] == "Bearer"


def test_a_wrong_token_gets_403_and_no_token_reaches_the_log(guarded) -> None:  # type: ignore[no-untyped-def]
    assert _post(guarded, jsonl(orders(1)), token=WRONG).status_code == 403
    assert _post(guarded, jsonl(orders(1))).status_code == 200
    log = guarded.log.read_text()
    assert TOKEN not in log and WRONG not in log


def test_a_body_over_the_limit_gets_413(guarded) -> None:  # type: ignore[no-untyped-def]
    answer = _post(guarded, jsonl(orders(30)))
    assert answer.status_code == 413
    assert "2000 bytes" in answer.json()["error"]


def test_requests_over_the_rate_limit_get_429_with_retry_after(guarded) -> None:  # type: ignore[no-untyped-def]
    statuses = [_post(guarded, jsonl(orders(1)), LIMITED).status_code for _ in range(2)]
    refused = _post(guarded, jsonl(orders(1)), LIMITED)
    assert statuses == [200, 200]
    assert refused.status_code == 429
    assert 1 <= int(refused.headers["Retry-After"]) <= 2
    time.sleep(int(refused.headers["Retry-After"]))
    assert _post(guarded, jsonl(orders(1)), LIMITED).status_code == 200


def test_operations_endpoints_report_health_readiness_metrics_and_the_api(guarded) -> None:  # type: ignore[no-untyped-def]
    assert _post(guarded, jsonl(orders(3)), OPS).status_code == 200
    assert _post(guarded, jsonl(orders(3)), None).status_code == 401
    assert httpx.get(f"{guarded.url}/healthz").status_code == 200
    assert httpx.get(f"{guarded.url}/readyz").json() == {"status": "ready"}
    metrics = httpx.get(f"{guarded.url}/metrics").text
    assert 'streamline_ingest_requests_total{status="401"}' in metrics
    assert 'streamline_ingest_requests_total{status="200"}' in metrics
    assert f'streamline_ingest_records_total{{topic="{guarded.topic}"}}' in metrics
    assert "streamline_ingest_request_seconds_bucket" in metrics
    document = httpx.get(f"{guarded.url}/openapi.json").json()
    assert document["openapi"].startswith("3.1")
    post = document["paths"]["/v1/topics/{topic}"]["post"]
    assert set(post["responses"]) >= {"200", "400", "401", "403", "413", "429", "503"}


def test_tls_serves_https_with_the_given_certificate(kafka, tmp_path) -> None:  # type: ignore[no-untyped-def]
    from streamline.dev.broker import make_certificates

    ca_pem, key_pem, cert_pem = make_certificates()
    for name, pem in (("ca.pem", ca_pem), ("key.pem", key_pem), ("cert.pem", cert_pem)):
        (tmp_path / name).write_bytes(pem)
    topic = f"ingest-tls-{uuid.uuid4().hex[:8]}"
    create_topics(kafka, {topic: (1, {})})
    env = {
        **os.environ,
        "STREAMLINE_BOOTSTRAP_SERVERS": kafka.bootstrap_servers,
        "STREAMLINE_SCHEMAS": str(ROOT / "schemas"),
    }
    server = IngestServer(
        env,
        tmp_path / "ingest.log",
        *("--topic", topic, "--schema", SCHEMA),
        *("--tls-cert", str(tmp_path / "cert.pem"), "--tls-key", str(tmp_path / "key.pem")),
        tls_ca=tmp_path / "ca.pem",
    ).start()
    try:
        url = f"{server.url}/v1/topics/{topic}"
        answer = httpx.post(url, content=jsonl(orders(2)), headers=NDJSON, verify=server.verify)
        assert answer.json() == {"topic": topic, "records": 2, "replayed": False}
        with pytest.raises(httpx.ConnectError):  # not a CA the client trusts
            httpx.post(url, content=jsonl(orders(2)), headers=NDJSON)
        with pytest.raises(httpx.RemoteProtocolError):  # plain HTTP is not served
            httpx.post(url.replace("https", "http"), content=b"{}", headers=NDJSON)
    finally:
        server.stop()


@pytest.mark.slow
def test_with_the_broker_stopped_requests_get_503_promptly_and_succeed_after_it_restarts(
    tmp_path, bootstrap_env
) -> None:  # type: ignore[no-untyped-def]
    broker = DevBroker(tmp_path / "kafka")
    info = broker.start(free_port())
    try:
        connection = Connection(info.bootstrap)
        create_topics(connection, {"outage": (1, {})})
        env = {**bootstrap_env, "STREAMLINE_BOOTSTRAP_SERVERS": info.bootstrap}
        server = IngestServer(
            env,
            tmp_path / "ingest.log",
            "--topic",
            "outage",
            "--schema",
            SCHEMA,
            "--max-pending-records",
            "2000",
        ).start()
        try:
            body = jsonl(orders(500))
            url = f"{server.url}/v1/topics/outage"
            assert httpx.post(url, content=body, headers=NDJSON).status_code == 200
            rss_before = server.rss_kib()
            broker.stop()

            started = time.monotonic()
            answer = httpx.post(url, content=body, headers=NDJSON, timeout=60)
            assert answer.status_code == 503
            assert int(answer.headers["Retry-After"]) >= 1
            assert time.monotonic() - started < 20
            for _ in range(50):  # a flood while it is down: each refused, nothing buffered
                refused = httpx.post(url, content=body, headers=NDJSON, timeout=30)
                assert refused.status_code == 503
            assert httpx.get(f"{server.url}/readyz").status_code == 503
            assert server.rss_kib() - rss_before < 64 * 1024

            broker.start(info.port)
            deadline = time.monotonic() + 60
            while httpx.post(url, content=body, headers=NDJSON, timeout=30).status_code != 200:
                assert time.monotonic() < deadline, "not accepting again 60s after the restart"
                time.sleep(0.5)
        finally:
            server.stop()
    finally:
        broker.stop()
