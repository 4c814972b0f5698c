"""Pure parts of the benchmark: output checksums, the results table, ratios and targets.

Nothing here talks to Kafka or starts processes, so it is unit-tested in
microseconds (tests/unit/test_bench_report.py).
"""

from __future__ import annotations

import hashlib
import math
from collections.abc import Iterable, Sequence
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

Row = tuple[Any, ...]

SYSTEMS = ("bare", "streamline", "quix", "faust", "bytewax")
WORKLOADS = ("W0", "W0-tx", "W1", "W1-alo", "W1-cf", "W2", "W3", "W4")
SYSTEM_TITLES = {
    "bare": "confluent-kafka loop",
    "streamline": "streamline",
    "quix": "Quix Streams",
    "faust": "faust-streaming",
    "bytewax": "Bytewax (at-least-once)",
}
WORKLOAD_TITLES = {
    "W0": "W0 consume→produce",
    "W0-tx": "W0-tx transactional",
    "W1": "W1 validate+filter+map",
    "W1-alo": "W1-alo validate+filter+map (at-least-once)",
    "W1-cf": "W1 on Confluent Avro input",
    "W2": "W2 tumbling count+sum",
    "W3": "W3 session count+sum",
    "W4": "W4 stream-table join (as of)",
}


def checksum(rows: Iterable[Row]) -> str:
    """SHA-256 (first 16 hex digits) of the sorted rows: equal for equal multisets of rows."""
    digest = hashlib.sha256()
    for row in sorted(rows):
        digest.update(repr(row).encode())
        digest.update(b"\n")
    return digest.hexdigest()[:16]


def percentile(values: Sequence[float], q: float) -> float | None:
    """The q-quantile (0..1) by nearest rank; None without values."""
    if not values:
        return None
    ordered = sorted(values)
    rank = max(0, min(len(ordered) - 1, math.ceil(q * len(ordered)) - 1))
    return ordered[rank]


@dataclass
class Cell:
    """One system running one workload: what was measured and whether its output was right."""

    system: str
    workload: str
    status: str = "ok"  # ok | mismatch | failed | n/a
    note: str = ""
    events: int = 0
    seconds: float | None = None
    events_per_s: float | None = None
    cpu_s_per_m: float | None = None
    peak_rss_mb: float | None = None
    output_records: int | None = None
    output_checksum: str | None = None
    expected_records: int | None = None
    expected_checksum: str | None = None
    p50_ms: float | None = None
    p99_ms: float | None = None
    latency_samples: int | None = None
    latency_note: str = ""
    commit_interval_ms: int | None = None
    extra: dict[str, Any] = field(default_factory=dict)

    def as_dict(self) -> dict[str, Any]:
        return asdict(self)


def find(cells: Sequence[Cell], system: str, workload: str) -> Cell | None:
    for cell in cells:
        if cell.system == system and cell.workload == workload:
            return cell
    return None


def ratio(a: float | None, b: float | None) -> float | None:
    if a is None or b is None or b == 0:
        return None
    return a / b


@dataclass
class Target:
    """A performance claim and whether this run met it."""

    name: str
    value: str
    goal: str
    met: bool | None  # None: not measured in this run


def _throughput(cells: Sequence[Cell], system: str, workload: str) -> float | None:
    cell = find(cells, system, workload)
    if cell is None or cell.status != "ok":
        return None
    return cell.events_per_s


def _fmt_ratio(r: float | None, percent: bool = False) -> str:
    if r is None:
        return "not measured"
    return f"{r * 100:.0f}%" if percent else f"{r:.2f}x"


def targets(cells: Sequence[Cell]) -> list[Target]:
    """streamline's performance targets, judged on this run's cells."""
    out = []
    for peer, goal in (("quix", 2.0), ("faust", 3.0)):
        r = ratio(_throughput(cells, "streamline", "W2"), _throughput(cells, peer, "W2"))
        out.append(
            Target(
                f"W2 streamline / {SYSTEM_TITLES[peer]}",
                _fmt_ratio(r),
                f"≥ {goal:g}x",
                None if r is None else r >= goal,
            )
        )
    r = ratio(_throughput(cells, "streamline", "W4"), _throughput(cells, "quix", "W4"))
    out.append(
        Target(
            "W4 streamline / Quix Streams",
            _fmt_ratio(r),
            "≥ 2x",
            None if r is None else r >= 2.0,
        )
    )
    r = ratio(_throughput(cells, "streamline", "W1"), _throughput(cells, "bare", "W0-tx"))
    out.append(
        Target(
            "W1 streamline / W0-tx", _fmt_ratio(r, True), "≥ 60%", None if r is None else r >= 0.6
        )
    )
    r = ratio(_throughput(cells, "streamline", "W1-cf"), _throughput(cells, "streamline", "W1"))
    out.append(
        Target(
            "W1-cf streamline / W1", _fmt_ratio(r, True), "≥ 85%", None if r is None else r >= 0.85
        )
    )
    alo, w1 = find(cells, "streamline", "W1-alo"), find(cells, "streamline", "W1")
    r = ratio(_throughput(cells, "streamline", "W1-alo"), _throughput(cells, "streamline", "W1"))
    # at-least-once against exactly-once, both streamline: informational, no goal
    figures = (
        ""
        if r is None or alo is None or w1 is None
        else f" ({_num(alo.events_per_s)} vs {_num(w1.events_per_s)} events/s; "
        f"CPU s/M {_num(alo.cpu_s_per_m, 1)} vs {_num(w1.cpu_s_per_m, 1)})"
    )
    out.append(Target("W1-alo / W1", _fmt_ratio(r, True) + figures, "none (informational)", None))
    for workload in ("W1", "W2"):
        cell = find(cells, "streamline", workload)
        if cell is None or cell.p99_ms is None or cell.commit_interval_ms is None:
            if workload == "W1":
                out.append(
                    Target("W1 streamline p99", "not measured", "≤ commit_interval + 100 ms", None)
                )
            continue
        limit = cell.commit_interval_ms + 100
        out.append(
            Target(
                f"{workload} streamline p99",
                f"{cell.p99_ms:.0f} ms (commit_interval {cell.commit_interval_ms} ms)",
                f"≤ {limit} ms",
                cell.p99_ms <= limit,
            )
        )
    return out


def _num(value: float | None, digits: int = 0) -> str:
    if value is None:
        return "-"
    return f"{value:,.{digits}f}"


def _cell_label(cell: Cell) -> str:
    if cell.status == "ok":
        return "ok"
    if cell.status == "n/a":
        return "n/a"
    return f"**{cell.status.upper()}**"


def render_markdown(
    cells: Sequence[Cell], machine: dict[str, Any], settings: dict[str, Any]
) -> str:
    """results.md: machine, settings, the table, ratios and targets, notes per cell."""
    lines = ["# streamline benchmarks", ""]
    lines.append(
        f"{settings.get('events', 0):,} input events ({settings.get('partitions')} partitions), "
        f"run {machine.get('date', '?')} at git {machine.get('git_sha', '?')[:12]}."
    )
    lines.append("")
    lines.append(
        f"Machine: {machine.get('cpu_model', '?')}, {machine.get('cores', '?')} cores, "
        f"{machine.get('ram_gb', '?')} GB RAM, Python {machine.get('python', '?')}, "
        f"Apache Kafka {machine.get('kafka_version', '?')} (single local broker), "
        f"load average before/after: {machine.get('load_before', '?')} / {machine.get('load_after', '?')}."
    )
    versions = machine.get("versions", {})
    if versions:
        lines.append("")
        lines.append(
            "Versions: " + ", ".join(f"{k} {v}" for k, v in sorted(versions.items())) + "."
        )
    lines += ["", "## Results", ""]
    lines.append(
        "| system | workload | events/s | CPU s / M events | peak RSS MB | p50 ms | p99 ms | output | check |"
    )
    lines.append("| --- | --- | ---: | ---: | ---: | ---: | ---: | ---: | --- |")
    for cell in cells:
        lines.append(
            f"| {SYSTEM_TITLES.get(cell.system, cell.system)} "
            f"| {WORKLOAD_TITLES.get(cell.workload, cell.workload)} "
            f"| {_num(cell.events_per_s)} | {_num(cell.cpu_s_per_m, 1)} "
            f"| {_num(cell.peak_rss_mb)} | {_num(cell.p50_ms)} | {_num(cell.p99_ms)} "
            f"| {_num(cell.output_records) if cell.output_records is not None else '-'} "
            f"| {_cell_label(cell)} |"
        )
    lines += ["", "## Ratios and targets", ""]
    lines.append("| target | this run | goal | |")
    lines.append("| --- | --- | --- | --- |")
    for t in targets(cells):
        verdict = "-" if t.met is None else ("met" if t.met else "**missed**")
        lines.append(f"| {t.name} | {t.value} | {t.goal} | {verdict} |")
    notes = [c for c in cells if c.note or c.latency_note]
    if notes:
        lines += ["", "## Notes per cell", ""]
        for c in notes:
            text = "; ".join(x for x in (c.note, c.latency_note) if x)
            lines.append(f"- {SYSTEM_TITLES.get(c.system, c.system)} {c.workload}: {text}")
    method = settings.get("method")
    if method:
        lines += ["", "## Method", "", method.strip()]
    return "\n".join(lines) + "\n"


def render_chart(cells: Sequence[Cell], path: Path) -> None:
    """results.png: events/s per workload, one bar per system."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    workloads = [w for w in WORKLOADS if any(c.workload == w for c in cells)]
    systems = [s for s in SYSTEMS if any(c.system == s for c in cells)]
    width = 0.8 / max(1, len(systems))
    fig, ax = plt.subplots(figsize=(9, 4.5))
    for i, system in enumerate(systems):
        xs, ys, labels = [], [], []
        for j, workload in enumerate(workloads):
            cell = find(cells, system, workload)
            if cell is None:
                continue
            xs.append(j + (i - (len(systems) - 1) / 2) * width)
            ok = cell.status == "ok" and cell.events_per_s is not None
            ys.append(cell.events_per_s if ok and cell.events_per_s else 0.0)
            labels.append("" if ok else cell.status)
        bars = ax.bar(xs, ys, width, label=SYSTEM_TITLES.get(system, system))
        for bar, label in zip(bars, labels, strict=True):
            if label:
                ax.annotate(
                    label,
                    (bar.get_x() + bar.get_width() / 2, 0),
                    ha="center",
                    va="bottom",
                    fontsize=7,
                    rotation=90,
                )
    ax.set_xticks(range(len(workloads)))
    ax.set_xticklabels([WORKLOAD_TITLES[w] for w in workloads], fontsize=8)
    ax.set_ylabel("events/s")
    ax.set_title("Throughput on one broker, same input (higher is better)")
    ax.legend(fontsize=8)
    ax.grid(axis="y", alpha=0.3)
    fig.tight_layout()
    fig.savefig(path, dpi=120)
    plt.close(fig)
