"""The ingest server's docker-compose service and k8s/ingest manifests, checked against streamline."""

from __future__ import annotations

import shutil
import subprocess
from pathlib import Path
from typing import Any

import pytest
import yaml

from streamline.ingest import IngestSettings, create_app
from streamline.kafka.connection import Connection
from streamline.serde import SchemaStore
from streamline.topology import load_topology
from tests.helpers import ROOT
from tests.support.invocation import assert_streamline_invocation, option

COMPOSE = yaml.safe_load((ROOT / "docker-compose.yml").read_text())
SERVICE = COMPOSE["services"]["ingest"]
K8S = ROOT / "k8s" / "ingest"
DOCS = [
    d
    for p in sorted(K8S.glob("*.yaml"))
    if p.name != "kustomization.yaml"
    for d in yaml.safe_load_all(p.read_text())
    if d
]
DEPLOYMENT = next(d for d in DOCS if d["kind"] == "Deployment")
POD = DEPLOYMENT["spec"]["template"]
[CONTAINER] = POD["spec"]["containers"]
K8S_SERVICE = next(d for d in DOCS if d["kind"] == "Service")


def _served_paths() -> set[str]:
    """The paths the real ASGI app routes (built without starting it: no broker needed)."""
    store = SchemaStore(ROOT / "schemas")
    app = create_app(
        IngestSettings("orders", "com.example.Order"), Connection("unused:9092"), store
    )
    return {route.path for route in app.routes}  # type: ignore[attr-defined]


def _port(container: dict[str, Any], name: str) -> int:
    return int(next(p["containerPort"] for p in container["ports"] if p["name"] == name))


def test_the_compose_service_serves_a_topic_the_stack_creates_on_loopback() -> None:
    command = SERVICE["command"]
    assert_streamline_invocation(command[1:])
    topology = load_topology(ROOT / COMPOSE["services"]["topics"]["command"][3])
    assert option(command, "--topic") in {s.topic for s in topology.sources}
    assert option(command, "--host") == "0.0.0.0"
    assert SERVICE["ports"] == [
        f"127.0.0.1:{option(command, '--port')}:{option(command, '--port')}"
    ]
    assert f"127.0.0.1:{option(command, '--port')}/readyz" in " ".join(
        SERVICE["healthcheck"]["test"]
    )
    assert SERVICE["profiles"] == ["ingest"]  # `docker compose up` alone starts what it did


def test_the_kustomization_lists_the_ingest_manifests() -> None:
    listed = set(yaml.safe_load((K8S / "kustomization.yaml").read_text())["resources"])
    assert listed == {p.name for p in K8S.glob("*.yaml")} - {"kustomization.yaml"}


@pytest.mark.skipif(shutil.which("kubectl") is None, reason="kubectl is not installed")
def test_kubectl_kustomize_builds_the_ingest_manifests() -> None:
    built = subprocess.run(
        ["kubectl", "kustomize", str(K8S)], capture_output=True, text=True, timeout=60, check=True
    ).stdout
    assert {d["kind"] for d in yaml.safe_load_all(built) if d} == {"Deployment", "Service"}


def test_the_deployment_runs_a_real_command_with_the_pod_name_as_instance_id() -> None:
    args = CONTAINER["args"]
    assert CONTAINER["command"] == ["streamline"]
    assert_streamline_invocation([a.replace("$(POD_NAME)", "pod-0") for a in args])
    assert option(args, "--instance-id") == "$(POD_NAME)"
    assert {e["name"] for e in CONTAINER["env"]} >= {"POD_NAME", "STREAMLINE_INGEST_TOKENS"}
    tokens = next(e for e in CONTAINER["env"] if e["name"] == "STREAMLINE_INGEST_TOKENS")
    assert "secretKeyRef" in tokens["valueFrom"]
    assert option(args, "--host") == "0.0.0.0"
    assert _port(CONTAINER, "http") == int(option(args, "--port"))


def test_the_schema_given_is_mounted_from_the_stacks_configmap() -> None:
    args = CONTAINER["args"]
    [mount] = CONTAINER["volumeMounts"]
    assert mount["mountPath"] == option(args, "--schemas")
    [volume] = POD["spec"]["volumes"]
    configmap = yaml.safe_load((ROOT / "k8s" / "configmap.yaml").read_text())
    assert volume["configMap"]["name"] == configmap["metadata"]["name"]
    for item in volume["configMap"]["items"]:
        assert item["key"] in configmap["data"]
    local = Path(ROOT / "schemas" / "order.avsc")
    assert yaml.safe_load(configmap["data"]["order.avsc"]) == yaml.safe_load(local.read_text())


def test_the_probes_and_the_service_reach_paths_the_app_serves() -> None:
    served = _served_paths()
    for probe in ("livenessProbe", "readinessProbe", "startupProbe"):
        get = CONTAINER[probe]["httpGet"]
        assert get["path"] in served and get["port"] == "http"
    assert CONTAINER["readinessProbe"]["httpGet"]["path"] == "/readyz"
    assert {"/v1/topics/{topic}", "/metrics", "/openapi.json"} <= served
    selector = K8S_SERVICE["spec"]["selector"]
    assert selector == DEPLOYMENT["spec"]["selector"]["matchLabels"]
    assert all(POD["metadata"]["labels"][k] == v for k, v in selector.items())
    [port] = K8S_SERVICE["spec"]["ports"]
    assert port["targetPort"] == "http"


def test_the_pods_run_unprivileged_with_limits() -> None:
    assert POD["spec"]["securityContext"]["runAsNonRoot"] is True
    assert POD["spec"]["automountServiceAccountToken"] is False
    security = CONTAINER["securityContext"]
    assert security["allowPrivilegeEscalation"] is False
    assert security["readOnlyRootFilesystem"] is True
    assert security["capabilities"]["drop"] == ["ALL"]
    assert set(CONTAINER["resources"]["limits"]) == {"cpu", "memory"}
