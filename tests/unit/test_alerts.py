"""deploy/prometheus/alerts.yml: tested with promtool, in sync with k8s/, one runbook section each."""

from __future__ import annotations

import re
import shutil
import subprocess

import pytest
import yaml

from tests.helpers import ROOT

PROMETHEUS = ROOT / "deploy" / "prometheus"
RULES = yaml.safe_load((PROMETHEUS / "alerts.yml").read_text())
TESTS = yaml.safe_load((PROMETHEUS / "alerts.test.yml").read_text())
ALERTS = [r for g in RULES["groups"] for r in g["rules"] if "alert" in r]
RUNBOOK = (ROOT / "docs" / "runbook.md").read_text()
PROMTOOL = shutil.which("promtool")
NO_PROMTOOL = "promtool not found: apt-get install -y prometheus (.ci/run installs it)"


def test_the_alerts_cover_sla_lag_dead_letters_aborts_readiness_stalls_restores_quality() -> None:
    assert [a["alert"] for a in ALERTS] == [
        "StreamlineSlaBreached",
        "StreamlineSlaLate",
        "StreamlineLagGrowing",
        "StreamlineDeadLetterRate",
        "StreamlineTransactionAborts",
        "StreamlineNotReady",
        "StreamlineProcessingStalled",
        "StreamlineRestoreSlow",
        "StreamlineQualityLow",
    ]
    assert {a["alert"]: a.get("for") for a in ALERTS if a.get("for") in ("5m", "10m")} == {
        "StreamlineSlaLate": "5m",
        "StreamlineLagGrowing": "10m",
        "StreamlineDeadLetterRate": "5m",
        "StreamlineNotReady": "5m",
        "StreamlineProcessingStalled": "5m",
        "StreamlineRestoreSlow": "5m",
        "StreamlineQualityLow": "10m",
    }


def test_every_alert_has_a_firing_case_in_the_promtool_tests() -> None:
    firing = {
        case["alertname"]
        for test in TESTS["tests"]
        for case in test["alert_rule_test"]
        if case["exp_alerts"]
    }
    assert firing == {a["alert"] for a in ALERTS}


def test_every_alert_links_its_runbook_section() -> None:
    headings = re.findall(r"^## (\w+)$", RUNBOOK, re.MULTILINE)
    assert headings == [a["alert"] for a in ALERTS]
    for alert in ALERTS:
        assert alert["annotations"]["runbook_url"] == f"docs/runbook.md#{alert['alert'].lower()}"
        section = RUNBOOK.split(f"## {alert['alert']}\n", 1)[1].split("\n## ", 1)[0]
        assert "**Means**" in section, alert["alert"]
        assert "```sh" in section or "](#streamline" in section, alert["alert"]  # commands


def test_the_prometheus_rule_in_k8s_carries_the_same_groups() -> None:
    rule = yaml.safe_load((ROOT / "k8s" / "prometheusrule.yaml").read_text())
    assert rule["kind"] == "PrometheusRule"
    assert rule["spec"]["groups"] == RULES["groups"]


@pytest.mark.skipif(PROMTOOL is None, reason=NO_PROMTOOL)
def test_promtool_checks_the_rules_and_every_test_passes() -> None:
    assert PROMTOOL is not None
    checked = subprocess.run(
        [PROMTOOL, "check", "rules", "alerts.yml"],
        cwd=PROMETHEUS, capture_output=True, text=True, timeout=60,
    )  # fmt: skip
    assert checked.returncode == 0, checked.stdout + checked.stderr
    assert f"SUCCESS: {len(ALERTS)} rules found" in checked.stdout
    tested = subprocess.run(
        [PROMTOOL, "test", "rules", "alerts.test.yml"],
        cwd=PROMETHEUS, capture_output=True, text=True, timeout=60,
    )  # fmt: skip
    assert tested.returncode == 0, tested.stdout + tested.stderr
    assert "SUCCESS" in tested.stdout
