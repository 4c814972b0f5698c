"""The metrics endpoint over real HTTP (streamline.observability.http); needs no broker."""

from __future__ import annotations

import urllib.error
import urllib.request
from collections.abc import Iterator

import pytest

from streamline.errors import StreamlineError
from streamline.observability import Metrics, MetricsServer


def get(url: str) -> tuple[int, str, str]:
    """Status, Content-Type and body of a GET, without raising on 4xx/5xx."""
    try:
        with urllib.request.urlopen(url, timeout=5) as response:
            return response.status, response.headers["Content-Type"], response.read().decode()
    except urllib.error.HTTPError as e:
        return e.code, e.headers["Content-Type"], e.read().decode()


@pytest.fixture
def metrics() -> Metrics:
    return Metrics("orders-eur")


@pytest.fixture
def server(metrics: Metrics) -> Iterator[MetricsServer]:
    with MetricsServer(metrics, port=0) as server:
        yield server


def test_port_zero_picks_a_free_port(server: MetricsServer) -> None:
    assert server.port > 0
    assert server.url == f"http://127.0.0.1:{server.port}"


def test_metrics_serves_the_counters_as_prometheus_text(
    metrics: Metrics, server: MetricsServer
) -> None:
    metrics.records_in("orders", 0, 12)
    metrics.records_out("revenue", 3)
    status, content_type, body = get(f"{server.url}/metrics")
    assert status == 200
    assert content_type.startswith("text/plain; version=0.0.4")
    assert (
        'streamline_records_in_total{partition="0",topic="orders",topology="orders-eur"} 12.0'
        in body
    )
    assert 'streamline_records_out_total{topic="revenue",topology="orders-eur"} 3.0' in body
    assert "# TYPE streamline_end_to_end_latency_seconds histogram" in body


def test_metrics_speaks_openmetrics_when_asked(server: MetricsServer) -> None:
    request = urllib.request.Request(
        f"{server.url}/metrics", headers={"Accept": "application/openmetrics-text; version=1.0.0"}
    )
    with urllib.request.urlopen(request, timeout=5) as response:
        assert response.headers["Content-Type"].startswith("application/openmetrics-text")
        assert response.read().decode().endswith("# EOF\n")


def test_healthz_follows_the_healthy_check(metrics: Metrics) -> None:
    alive = True
    with MetricsServer(metrics, port=0, healthy=lambda: alive) as server:
        assert get(f"{server.url}/healthz")[::2] == (200, "ok\n")
        alive = False
        status, _, body = get(f"{server.url}/healthz")
        assert status == 503
        assert body.startswith("unhealthy")


def test_readyz_is_503_until_set_ready_then_200(metrics: Metrics, server: MetricsServer) -> None:
    status, _, body = get(f"{server.url}/readyz")
    assert status == 503
    assert body.startswith("not ready")
    metrics.set_ready(True)
    assert get(f"{server.url}/readyz")[::2] == (200, "ready\n")
    metrics.set_ready(False)
    assert get(f"{server.url}/readyz")[0] == 503


def test_a_check_that_raises_answers_503_with_the_error(metrics: Metrics) -> None:
    def broken() -> bool:
        raise RuntimeError("consumer closed")

    with MetricsServer(metrics, port=0, ready=broken) as server:
        status, _, body = get(f"{server.url}/readyz")
    assert status == 503
    assert "RuntimeError: consumer closed" in body


def test_unknown_paths_are_404(server: MetricsServer) -> None:
    assert get(f"{server.url}/")[0] == 404
    assert get(f"{server.url}/metrics/extra")[0] == 404


def test_query_strings_are_ignored(server: MetricsServer) -> None:
    assert get(f"{server.url}/metrics?debug=1")[0] == 200


def test_a_taken_port_is_a_clear_error(metrics: Metrics, server: MetricsServer) -> None:
    second = MetricsServer(metrics, port=server.port)
    with pytest.raises(StreamlineError, match=f"127.0.0.1:{server.port}.*already in use"):
        second.start()


def test_stop_releases_the_port(metrics: Metrics) -> None:
    first = MetricsServer(metrics, port=0)
    first.start()
    port = first.port
    first.stop()
    with MetricsServer(metrics, port=port) as again:
        assert get(f"{again.url}/healthz")[0] == 200


def test_requests_are_not_logged_to_stderr(
    server: MetricsServer, capfd: pytest.CaptureFixture[str]
) -> None:
    get(f"{server.url}/metrics")
    get(f"{server.url}/nope")
    assert capfd.readouterr().err == ""
