"""Testing topologies without a broker: `TopologyDriver`, golden files and a pytest fixture.

    from streamline.testing import TopologyDriver

    with TopologyDriver("topologies/revenue-per-minute.yaml") as driver:
        driver.pipe("orders", [{"order_id": "o-1", ...}])
        driver.flush()
        assert driver.output()[0].value["revenue"] == 12.5

See docs/testing.md.
"""

from streamline.testing.driver import OutputRecord, TopologyDriver, load_checked

__all__ = ["OutputRecord", "TopologyDriver", "load_checked"]
