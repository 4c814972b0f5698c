"""Topologies: the YAML contract as models, loading, the Python builder and type checking.

topology = load_topology("topologies/revenue-per-minute.yaml")
checked = check_topology(topology, SchemaStore("schemas"))
print(render_chain(checked))
"""

from streamline.topology import builder
from streamline.topology.builder import TopologyBuilder
from streamline.topology.durations import format_duration, parse_duration
from streamline.topology.errors import Problem, TopologyError
from streamline.topology.expressions import Expression, ExpressionError, compile_expression
from streamline.topology.loader import load_topology
from streamline.topology.model import Topology
from streamline.topology.typecheck import (
    CheckedStage,
    CheckedTopology,
    check_topology,
    render_chain,
)

__all__ = [
    "CheckedStage",
    "CheckedTopology",
    "Expression",
    "ExpressionError",
    "Problem",
    "Topology",
    "TopologyBuilder",
    "TopologyError",
    "builder",
    "check_topology",
    "compile_expression",
    "format_duration",
    "load_topology",
    "parse_duration",
    "render_chain",
]
