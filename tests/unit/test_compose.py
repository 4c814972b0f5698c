"""docker-compose.yml and what it mounts are consistent with each other and with streamline.

Docker is not needed: the file is read as YAML, commands are checked against the
`streamline` CLI, and every file a service mounts must exist.
"""

from __future__ import annotations

import json
import re
from pathlib import Path, PurePosixPath
from typing import Any

import pytest
import yaml

from streamline.runtime.processor import RunOptions
from tests.helpers import ROOT
from tests.support.invocation import assert_streamline_invocation, option

COMPOSE = yaml.safe_load((ROOT / "docker-compose.yml").read_text())
SERVICES: dict[str, dict[str, Any]] = COMPOSE["services"]
INSTANCES = ["streamline-1", "streamline-2"]
STREAMLINE_SERVICES = ["topics", *INSTANCES, "sample-orders", "ingest"]
WORKDIR = PurePosixPath("/app")  # the Dockerfile's WORKDIR
SHUTDOWN_FLUSH_S = 15  # producer.flush(10) + heartbeats flush(5) after the commit (Processor.run)


def bind_mounts(service: dict[str, Any]) -> list[tuple[str, str]]:
    """(host path, container path) of the service's bind mounts."""
    mounts = []
    for volume in service.get("volumes", []):
        source, target = volume.split(":")[:2]
        if source.startswith((".", "/")):
            mounts.append((source, target))
    return mounts


def host_path(service: dict[str, Any], container_path: str) -> Path | None:
    """The host file a container path of a streamline service shows, through its bind mounts."""
    path = WORKDIR / container_path
    for source, target in bind_mounts(service):
        if path == PurePosixPath(target) or PurePosixPath(target) in path.parents:
            return ROOT / source / path.relative_to(target)
    return None


def seconds(duration: str) -> float:
    number, unit = re.fullmatch(r"(\d+)(ms|s|m)", duration).groups()  # type: ignore[union-attr]
    return int(number) * {"ms": 0.001, "s": 1, "m": 60}[unit]


def test_compose_names_broker_topics_two_instances_prometheus_and_grafana() -> None:
    assert set(SERVICES) == {"kafka", *STREAMLINE_SERVICES, "prometheus", "grafana"}
    kafka = SERVICES["kafka"]
    assert kafka["image"].startswith("apache/kafka:4.")
    assert set(kafka["environment"]["KAFKA_PROCESS_ROLES"].split(",")) == {"broker", "controller"}


def test_compose_refers_only_to_existing_files() -> None:
    declared = set(COMPOSE.get("volumes") or {})
    for name, service in SERVICES.items():
        for volume in service.get("volumes", []):
            source = volume.split(":", 1)[0]
            if source.startswith((".", "/")):
                assert (ROOT / source).exists(), f"{name}: {volume}"
            else:
                assert source in declared, f"{name}: named volume {source} is not declared"
        build = service.get("build")
        if build:
            assert (ROOT / build["context"] / build["dockerfile"]).is_file()


@pytest.mark.parametrize("name", STREAMLINE_SERVICES)
def test_streamline_services_run_real_commands_on_mounted_files(name: str) -> None:
    service = SERVICES[name]
    command = service["command"]
    assert command[0] == "streamline"
    assert_streamline_invocation(command[1:])
    for arg in command[2:]:
        if re.search(r"\.(ya?ml|jsonl|csv)$", arg):
            local = host_path(service, arg)
            assert local is not None, f"{name}: {arg} is not mounted"
            assert local.is_file(), f"{name}: {arg} -> {local}"


def test_the_two_instances_run_one_topology_as_distinct_members() -> None:
    commands = [SERVICES[name]["command"] for name in INSTANCES]
    assert {c[2] for c in commands} == {SERVICES["topics"]["command"][3]}
    assert len({option(c, "--instance-id") for c in commands}) == 2
    for name in INSTANCES:
        assert SERVICES[name]["depends_on"]["topics"]["condition"] == (
            "service_completed_successfully"
        )


def test_the_topics_are_created_with_a_partition_for_each_instance() -> None:
    command = SERVICES["topics"]["command"]
    assert command[1:3] == ["topics", "create"]
    assert int(option(command, "--partitions")) >= len(INSTANCES)


def test_each_instance_keeps_its_state_on_its_own_volume() -> None:
    volumes = []
    for name in INSTANCES:
        service = SERVICES[name]
        state_dir = PurePosixPath(option(service["command"], "--state-dir"))
        named = [
            (source, PurePosixPath(target))
            for source, target in (v.split(":")[:2] for v in service["volumes"])
            if not source.startswith((".", "/"))
        ]
        [volume] = [s for s, t in named if t == state_dir or t in state_dir.parents]
        volumes.append(volume)
    assert len(set(volumes)) == len(INSTANCES)


def test_each_instance_publishes_its_metrics_port_on_its_own_host_port() -> None:
    host_ports = []
    for name in INSTANCES:
        command = SERVICES[name]["command"]
        assert option(command, "--metrics-host") == "0.0.0.0"
        port = option(command, "--metrics-port")
        [published] = SERVICES[name]["ports"]
        address, host_port, container_port = published.split(":")
        assert address == "127.0.0.1" and container_port == port
        host_ports.append(host_port)
    assert len(set(host_ports)) == len(INSTANCES)


def test_instances_get_time_to_commit_when_stopped() -> None:
    needed = RunOptions(instance_id="x").transaction_timeout_ms / 1000 + SHUTDOWN_FLUSH_S
    for name in INSTANCES:
        assert seconds(SERVICES[name]["stop_grace_period"]) > needed


def test_prometheus_scrapes_both_instances_on_their_metrics_port() -> None:
    prometheus = SERVICES["prometheus"]
    [(source, target)] = [m for m in bind_mounts(prometheus) if m[1].endswith("prometheus.yml")]
    assert f"--config.file={target}" in prometheus["command"]
    config = yaml.safe_load((ROOT / source).read_text())
    [job] = config["scrape_configs"]
    assert job.get("metrics_path", "/metrics") == "/metrics"
    targets = {t for group in job["static_configs"] for t in group["targets"]}
    assert targets == {
        f"{name}:{option(SERVICES[name]['command'], '--metrics-port')}" for name in INSTANCES
    }


def test_grafana_provisions_the_prometheus_datasource_and_the_dashboard() -> None:
    grafana = SERVICES["grafana"]
    mounts = dict(bind_mounts(grafana))
    provisioning = ROOT / next(s for s, t in mounts.items() if t == "/etc/grafana/provisioning")
    [datasource] = yaml.safe_load((provisioning / "datasources" / "prometheus.yml").read_text())[
        "datasources"
    ]
    assert datasource["type"] == "prometheus"
    prometheus_port = SERVICES["prometheus"]["ports"][0].rsplit(":", 1)[1]
    assert datasource["url"] == f"http://prometheus:{prometheus_port}"
    [provider] = yaml.safe_load((provisioning / "dashboards" / "streamline.yml").read_text())[
        "providers"
    ]
    dashboards = [
        (s, t)
        for s, t in mounts.items()
        if PurePosixPath(t).parent == PurePosixPath(provider["options"]["path"])
    ]
    [(dashboard, target)] = dashboards
    assert json.loads((ROOT / dashboard).read_text())["uid"] == "streamline"
    assert grafana["environment"]["GF_DASHBOARDS_DEFAULT_HOME_DASHBOARD_PATH"] == target


def test_prometheus_loads_the_alerting_rules() -> None:
    prometheus = SERVICES["prometheus"]
    mounts = dict((target, source) for source, target in bind_mounts(prometheus))
    config = yaml.safe_load((ROOT / mounts["/etc/prometheus/prometheus.yml"]).read_text())
    [rules] = config["rule_files"]
    assert (ROOT / mounts[rules]).resolve() == (ROOT / "deploy/prometheus/alerts.yml").resolve()
