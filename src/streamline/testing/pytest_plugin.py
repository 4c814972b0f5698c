"""The pytest plugin (entry point `pytest11`): a `topology_driver` fixture.

    def test_revenue(topology_driver):
        driver = topology_driver("topologies/revenue-per-minute.yaml")
        driver.pipe("orders", [...])
        driver.flush()
        assert [r.value["revenue"] for r in driver.output()] == [42.0]

The fixture makes drivers (same arguments as `TopologyDriver`), keeps their state in
the test's `tmp_path` and closes them when the test ends.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator
from pathlib import Path
from typing import TYPE_CHECKING, Any

import pytest

if TYPE_CHECKING:  # the runtime is imported when a test asks for the fixture, not by pytest
    from streamline.testing.driver import TopologyDriver, TopologyLike


@pytest.fixture
def topology_driver(tmp_path: Path) -> Iterator[Callable[..., TopologyDriver]]:
    """Makes a `TopologyDriver` for a topology; every one is closed after the test."""
    from streamline.testing.driver import TopologyDriver

    drivers: list[TopologyDriver] = []

    def make(topology: TopologyLike, schemas: Any = None, **options: Any) -> TopologyDriver:
        options.setdefault("state_dir", tmp_path / f"streamline-state-{len(drivers)}")
        driver = TopologyDriver(topology, schemas, **options)
        drivers.append(driver)
        return driver

    yield make
    for driver in drivers:
        driver.close()
