"""Everything the CLI draws with rich: result, replay-plan, lag and dead-letter tables, the ACL
list and the produce progress bar. Commands hand data in and print what comes back.
"""

from __future__ import annotations

import time
from collections import Counter
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from datetime import UTC, datetime
from typing import TYPE_CHECKING, Any

from rich.table import Table
from rich.text import Text

if TYPE_CHECKING:
    from streamline.ops.acls import Acl
    from streamline.ops.lag import PartitionLag
    from streamline.ops.reconcile import Reconciliation
    from streamline.ops.replay import ReplayPlan
    from streamline.ops.status import TopologyStatus


def results_table(title: str, rows: list[dict[str, Any]]) -> Table:
    """Output records as a table; window bounds as UTC times, numbers rounded."""
    table = Table(title=f"{title}: {len(rows)} records")
    fields = list(rows[0]) if rows else ["(no records)"]  # a table without columns prints nothing
    for name in fields:
        table.add_column(name, justify="right" if name not in ("customer_id",) else "left")

    def cell(name: str, value: Any) -> str:
        if name.startswith("window_") and isinstance(value, int):
            return datetime.fromtimestamp(value / 1000, UTC).strftime("%H:%M:%S")
        if isinstance(value, float):
            return f"{value:.2f}"
        return str(value)

    order = sorted(rows, key=lambda r: (r.get("window_start", 0), str(r.get(fields[0]))))
    for row in order:
        table.add_row(*(cell(f, row[f]) for f in fields))
    return table


def replay_table(name: str, plan: ReplayPlan) -> Table:
    """The `replay` plan: per source partition, where the group is, where it goes, how much."""
    table = Table(title=f"replay plan for {name} (state generation {plan.generation})")
    for column in ("topic", "partition", "current", "target", "to reprocess"):
        table.add_column(column, justify="left" if column == "topic" else "right")
    for p in plan.partitions:
        current = "-" if p.current is None else str(p.current)
        table.add_row(p.topic, str(p.partition), current, str(p.target), str(p.reprocess))
    return table


def lag_table(group: str, rows: list[PartitionLag]) -> Table:
    """The `lag` table: per partition offsets, lag, watermark and freshness; a total row."""
    now_ms = time.time() * 1000
    table = Table(title=f"lag of {group}")
    for column in (
        "topic",
        "partition",
        "committed",
        "end",
        "lag",
        "watermark",
        "staleness",
        "sla",
    ):
        table.add_column(column, justify="left" if column in ("topic", "sla") else "right")
    for r in rows:
        committed = "-" if r.committed is None else str(r.committed)
        watermark = staleness = "-"
        if r.watermark is not None:
            watermark = datetime.fromtimestamp(r.watermark / 1000, UTC).strftime(
                "%Y-%m-%d %H:%M:%S"
            )
            staleness = f"{(now_ms - r.watermark) / 1000:.1f}s"
        table.add_row(
            r.topic,
            str(r.partition),
            committed,
            str(r.end),
            "-" if r.lag is None else str(r.lag),
            watermark,
            staleness,
            r.status or "-",
        )
    table.add_row(
        "total",
        "",
        "",
        str(sum(r.end for r in rows)),
        str(sum(r.lag for r in rows if r.lag is not None)),
        "",
        "",
        "",
    )
    return table


def dead_letter_table(topic: str, counts: Counter[tuple[str, str, str]]) -> Table:
    """The `dlq list` table: one row per (error type, stage, rule), most frequent first, a total."""
    total = sum(counts.values())
    table = Table(title=f"{topic}: {total} dead letters", show_footer=True)
    table.add_column("error type", footer="total")
    table.add_column("stage")
    table.add_column("rule")
    table.add_column("count", justify="right", footer=str(total))
    for (error_type, stage, rule), count in sorted(counts.items(), key=lambda kv: (-kv[1], kv[0])):
        table.add_row(Text(error_type), Text(stage), Text(rule), str(count))
    return table


def acl_lines(acls: list[Acl], principal: str) -> list[str]:
    """One aligned line per ACL."""
    rows = [(a.resource, a.name, a.pattern, a.operation, a.why) for a in acls]
    widths = [max(len(r[i]) for r in rows) for i in range(4)]
    return [
        f"ALLOW {principal} "
        + " ".join(value.ljust(width) for value, width in zip(row[:4], widths, strict=True))
        + f"  # {row[4]}"
        for row in rows
    ]


def progress_bar(topic: str) -> Callable[[int | None], Any]:
    """A transient rich progress bar for producing to `topic`, opened with the line count."""

    @contextmanager
    def bar(total: int | None) -> Iterator[Callable[[], None]]:
        from rich.progress import Progress

        progress = Progress(transient=True)
        progress.start()
        try:
            task = progress.add_task(f"producing to {topic}", total=total)
            yield lambda: progress.advance(task)
        finally:
            progress.stop()

    return bar


def reconcile_table(result: Reconciliation) -> Table:
    """The `reconcile` table: per source partition, where its inputs went; a total row."""
    totals = result.totals()
    table = Table(
        title=f"reconcile {result.topology}: {result.transactions} transactions committed "
        f"from {result.as_dict()['since']} to {result.as_dict()['until']}",
        show_footer=True,
    )
    windowed = result.windowed
    columns = [
        ("topic", "total"),
        ("partition", ""),
        ("offsets", ""),
        ("inputs", str(totals["inputs"])),
        ("window results" if windowed else "outputs", str(totals["outputs"])),
        *(
            [
                ("in windows", str(totals["in_windows"])),
                ("open windows", str(totals["open_windows"])),
            ]
            if windowed
            else []
        ),
        ("dead letters", str(totals["dead_letters"])),
        ("late", str(totals["late"])),
        ("dropped", str(totals["dropped"])),
        ("in retry", str(totals["retry_waiting"])),
        ("unexplained", str(totals["unexplained"])),
        ("", "balanced" if result.balanced else "NOT BALANCED"),
    ]
    for name, footer in columns:
        table.add_column(name, footer=footer, justify="left" if name == "topic" else "right")
    for p in result.partitions:
        dead = sum(p.dead_letters.values())
        detail = ", ".join(f"{t} {n}" for t, n in sorted(p.dead_letters.items()))
        table.add_row(
            Text(p.topic),
            str(p.partition),
            f"{p.first}-{p.last}",
            str(p.inputs),
            str(p.outputs),
            *([str(p.in_windows), str(p.open_windows)] if windowed else []),
            f"{dead} ({detail})" if detail else "0",
            str(p.late),
            str(p.dropped),
            str(p.retry_waiting),
            str(p.unexplained),
            "ok" if p.balanced else "NOT BALANCED",
        )
    return table


# --- status -----------------------------------------------------------------------------------

STATE_STYLES = {"ok": "green", "late": "yellow", "breached": "red", "down": "red"}


def ago(ms: int | None, now_ms: float) -> str:
    """`12s ago`, `3m ago`, `2h ago`; `-` for None."""
    if ms is None:
        return "-"
    seconds = max(0.0, (now_ms - ms) / 1000)
    if seconds < 120:
        return f"{seconds:.0f}s ago"
    if seconds < 7200:
        return f"{seconds / 60:.0f}m ago"
    return f"{seconds / 3600:.0f}h ago"


def utc_time(ms: int | None) -> str:
    """Epoch ms as `YYYY-mm-dd HH:MM:SS` UTC; `-` for None."""
    if ms is None:
        return "-"
    return datetime.fromtimestamp(ms / 1000, UTC).strftime("%Y-%m-%d %H:%M:%S")


def status_table(rows: list[TopologyStatus]) -> Table:
    """The `status` table: one row per topology, its SLA state first."""
    now_ms = time.time() * 1000
    bad = sum(1 for r in rows if r.state != "ok")
    table = Table(title=f"{len(rows)} topologies, {bad} not ok")
    columns = (
        "topology", "state", "instances", "version", "fingerprint", "lag", "watermark",
        "staleness", "dead letters 1h", "late 1h", "last commit", "ready", "upstream",
    )  # fmt: skip
    for column in columns:
        numeric = column in ("lag", "staleness", "dead letters 1h", "late 1h")
        table.add_column(column, justify="right" if numeric else "left")
    for r in rows:
        table.add_row(
            Text(r.name),
            Text(r.label, style=STATE_STYLES.get(r.state, "")),
            str(len(r.instances)),
            ", ".join(r.versions),
            ", ".join(f[:12] for f in r.fingerprints),
            "-" if r.lag is None else str(r.lag),
            utc_time(r.watermark),
            "-" if r.staleness_ms is None else f"{r.staleness_ms / 1000:.1f}s",
            str(r.dead_letters_last_hour),
            str(r.late_last_hour),
            ago(r.last_commit, now_ms),
            "yes" if r.ready else "no",
            ", ".join(r.upstreams) or "-",
        )
    return table
