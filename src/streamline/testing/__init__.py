"""Testing topologies without a broker: `TopologyDriver`, golden files and a pytest fixture.

    from streamline.testing import TopologyDriver

    with TopologyDriver("topologies/revenue-per-minute.yaml") as driver:
        driver.pipe("orders", [{"order_id": "o-1", ...}])
        driver.flush()
        assert driver.output()[0].value["revenue"] == 12.5

See docs/testing.md. The names are imported on first use, so loading the pytest plugin
(`streamline.testing.pytest_plugin`) does not import the runtime.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from streamline.testing.driver import OutputRecord, TopologyDriver, load_checked

__all__ = ["OutputRecord", "TopologyDriver", "load_checked"]


def __getattr__(name: str) -> Any:
    if name in __all__:
        from streamline.testing import driver

        return getattr(driver, name)
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
