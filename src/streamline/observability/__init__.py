"""What a running topology tells the outside world about itself.

`Metrics` holds the topology's Prometheus series (`streamline_*`, labelled by
`topology`) and the methods the runtime records them with; `MetricsServer`
serves them on `/metrics`, with `/healthz` and `/readyz` probes.
"""

from streamline.observability.http import MetricsServer
from streamline.observability.metrics import Metrics

__all__ = ["Metrics", "MetricsServer"]
