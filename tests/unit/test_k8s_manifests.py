"""k8s/ runs the revenue-per-minute topology as streamline expects to be run (no cluster needed).

The manifests are checked against streamline itself: the container command against the
`streamline` CLI, the ConfigMap's topology against the topology checker, the probes against
the real metrics server, the grace period against the commit protocol's timeouts.
"""

from __future__ import annotations

import re
import shutil
import subprocess
import urllib.error
import urllib.request
from collections.abc import Iterator
from pathlib import Path, PurePosixPath
from typing import Any

import pytest
import yaml

from streamline.kafka.settings import settings_from_env
from streamline.observability import Metrics, MetricsServer
from streamline.runtime.processor import RunOptions
from streamline.serde import SchemaStore
from streamline.topology import check_topology, load_topology
from tests.helpers import ROOT
from tests.support.invocation import assert_streamline_invocation, subcommand
from tests.support.invocation import option as invocation_option

K8S = ROOT / "k8s"

SHUTDOWN_FLUSH_S = 15
"""What the processor spends after the commit when it stops: producer.flush(10) for the
outputs and flush(5) for the heartbeats (runtime/processor.py, Processor.run)."""


def load_docs() -> list[dict[str, Any]]:
    docs = []
    for path in sorted(K8S.glob("*.yaml")):
        if path.name != "kustomization.yaml":
            docs.extend(d for d in yaml.safe_load_all(path.read_text()) if d is not None)
    return docs


DOCS = load_docs()


def one(kind: str, name: str | None = None) -> dict[str, Any]:
    found = [
        d for d in DOCS if d["kind"] == kind and (name is None or d["metadata"]["name"] == name)
    ]
    assert len(found) == 1, f"expected one {kind} {name or ''}, found {len(found)}"
    return found[0]


STATEFULSET = one("StatefulSet")
POD = STATEFULSET["spec"]["template"]
POD_LABELS: dict[str, str] = POD["metadata"]["labels"]
CONTAINER = next(c for c in POD["spec"]["containers"] if c["name"] == "streamline")
ALL_CONTAINERS = [*POD["spec"].get("initContainers", []), *POD["spec"]["containers"]]


def option(container: dict[str, Any], name: str) -> str:
    return invocation_option([str(a) for a in container["args"]], name)


def selects_pods(selector: dict[str, str]) -> bool:
    return bool(selector) and selector.items() <= POD_LABELS.items()


def container_port(container: dict[str, Any], port: str | int) -> int:
    """The port number a probe or Service port refers to, by name or by number."""
    ports = {p["name"]: p["containerPort"] for p in container.get("ports", [])}
    if isinstance(port, str):
        assert port in ports, f"no container port named {port!r} in {sorted(ports)}"
        return int(ports[port])
    assert port in ports.values()
    return port


def mounted_file(container: dict[str, Any], path: str) -> tuple[dict[str, Any], str]:
    """(volume, path inside it) of the file or folder `path` in the container."""
    target = PurePosixPath(path)
    for mount in container.get("volumeMounts", []):
        base = PurePosixPath(mount["mountPath"])
        if target == base or base in target.parents:
            volume = next(v for v in POD["spec"]["volumes"] if v["name"] == mount["name"])
            return volume, str(target.relative_to(base))
    raise AssertionError(f"{path} is not on any volume mounted in {container['name']}")


def configmap_entries(volume: dict[str, Any]) -> dict[str, str]:
    """Path inside a ConfigMap volume -> the ConfigMap key it shows."""
    source = volume["configMap"]
    data = one("ConfigMap", source["name"])["data"]
    items = source.get("items") or [{"key": k, "path": k} for k in data]
    for item in items:
        assert item["key"] in data, f"ConfigMap {source['name']} has no key {item['key']!r}"
    return {item["path"]: item["key"] for item in items}


def configmap_files(container: dict[str, Any], path: str) -> dict[str, str]:
    """The ConfigMap keys the container sees at `path` (a file, or every file below a folder)."""
    volume, inside = mounted_file(container, path)
    assert "configMap" in volume, f"{path} is not from a ConfigMap"
    entries = configmap_entries(volume)
    if inside in entries:
        return {inside: entries[inside]}
    prefix = "" if inside == "." else inside.rstrip("/") + "/"
    return {p: k for p, k in entries.items() if p.startswith(prefix)}


def command_args(container: dict[str, Any]) -> list[str]:
    """The container's `streamline` arguments after the subcommand's name."""
    assert container["command"] == ["streamline"]
    return subcommand([str(a) for a in container["args"]])[1]


def topology_in_configmap(tmp_path: Path) -> tuple[Path, Path]:
    """The topology and schema files the container reads, written out: (topology, schemas dir)."""
    topology_arg = command_args(CONTAINER)[0]
    schemas_arg = option(CONTAINER, "--schemas")
    data = one("ConfigMap", mounted_file(CONTAINER, topology_arg)[0]["configMap"]["name"])["data"]
    schemas = tmp_path / "schemas"
    schemas.mkdir()
    for inside, key in configmap_files(CONTAINER, schemas_arg).items():
        (schemas / PurePosixPath(inside).name).write_text(data[key])
    [(_, key)] = configmap_files(CONTAINER, topology_arg).items()
    topology = tmp_path / PurePosixPath(topology_arg).name
    topology.write_text(data[key])
    return topology, schemas


# Every manifest


def test_every_manifest_names_its_api_version_kind_and_name() -> None:
    assert DOCS
    for doc in DOCS:
        assert doc.get("apiVersion") and doc.get("kind"), doc
        assert re.fullmatch(r"[a-z0-9]([-a-z0-9]*[a-z0-9])?", doc["metadata"]["name"]), doc


def test_the_kustomization_lists_every_manifest_and_nothing_else() -> None:
    kustomization = yaml.safe_load((K8S / "kustomization.yaml").read_text())
    listed = set(kustomization["resources"])
    present = {p.name for p in K8S.glob("*.yaml")} - {"kustomization.yaml"}
    assert listed == present


@pytest.mark.skipif(shutil.which("kubectl") is None, reason="kubectl is not installed")
def test_kubectl_kustomize_builds_every_manifest() -> None:
    built = subprocess.run(
        ["kubectl", "kustomize", str(K8S)], capture_output=True, text=True, timeout=60, check=True
    ).stdout
    names = {(d["kind"], d["metadata"]["name"]) for d in yaml.safe_load_all(built) if d}
    assert names == {(d["kind"], d["metadata"]["name"]) for d in DOCS}


# StatefulSet, Services, PodMonitor, PodDisruptionBudget


def test_the_statefulset_selects_its_own_pods() -> None:
    assert selects_pods(STATEFULSET["spec"]["selector"]["matchLabels"])


def test_the_statefulset_is_governed_by_a_headless_service_selecting_its_pods() -> None:
    service = one("Service", STATEFULSET["spec"]["serviceName"])
    assert service["spec"]["clusterIP"] == "None"
    assert selects_pods(service["spec"]["selector"])


def test_the_metrics_service_selects_the_pods_and_targets_the_metrics_port() -> None:
    services = [s for s in DOCS if s["kind"] == "Service" and s["spec"].get("clusterIP") != "None"]
    assert len(services) == 1
    service = services[0]
    assert selects_pods(service["spec"]["selector"])
    [port] = service["spec"]["ports"]
    assert container_port(CONTAINER, port["targetPort"]) == int(option(CONTAINER, "--metrics-port"))


def test_the_podmonitor_scrapes_metrics_on_a_named_port_of_the_pods() -> None:
    monitor = one("PodMonitor")
    assert monitor["apiVersion"] == "monitoring.coreos.com/v1"
    assert selects_pods(monitor["spec"]["selector"]["matchLabels"])
    [endpoint] = monitor["spec"]["podMetricsEndpoints"]
    assert endpoint["path"] == "/metrics"
    assert container_port(CONTAINER, endpoint["port"]) == int(option(CONTAINER, "--metrics-port"))


def test_the_disruption_budget_covers_the_pods() -> None:
    budget = one("PodDisruptionBudget")
    assert selects_pods(budget["spec"]["selector"]["matchLabels"])
    assert budget["spec"]["maxUnavailable"] == 1


def test_the_pods_run_under_the_service_account_without_an_api_token() -> None:
    account = one("ServiceAccount", POD["spec"]["serviceAccountName"])
    assert account["automountServiceAccountToken"] is False
    assert POD["spec"]["automountServiceAccountToken"] is False


# The container command


@pytest.mark.parametrize("container", ALL_CONTAINERS, ids=lambda c: c["name"])
def test_the_container_runs_a_real_streamline_command(container: dict[str, Any]) -> None:
    assert container["command"] == ["streamline"]
    assert_streamline_invocation([str(a) for a in container["args"]])


def test_the_instance_id_is_the_pod_name() -> None:
    assert option(CONTAINER, "--instance-id") == "$(POD_NAME)"
    env = {e["name"]: e for e in CONTAINER["env"]}
    assert env["POD_NAME"]["valueFrom"]["fieldRef"]["fieldPath"] == "metadata.name"


@pytest.mark.parametrize("container", ALL_CONTAINERS, ids=lambda c: c["name"])
def test_every_variable_in_the_arguments_is_defined(container: dict[str, Any]) -> None:
    # Kubernetes leaves an undefined $(VAR) in place: the instance id would be "$(POD_NAME)"
    defined = {e["name"] for e in container.get("env", [])}
    for arg in container["args"]:
        for name in re.findall(r"\$\((\w+)\)", str(arg)):
            assert name in defined, arg


def test_the_state_dir_is_on_the_volume_claim_template() -> None:
    [claim] = STATEFULSET["spec"]["volumeClaimTemplates"]
    volume_name = claim["metadata"]["name"]
    state_dir = PurePosixPath(option(CONTAINER, "--state-dir"))
    mounts = [m for m in CONTAINER["volumeMounts"] if m["name"] == volume_name]
    assert len(mounts) == 1
    mount = PurePosixPath(mounts[0]["mountPath"])
    assert state_dir == mount or mount in state_dir.parents
    assert not mounts[0].get("readOnly", False)
    assert claim["spec"]["accessModes"] == ["ReadWriteOnce"]
    assert volume_name not in {v["name"] for v in POD["spec"]["volumes"]}


def test_the_metrics_server_listens_beyond_loopback() -> None:
    # the default 127.0.0.1 is unreachable for the kubelet's probes and for Prometheus
    assert option(CONTAINER, "--metrics-host") in {"0.0.0.0", "::"}


# Topology and schemas from the ConfigMap


@pytest.mark.parametrize("container", ALL_CONTAINERS, ids=lambda c: c["name"])
def test_the_topology_and_schemas_given_are_configmap_files(container: dict[str, Any]) -> None:
    assert configmap_files(container, command_args(container)[0])
    schemas = configmap_files(container, option(container, "--schemas"))
    assert schemas and all(p.endswith(".avsc") for p in schemas)


def test_the_configmap_topology_passes_streamlines_checks(tmp_path: Path) -> None:
    topology_file, schemas = topology_in_configmap(tmp_path)
    checked = check_topology(load_topology(topology_file), SchemaStore(schemas))
    assert checked.topology.name == STATEFULSET["metadata"]["name"]


def test_the_configmap_holds_the_repositorys_topology_and_schemas(tmp_path: Path) -> None:
    # producers and consumers use schemas/: a record carries its schema's fingerprint
    topology_file, schemas = topology_in_configmap(tmp_path)
    assert topology_file.read_text() == (ROOT / "topologies" / topology_file.name).read_text()
    for schema in schemas.iterdir():
        assert schema.read_text() == (ROOT / "schemas" / schema.name).read_text(), schema.name


# Probes


@pytest.fixture(scope="module")
def metrics_server() -> Iterator[MetricsServer]:
    with MetricsServer(Metrics("revenue-per-minute"), port=0) as server:
        yield server


def status_of(url: str) -> int:
    try:
        with urllib.request.urlopen(url, timeout=5) as response:
            return int(response.status)
    except urllib.error.HTTPError as e:
        return e.code


def test_the_probes_are_healthz_and_readyz_on_the_metrics_port() -> None:
    port = int(option(CONTAINER, "--metrics-port"))
    probes = {
        k: CONTAINER[k]["httpGet"] for k in ("startupProbe", "livenessProbe", "readinessProbe")
    }
    assert probes["startupProbe"]["path"] == "/healthz"
    assert probes["livenessProbe"]["path"] == "/healthz"
    assert probes["readinessProbe"]["path"] == "/readyz"
    for probe in probes.values():
        assert container_port(CONTAINER, probe["port"]) == port


def test_the_metrics_server_answers_every_probed_and_scraped_path(
    metrics_server: MetricsServer,
) -> None:
    paths = {CONTAINER[k]["httpGet"]["path"] for k in ("livenessProbe", "readinessProbe")}
    paths |= {e["path"] for e in one("PodMonitor")["spec"]["podMetricsEndpoints"]}
    for path in paths:
        assert status_of(metrics_server.url + path) in {200, 503}, path
    assert status_of(metrics_server.url + "/health") == 404  # the server does tell paths apart


# Shutdown, resources, security, credentials


def test_the_grace_period_outlasts_a_commit_and_the_shutdown_flush(tmp_path: Path) -> None:
    topology_file, _schemas = topology_in_configmap(tmp_path)
    commit_interval_s = load_topology(topology_file).commit_interval / 1000
    transaction_timeout_s = RunOptions(instance_id="x").transaction_timeout_ms / 1000
    needed = commit_interval_s + transaction_timeout_s + SHUTDOWN_FLUSH_S
    assert POD["spec"]["terminationGracePeriodSeconds"] > needed


def quantity(value: str | int) -> float:
    units = {"m": 1e-3, "Ki": 2**10, "Mi": 2**20, "Gi": 2**30, "Ti": 2**40, "": 1}
    number, unit = re.fullmatch(r"([0-9.]+)([A-Za-z]*)", str(value)).groups()  # type: ignore[union-attr]
    return float(number) * units[unit]


@pytest.mark.parametrize("container", ALL_CONTAINERS, ids=lambda c: c["name"])
def test_every_container_requests_and_limits_cpu_and_memory(container: dict[str, Any]) -> None:
    resources = container["resources"]
    for resource in ("cpu", "memory"):
        request = quantity(resources["requests"][resource])
        limit = quantity(resources["limits"][resource])
        assert 0 < request <= limit, (container["name"], resource)


@pytest.mark.parametrize("container", ALL_CONTAINERS, ids=lambda c: c["name"])
def test_every_container_runs_unprivileged(container: dict[str, Any]) -> None:
    pod = POD["spec"]["securityContext"]
    assert pod["runAsNonRoot"] is True
    assert pod["runAsUser"] > 0
    security = container["securityContext"]
    assert security["allowPrivilegeEscalation"] is False
    assert security["readOnlyRootFilesystem"] is True
    assert security["capabilities"]["drop"] == ["ALL"]


@pytest.mark.parametrize("container", ALL_CONTAINERS, ids=lambda c: c["name"])
def test_kafka_settings_come_from_a_configmap_and_credentials_from_a_secret(
    container: dict[str, Any],
) -> None:
    sources = container["envFrom"]
    assert any("secretRef" in s for s in sources)
    [config_ref] = [s["configMapRef"]["name"] for s in sources if "configMapRef" in s]
    data = one("ConfigMap", config_ref)["data"]
    assert data["STREAMLINE_BOOTSTRAP_SERVERS"]
    assert settings_from_env(data) == {
        "security.protocol": "SASL_SSL",
        "sasl.mechanism": "SCRAM-SHA-512",
    }


def test_the_prometheus_rule_carries_the_alerts_and_the_monitors_label() -> None:
    rule = one("PrometheusRule")
    alerts = yaml.safe_load((ROOT / "deploy" / "prometheus" / "alerts.yml").read_text())
    assert rule["apiVersion"] == one("PodMonitor")["apiVersion"] == "monitoring.coreos.com/v1"
    assert rule["spec"]["groups"] == alerts["groups"]
    name_label = "app.kubernetes.io/name"
    assert (
        rule["metadata"]["labels"][name_label]
        == one("PodMonitor")["metadata"]["labels"][name_label]
    )


# --- failover: static membership and the session timeout ---------------------------------

ROLLING_UPDATE_RESTART_S = 20  # delete, recreate and start a pod (its restore follows the rejoin)
BROKER_SESSION_TIMEOUT_RANGE_S = (6, 1800)  # group.min/max.session.timeout.ms defaults


def test_pods_are_static_members_whose_session_outlasts_a_rolling_update() -> None:
    """The pods run as static members whose group.instance.id is the pod name; the
    session timeout lets a replaced pod rejoin before the group gives its partitions away,
    within what a broker accepts by default."""
    args = [str(a) for a in CONTAINER["args"]]
    assert "--static-membership" in args
    assert option(CONTAINER, "--instance-id") == "$(POD_NAME)"
    env = {e["name"]: e.get("value") for e in CONTAINER["env"]}
    session_s = int(env["STREAMLINE_KAFKA_SESSION_TIMEOUT_MS"]) / 1000
    assert session_s > ROLLING_UPDATE_RESTART_S
    low, high = BROKER_SESSION_TIMEOUT_RANGE_S
    assert low <= session_s <= high
    assert session_s <= 60  # a lost pod's partitions wait that long before they move
