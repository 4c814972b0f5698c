"""`streamline run` as an operator sees it: metrics over HTTP, and clear failures."""

from __future__ import annotations

import re
import time
import urllib.request
from pathlib import Path

import pytest

from streamline.dev.broker import free_port
from streamline.kafka.connection import Connection
from tests.helpers import read_all, run_cli
from tests.support.harness import (
    InputFeeder,
    StreamlineProcess,
    expectation,
    make_topology,
    order_stream,
    process_env,
)


def scrape(port: int) -> dict[str, float]:
    """Every sample of /metrics: 'name{labels}' -> value."""
    with urllib.request.urlopen(f"http://127.0.0.1:{port}/metrics", timeout=5) as response:
        text = response.read().decode()
    samples = {}
    for line in text.splitlines():
        if line and not line.startswith("#"):
            name, value = line.rsplit(" ", 1)
            samples[name] = float(value)
    return samples


def total(samples: dict[str, float], metric: str, **labels: str) -> float:
    pattern = re.compile(rf"^{metric}\{{(.*)\}}$")
    out = 0.0
    for name, value in samples.items():
        match = pattern.match(name)
        if match and all(f'{k}="{v}"' in match.group(1) for k, v in labels.items()):
            out += value
    return out


@pytest.mark.slow
def test_metrics_agree_with_what_was_processed_and_lag_drains(
    kafka: Connection, unique: str, tmp_path: Path
) -> None:
    topology, source, sink, _dlq = make_topology(tmp_path, kafka, unique)
    stream = order_stream(5000)
    expected = expectation(stream)
    feeder = InputFeeder(kafka, source, stream, rate=50_000)
    feeder.start()
    feeder.join(60)
    proc = StreamlineProcess(topology, "m", process_env(kafka), tmp_path).start()
    port = proc.metrics_port
    try:
        deadline = time.monotonic() + 90
        samples: dict[str, float] = {}
        while time.monotonic() < deadline:
            try:
                samples = scrape(port)
            except OSError:
                time.sleep(0.3)
                continue
            lags = [v for k, v in samples.items() if k.startswith("streamline_consumer_lag{")]
            if (
                total(samples, "streamline_records_in_total") == len(stream)
                and len(lags) == 3
                and not any(lags)
            ):
                break
            time.sleep(0.3)
        assert total(samples, "streamline_records_in_total", topic=source) == len(stream)
        assert total(samples, "streamline_records_out_total", topic=sink) == len(expected.outputs)
        dead = len(expected.dead_letters)
        assert total(samples, "streamline_dead_letters_total") == dead
        kinds = {"decode", "schema", "validation", "map"}
        for kind in kinds:
            want = sum(1 for t, _ in expected.dead_letters.values() if t == kind)
            assert total(samples, "streamline_dead_letters_total", error_type=kind) == want
        assert total(samples, "streamline_dropped_total", reason="filter") == expected.filtered
        lags = {k: v for k, v in samples.items() if k.startswith("streamline_consumer_lag{")}
        assert len(lags) == 3 and set(lags.values()) == {0.0}
        assert total(samples, "streamline_transactions_total") >= 1
        assert total(samples, "streamline_ready") == 1
        with urllib.request.urlopen(f"http://127.0.0.1:{port}/readyz", timeout=5) as response:
            assert response.status == 200
        assert len(read_all(kafka, sink)) == len(expected.outputs)
    finally:
        assert proc.stop() == 0


def test_unreachable_broker_exits_1_with_the_address(tmp_path: Path) -> None:
    address = f"127.0.0.1:{free_port()}"
    result = run_cli(
        "run",
        "topologies/paid-orders.yaml",
        "--bootstrap-servers",
        address,
        "--metrics-port",
        "0",
        timeout=60,
    )
    assert result.returncode == 1
    assert f"no Kafka broker reachable at {address}" in result.stderr
    assert "Traceback" not in result.stderr


def test_missing_input_topic_exits_1_naming_it(bootstrap_env, unique: str, tmp_path: Path) -> None:  # type: ignore[no-untyped-def]
    folder = tmp_path / "topologies"
    folder.mkdir()
    text = (Path("topologies") / "paid-orders.yaml").read_text()
    path = folder / "t.yaml"
    path.write_text(text.replace("topic: orders", f"topic: nowhere-{unique}"))
    result = run_cli("run", str(path), "--metrics-port", "0", timeout=60)
    assert result.returncode == 1
    assert f"topic nowhere-{unique}" in result.stderr
    assert "does not exist" in result.stderr
    assert "Traceback" not in result.stderr
