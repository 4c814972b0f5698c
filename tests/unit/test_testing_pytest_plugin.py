"""The pytest plugin: its entry point, and a `topology_driver` fixture a user's test gets."""

from __future__ import annotations

import tomllib
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]

pytest_plugins = ["pytester"]


def test_the_plugin_is_a_pytest11_entry_point() -> None:
    project = tomllib.loads((ROOT / "pyproject.toml").read_text())["project"]
    assert project["entry-points"]["pytest11"] == {"streamline": "streamline.testing.pytest_plugin"}


def test_a_users_test_gets_a_driver_from_the_fixture(
    pytester: pytest.Pytester, monkeypatch: pytest.MonkeyPatch
) -> None:
    # loaded by name below, whether or not the installed package's entry point is current
    monkeypatch.setenv("PYTEST_DISABLE_PLUGIN_AUTOLOAD", "1")
    pytester.makepyfile(
        test_user=f"""
from streamline.testing import TopologyDriver

TOPOLOGY = {str(ROOT / "topologies" / "revenue-per-minute.yaml")!r}
SCHEMAS = {str(ROOT / "schemas")!r}


def order(i, t):
    return {{"order_id": f"o-{{i}}", "customer_id": "c-1", "amount": 2.5, "currency": "EUR",
            "status": "PAID", "country": "DE", "created_at": t}}


def test_one_window(topology_driver, tmp_path):
    driver = topology_driver(TOPOLOGY, SCHEMAS)
    assert isinstance(driver, TopologyDriver)
    assert driver.state_dir.parent == tmp_path
    driver.pipe("orders", [order(1, 1767225600000), order(2, 1767225601000),
                           order(3, 1767225700000)])
    driver.flush()
    (result,) = driver.output()
    assert result.value["order_count"] == 2 and result.value["revenue"] == 5.0
"""
    )
    result = pytester.runpytest_inprocess("-p", "streamline.testing.pytest_plugin", "-q")
    result.assert_outcomes(passed=1)
