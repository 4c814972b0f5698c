"""What the Grafana dashboard asks Prometheus for, and whether an exposition of streamline has it.

The dashboard's PromQL is read with a deliberately small analyser: metric names are the
`streamline_*` identifiers, and the labels an expression needs a metric to carry are the
ones in its selector plus those of every `by (...)` clause around it. Constructs it does not
understand (`on`, `ignoring`, `without`, `label_replace`, postfix `by`) are refused, so a
dashboard edit that uses them fails loudly instead of being checked halfway.
"""

from __future__ import annotations

import json
import re
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from prometheus_client.parser import text_string_to_metric_families

from streamline.observability import Metrics
from tests.helpers import ROOT

DASHBOARD = ROOT / "deploy" / "grafana" / "streamline.json"

TARGET_LABELS = frozenset({"instance", "job"})
"""Labels Prometheus attaches to every series it scrapes (the target's), not in the exposition."""

SUFFIXES = {
    "counter": ("_total",),
    "histogram": ("_bucket", "_sum", "_count"),
    "gauge": ("",),
}
"""Sample names per family type, as prometheus_client exposes them: a counter only as
`<name>_total` (plus `_created`, never queried), a histogram as `_bucket`/`_sum`/`_count`."""

_STRING = re.compile(r'"(?:[^"\\]|\\.)*"')
_METRIC = re.compile(r"\bstreamline_[A-Za-z0-9_]*")
_SELECTOR_LABEL = re.compile(r"([A-Za-z_][A-Za-z0-9_]*)\s*(?:=~|!~|!=|=)")
_BY = re.compile(r"\bby\s*\(([^()]*)\)\s*\(")
_LABEL_VALUES = re.compile(r"^\s*label_values\(\s*(streamline_[A-Za-z0-9_]*)\s*,\s*(\w+)\s*\)\s*$")
_UNSUPPORTED = re.compile(
    r"\b(on|ignoring|without|group_left|group_right|label_replace|label_join)\s*\(|\)\s*by\s*\("
)
_OTHER_METRIC = re.compile(r"\b(?!streamline_)([A-Za-z_:][A-Za-z0-9_:]*)\s*\{")


@dataclass(frozen=True)
class Use:
    """One metric an expression reads (as a sample name) and the labels it needs it to carry."""

    sample: str
    labels: frozenset[str]


@dataclass
class Exposition:
    """The families and samples of one `/metrics` text: what a query can find there."""

    families: dict[str, str] = field(default_factory=dict)
    """Family name (counters without `_total`) -> type."""
    samples: dict[str, set[str]] = field(default_factory=dict)
    """Sample name -> the label names its samples carry."""

    @classmethod
    def parse(cls, text: str) -> Exposition:
        exposition = cls()
        for family in text_string_to_metric_families(text):
            exposition.families[family.name] = family.type
            for sample in family.samples:
                exposition.samples.setdefault(sample.name, set()).update(sample.labels)
        return exposition

    def family_of(self, sample: str) -> str | None:
        """The family a queried sample name belongs to, if the exposition has one of that type."""
        for name, kind in self.families.items():
            if any(sample == name + suffix for suffix in SUFFIXES.get(kind, ())):
                return name
        return None


def load_dashboard(path: Path = DASHBOARD) -> dict[str, Any]:
    return json.loads(path.read_text())  # type: ignore[no-any-return]


def panels(dashboard: dict[str, Any]) -> Iterator[dict[str, Any]]:
    """Every panel, including those inside (collapsed) rows."""
    for panel in dashboard["panels"]:
        yield panel
        yield from panel.get("panels", [])


def queries(dashboard: dict[str, Any]) -> list[tuple[str, str]]:
    """(where, query) of every panel target and every templating query."""
    found = []
    for panel in panels(dashboard):
        for target in panel.get("targets", []):
            found.append((f"panel {panel['title']!r} {target['refId']}", target["expr"]))
    for variable in dashboard["templating"]["list"]:
        if variable["type"] == "query":
            query = variable["query"]
            text = query["query"] if isinstance(query, dict) else query
            found.append((f"variable {variable['name']!r}", text))
    return found


def metric_uses(query: str) -> list[Use]:
    """The streamline metrics a PromQL expression (or a `label_values` query) reads, with labels."""
    simple = _LABEL_VALUES.match(query)
    if simple:
        return [Use(simple.group(1), frozenset({simple.group(2)}))]
    expr = _STRING.sub('""', re.sub(r"\$\{?(\w+)\}?", "var", query))
    unsupported = _UNSUPPORTED.search(expr)
    if unsupported:
        raise ValueError(f"cannot check {unsupported.group(0)!r} in {query!r}")
    other = _OTHER_METRIC.search(expr)
    if other:
        raise ValueError(f"{other.group(1)!r} is not a streamline metric: {query!r}")
    groupings = [
        (_argument_span(expr, m.end() - 1), _names(m.group(1))) for m in _BY.finditer(expr)
    ]
    uses = []
    for m in _METRIC.finditer(expr):
        labels = set()
        rest = expr[m.end() :].lstrip()
        if rest.startswith("{"):
            labels.update(_SELECTOR_LABEL.findall(rest[: rest.index("}")]))
        for (start, end), names in groupings:
            if start < m.start() < end:
                labels.update(names)
        uses.append(Use(m.group(0), frozenset(labels)))
    return uses


def missing(uses: list[Use], exposition: Exposition) -> list[str]:
    """What the exposition lacks for these uses: unknown metrics, wrong suffixes, absent labels."""
    problems = []
    for use in uses:
        if exposition.family_of(use.sample) is None:
            problems.append(f"{use.sample}: no such metric (of a type with that suffix)")
            continue
        if use.sample not in exposition.samples:
            problems.append(f"{use.sample}: no samples to check the labels {sorted(use.labels)} on")
            continue
        absent = use.labels - exposition.samples[use.sample] - TARGET_LABELS
        if absent:
            problems.append(f"{use.sample}: no label {sorted(absent)}")
    return problems


def exercised_metrics(topology: str = "t") -> Metrics:
    """A Metrics with every series written once, so each family shows its labels in a scrape."""
    m = Metrics(topology)
    m.records_in("orders", 0)
    m.records_out("revenue")
    m.dead_letter("validation", "validate")
    m.retry("map")
    m.late("t.late")
    m.dropped("filter", "false")
    m.observe_stage("filter", 0.001, 10)
    m.observe_latency([0.5])
    m.partitions.set_lag("orders", 0, 3)
    m.partitions.set_committed_offset("orders", 0, 10)
    m.partitions.set_watermark("orders", 0, 1_767_225_600_000)
    m.partitions.set_watermark_lag("orders", 0, 1.5)
    m.partitions.set_staleness("orders", 0, 1.0)
    m.partitions.set_sla_status("orders", 0, "ok")
    m.transaction_committed(0.01)
    m.transaction_aborted("error")
    m.rebalance("assigned")
    m.set_assigned_partitions(1)
    m.stores.set_state_keys("windows", 0, 5)
    m.stores.restored("windows", 0, 5)
    m.stores.set_restore_remaining("windows", 0, 0)
    m.standby.set_lag(1, 0)
    m.set_ready(True)
    m.set_info("1", "f" * 64)
    m.quality.validated(
        "stages[0].validate", {("positive", "error"): 1, ("has_email", "warn"): 2}, 10, 7
    )
    m.quality.nulls("email", 2, 10)
    m.tables.set_records("customers", 10)
    m.tables.set_lag("customers", 0, 0)
    m.tables.missed("stages[0].join", 1)
    m.stream_joins.matched("stages[0].join", 2)
    m.stream_joins.unmatched("stages[0].join", "left", 1)
    m.stream_joins.set_buffered("stages[0].join", 0, 4)
    m.calls.inflight("stages[1].map", 3)
    m.calls.observe("stages[1].map", [0.02])
    m.calls.circuit("stages[1].map", "open", 2)
    m.calls.throttled("stages[1].map", 0.5)
    return m


def _argument_span(expr: str, open_paren: int) -> tuple[int, int]:
    """(start, end) of the parenthesised argument opening at `open_paren`."""
    depth = 0
    for i in range(open_paren, len(expr)):
        if expr[i] == "(":
            depth += 1
        elif expr[i] == ")":
            depth -= 1
            if depth == 0:
                return open_paren, i
    raise ValueError(f"unbalanced parentheses in {expr!r}")


def _names(text: str) -> set[str]:
    return {name.strip() for name in text.split(",") if name.strip()}
