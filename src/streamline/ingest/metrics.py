"""The ingest server's Prometheus metrics, in a registry of its own (so the app can be mounted)."""

from __future__ import annotations

from prometheus_client import CollectorRegistry, Counter, Gauge, Histogram


class IngestMetrics:
    """Requests by status, records and bytes accepted, request latency, queue depth."""

    def __init__(self) -> None:
        self.registry = CollectorRegistry()
        self.requests = Counter(
            "streamline_ingest_requests",
            "Ingest requests answered, by HTTP status.",
            ["status"],
            registry=self.registry,
        )
        self.records = Counter(
            "streamline_ingest_records",
            "Records written to Kafka by the ingest server.",
            ["topic"],
            registry=self.registry,
        )
        self.bytes = Counter(
            "streamline_ingest_bytes",
            "Request body bytes of the requests whose records were written.",
            ["topic"],
            registry=self.registry,
        )
        self.latency = Histogram(
            "streamline_ingest_request_seconds",
            "Time from a request's arrival to its answer.",
            buckets=(0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30),
            registry=self.registry,
        )
        self.ready = Gauge(
            "streamline_ingest_ready",
            "1 while the broker is reachable and requests are accepted.",
            registry=self.registry,
        )
