"""docker-compose.yml parses and refers only to files that exist (Docker is not needed to check that)."""

from __future__ import annotations

from pathlib import Path

import yaml

ROOT = Path(__file__).resolve().parents[2]


def test_compose_file_names_broker_streamline_and_prometheus() -> None:
    compose = yaml.safe_load((ROOT / "docker-compose.yml").read_text())
    assert set(compose["services"]) == {"kafka", "streamline", "prometheus"}
    assert compose["services"]["kafka"]["image"].startswith("apache/kafka:4.")


def test_compose_refers_only_to_existing_files() -> None:
    compose = yaml.safe_load((ROOT / "docker-compose.yml").read_text())
    for service in compose["services"].values():
        for volume in service.get("volumes", []):
            local = volume.split(":", 1)[0]
            assert (ROOT / local).exists(), volume
        build = service.get("build")
        if build:
            assert (ROOT / build["context"] / build["dockerfile"]).is_file()


def test_prometheus_scrapes_the_streamline_metrics_port() -> None:
    compose = yaml.safe_load((ROOT / "docker-compose.yml").read_text())
    config = yaml.safe_load((ROOT / "deploy" / "prometheus.yml").read_text())
    target = config["scrape_configs"][0]["static_configs"][0]["targets"][0]
    assert target == "streamline:9400"
    assert "127.0.0.1:9400:9400" in compose["services"]["streamline"]["ports"]
