"""The results page, bench/results/results.md, from the JSON files beside it (pure rendering).

    python -m bench.results_page          # re-renders results.md and the charts

It puts together the classic suite (results.json, written by `bench.run --suite classic`),
the Nexmark-style suite (nexmark.json), the failover and ingest figures (failover.json,
ingest.json, from `bench.failover` and `bench.ingest`), the targets of the second round
of benchmarks judged on the newest run, and the spread of every ratio between the two
newest runs (runs.json keeps each run's ratios and its load average).
Nothing here talks to Kafka, so it is unit-tested without one.
"""

from __future__ import annotations

import json
import math
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from bench.nexmark import QUERY_TITLES as NEXMARK_TITLES
from bench.report import (
    SYSTEM_TITLES,
    WORKLOAD_TITLES,
    Cell,
    Target,
    find,
    render_markdown,
)

RESULTS = Path(__file__).resolve().parent / "results"
PEERS = ("quix", "faust", "bytewax")
# windowed and join work: streamline must do it at twice the fastest peer that can
WINDOWED_OR_JOIN = ("W2", "W3", "W4", "q3", "q5", "q7", "q8")
LATENCY_SLACK_MS = 20.0
SPREAD_LIMIT = 0.10


def cells_from(payload: dict[str, Any] | None) -> list[Cell]:
    if not payload:
        return []
    return [Cell(**c) for c in payload.get("cells", [])]


def _ok(cells: Sequence[Cell], system: str, workload: str) -> Cell | None:
    cell = find(cells, system, workload)
    if cell is None or cell.status != "ok" or cell.extra.get("too_short"):
        return None
    return cell


def _target(name: str, value: float | None, goal: float, text: str, goal_text: str) -> Target:
    if value is None:
        return Target(name, "not measured", goal_text, None)
    return Target(name, text, goal_text, value >= goal)


def round_two_targets(cells: Sequence[Cell]) -> list[Target]:
    """The second round's targets on one run's cells (classic and Nexmark together).

    Each target's `value` text starts with the ratio, so runs can be compared."""
    out: list[Target] = []
    w1, tx = _ok(cells, "streamline", "W1"), _ok(cells, "bare", "W0-tx")
    if w1 and tx and w1.cpu_s_per_m and tx.cpu_s_per_m:
        cpu = w1.cpu_s_per_m / tx.cpu_s_per_m
        out.append(Target("W1 CPU s/M / transactional loop's", f"{cpu:.2f}x "
                          f"({w1.cpu_s_per_m:.1f} / {tx.cpu_s_per_m:.1f})", "≤ 3x", cpu <= 3.0))  # fmt: skip
    else:
        out.append(Target("W1 CPU s/M / transactional loop's", "not measured", "≤ 3x", None))
    r = (w1.events_per_s or 0) / tx.events_per_s if w1 and tx and tx.events_per_s else None
    out.append(_target("W1 events/s / transactional loop's", r, 0.75,
                       f"{(r or 0) * 100:.0f}%", "≥ 75%"))  # fmt: skip
    for workload in WINDOWED_OR_JOIN:
        mine = _ok(cells, "streamline", workload)
        peers = [c for p in PEERS if (c := _ok(cells, p, workload)) is not None]
        missing = find(cells, "streamline", workload)
        if missing is not None and missing.status == "n/a":
            out.append(Target(f"{workload} streamline / fastest peer", f"n/a: {missing.note}",
                              "≥ 2x", None))  # fmt: skip
        if mine is None or not peers or mine.events_per_s is None:
            continue
        best = max(peers, key=lambda c: c.events_per_s or 0)
        r = mine.events_per_s / best.events_per_s if best.events_per_s else None
        out.append(_target(f"{workload} streamline / fastest peer ({SYSTEM_TITLES[best.system]})",
                           r, 2.0, f"{r or 0:.2f}x", "≥ 2x"))  # fmt: skip
    latency = [c for c in cells if c.p99_ms is not None and c.p50_ms is not None]
    mine_l = find(latency, "streamline", "W1")
    bare_l = find(latency, "bare", "W0-tx")
    if mine_l and bare_l:
        assert mine_l.p99_ms is not None and bare_l.p99_ms is not None
        limit = bare_l.p99_ms + LATENCY_SLACK_MS
        out.append(Target("W1 p99 latency vs transactional loop's + 20 ms",
                          f"{mine_l.p99_ms / bare_l.p99_ms:.2f}x ({mine_l.p99_ms:.0f} ms; loop "
                          f"{bare_l.p99_ms:.0f} ms)", f"≤ {limit:.0f} ms",
                          mine_l.p99_ms <= limit))  # fmt: skip
    for peer in [c for c in latency if c.system in PEERS and mine_l is not None]:
        assert mine_l is not None and mine_l.p50_ms is not None and mine_l.p99_ms is not None
        assert peer.p50_ms is not None and peer.p99_ms is not None
        for q, a, b in (("p50", mine_l.p50_ms, peer.p50_ms), ("p99", mine_l.p99_ms, peer.p99_ms)):
            out.append(Target(f"W1 {q} latency / {SYSTEM_TITLES[peer.system]}'s",
                              f"{a / b:.2f}x ({a:.0f} ms vs {b:.0f} ms)", "≤ 1x", a <= b))  # fmt: skip
    # like against like: streamline's at-least-once W1 (W1-alo) against Bytewax's, whose
    # sink is at-least-once; the value's ratio is the larger of the p50 and p99 ratios
    alo_name = "W1 latency, at-least-once vs Bytewax (at-least-once)"
    alo = find(latency, "streamline", "W1-alo")
    bytewax = find(latency, "bytewax", "W1")
    if alo and bytewax:
        a50, a99, b50, b99 = alo.p50_ms, alo.p99_ms, bytewax.p50_ms, bytewax.p99_ms
        assert a50 is not None and a99 is not None and b50 is not None and b99 is not None
        text = f"p50 {a50:.1f} vs {b50:.1f} ms, p99 {a99:.1f} vs {b99:.1f} ms"
        worst = max(a50 / b50, a99 / b99)
        met = a50 <= b50 and a99 <= b99
        out.append(Target(alo_name, f"{worst:.2f}x ({text})", "p50 and p99 ≤ Bytewax's", met))
    else:
        out.append(Target(alo_name, "not measured", "p50 and p99 ≤ Bytewax's", None))
    for workload in dict.fromkeys(c.workload for c in cells):
        mine = _ok(cells, "streamline", workload)
        peers = [c for p in PEERS if (c := _ok(cells, p, workload)) is not None]
        peers = [c for c in peers if c.cpu_s_per_m]
        if mine is None or mine.cpu_s_per_m is None or not peers:
            continue
        low = min(peers, key=lambda c: c.cpu_s_per_m or math.inf)
        assert low.cpu_s_per_m is not None
        r = mine.cpu_s_per_m / low.cpu_s_per_m
        out.append(Target(f"{workload} CPU s/M / lowest peer's ({SYSTEM_TITLES[low.system]})",
                          f"{r:.2f}x ({mine.cpu_s_per_m:.1f} vs {low.cpu_s_per_m:.1f})",
                          "≤ 1x (lowest)", r <= 1.0))  # fmt: skip
    return out


def leading_ratio(value: str) -> float | None:
    """The number a target's value text starts with (`2.31x ...`, `66%`), as a ratio."""
    head = value.split(" ", 1)[0]
    try:
        if head.endswith("%"):
            return float(head[:-1]) / 100
        if head.endswith("x"):
            return float(head[:-1])
    except ValueError:
        return None
    return None


def spread(first: dict[str, str], second: dict[str, str]) -> list[tuple[str, float, float, float]]:
    """(target, ratio in the first run, in the second, |difference| / mean) for the targets
    both runs measured."""
    out = []
    for name, text in first.items():
        a, b = leading_ratio(text), leading_ratio(second.get(name, ""))
        if a is None or b is None or a + b == 0:
            continue
        out.append((name, a, b, abs(a - b) / ((a + b) / 2)))
    return out


def record_run(
    history: list[dict[str, Any]], run: dict[str, Any], keep: int = 10
) -> list[dict[str, Any]]:
    """The history with this run appended (each run: date, suite, load, ratios)."""
    return [*history, run][-keep:]


def _num(value: float | None, digits: int = 0) -> str:
    return "-" if value is None else f"{value:,.{digits}f}"


def render_nexmark(cells: Sequence[Cell], settings: dict[str, Any]) -> str:
    records = settings.get("records", {})
    lines = ["## Nexmark-style suite", ""]
    lines.append(
        f"{settings.get('events', 0):,} events generated with one seed: "
        + ", ".join(f"{n:,} {k}" for k, n in records.items())
        + f"; run {settings.get('date', '?')}, load average before/after "
        f"{settings.get('load_before', '?')} / {settings.get('load_after', '?')}. "
        "events/s counts the query's input topic (bids, or auctions for q3 and q8). "
        "Bytewax writes at-least-once (it has no transactional sink); the others exactly-once."
    )
    lines += ["", "| system | query | events/s | CPU s / M events | peak RSS MB | output | check |"]
    lines.append("| --- | --- | ---: | ---: | ---: | ---: | --- |")
    for c in cells:
        check = c.status if c.status in ("ok", "n/a") else f"**{c.status.upper()}**"
        out = _num(c.output_records) if c.output_records is not None else "-"
        lines.append(
            f"| {SYSTEM_TITLES.get(c.system, c.system)} | {NEXMARK_TITLES.get(c.workload, c.workload)} "
            f"| {_num(c.events_per_s)} | {_num(c.cpu_s_per_m, 1)} | {_num(c.peak_rss_mb)} "
            f"| {out} | {check} |"
        )
    notes = [c for c in cells if c.note]
    if notes:
        lines += ["", "Notes:", ""]
        for c in notes:
            lines.append(f"- {SYSTEM_TITLES.get(c.system, c.system)} {c.workload}: {c.note}")
    lines += ["", "![Nexmark-style suite](nexmark.png)", ""]
    return "\n".join(lines)


def repeat_cells(cells: Sequence[Cell], r: int) -> list[Cell]:
    """The cells as measured in repeat `r` alone (a cell repeated fewer times: its last)."""
    out = []
    for cell in cells:
        reps = cell.extra.get("repeats") or []
        lat = cell.extra.get("latency_repeats") or []
        if not reps and not lat:
            out.append(cell)
            continue
        one = Cell(**{**cell.as_dict(), "extra": dict(cell.extra)})
        if reps:
            figures = reps[min(r, len(reps) - 1)]
            one.events_per_s, one.cpu_s_per_m = figures["events_per_s"], figures["cpu_s_per_m"]
        if lat:
            figures = lat[min(r, len(lat) - 1)]
            one.p50_ms, one.p99_ms = figures["p50_ms"], figures["p99_ms"]
        out.append(one)
    return out


def ratio_ranges(cells: Sequence[Cell]) -> dict[str, tuple[float, float]]:
    """Each second-round ratio computed on every repeat alone: its smallest and largest."""
    counts = [len(c.extra.get("repeats") or c.extra.get("latency_repeats") or []) for c in cells]
    rounds = max(counts, default=0)
    values: dict[str, list[float]] = {}
    for r in range(rounds):
        for t in round_two_targets(repeat_cells(cells, r)):
            value = leading_ratio(t.value)
            if t.met is not None and value is not None:
                values.setdefault(t.name, []).append(value)
    return {k: (min(v), max(v)) for k, v in values.items() if len(v) >= 2}


def render_targets(
    targets: Sequence[Target], ranges: dict[str, tuple[float, float]] | None = None
) -> str:
    ranges = ranges or {}
    lines = [
        "## Targets, second round",
        "",
        "Each ratio is taken between the medians of the cells' repeats; the last column gives "
        "the ratio computed on each repeat round alone, smallest to largest. The W1 latency rows "
        "against the peers are streamline's exactly-once W1; the at-least-once row is W1-alo "
        "(`guarantee: at_least_once`) against Bytewax, whose sink is at-least-once.",
        "",
        "| target | this run | goal | | per repeat |",
        "| --- | --- | --- | --- | --- |",
    ]
    for t in targets:
        verdict = "-" if t.met is None else ("met" if t.met else "**missed**")
        span = ranges.get(t.name)
        per = "-" if span is None else f"{span[0]:.2f} to {span[1]:.2f}"
        lines.append(f"| {t.name} | {t.value} | {t.goal} | {verdict} | {per} |")
    return "\n".join(lines) + "\n"


def render_spread(history: Sequence[dict[str, Any]]) -> str:
    """Each ratio in the two newest runs that measured it (a suite may run alone)."""
    lines = ["## Spread between runs", ""]
    pairs: dict[str, tuple[int, int]] = {}
    for name in dict.fromkeys(n for run in history for n in run.get("ratios", {})):
        having = [i for i, run in enumerate(history) if name in run.get("ratios", {})]
        if len(having) >= 2:
            pairs[name] = (having[-2], having[-1])
    if not pairs:
        return "\n".join([*lines, "Only one run recorded so far.", ""])
    used = sorted({i for pair in pairs.values() for i in pair})
    lines.append(f"Goal: every ratio within {SPREAD_LIMIT:.0%} between two runs. Runs:")
    lines.append("")
    for i in used:
        run = history[i]
        repeats = f", {run['repeats']} repeats per cell" if run.get("repeats") else ""
        lines.append(f"- run {i + 1}: {run.get('date', '?')}, suite {run.get('suite', '?')}{repeats}, "
                     f"load average before / after {run.get('load', '?')}")  # fmt: skip
    lines += [
        "",
        "| ratio | runs | previous run | newest run | spread | |",
        "| --- | --- | ---: | ---: | ---: | --- |",
    ]
    for name, (a_i, b_i) in pairs.items():
        rows = spread({name: history[a_i]["ratios"][name]}, {name: history[b_i]["ratios"][name]})
        for _name, a, b, sp in rows:
            verdict = "within" if sp <= SPREAD_LIMIT else "**outside**"
            lines.append(
                f"| {name} | {a_i + 1}, {b_i + 1} | {a:.2f} | {b:.2f} | {sp:.0%} | {verdict} |"
            )
    return "\n".join(lines) + "\n"


def _range(values: Sequence[float | None], digits: int) -> str:
    present = [v for v in values if v is not None]
    if len(present) < 2:
        return "-"
    return f"{_num(min(present), digits)} to {_num(max(present), digits)}"


def _pct(value: float | None) -> str:
    return "-" if value is None else f"{value:.0%}"


def render_repeats(cells: Sequence[Cell]) -> str:
    """Each measured cell's repeats: their number, the range of each figure, its spread
    ((largest - smallest) / median; the tables above give the medians)."""
    rows = [c for c in cells if c.extra.get("repeats")]
    if not rows:
        return ""
    lines = [
        "## Repeats per cell",
        "",
        "Every cell runs several times in interleaved rounds; the tables above give the median "
        "of its repeats. Spread: (largest - smallest) / median. A cell timed over more than the "
        "repeat limit in its first run, or whose first run failed, runs once. Others' CPU: the "
        "share of the machine's CPU used by everything but the system under test while it was "
        "timed (the broker, the harness, other work; median of the repeats): well above the "
        "broker's and the harness's own share, the machine was busy and the figures are noisy.",
        "",
        "| system | workload | repeats | events/s range | spread | CPU s/M range | spread "
        "| p99 ms range | spread | others' CPU |",
        "| --- | --- | ---: | ---: | ---: | ---: | ---: | ---: | ---: | ---: |",
    ]
    for c in rows:
        reps = c.extra["repeats"]
        lat = c.extra.get("latency_repeats") or []
        sp = c.extra.get("spread") or {}
        title = WORKLOAD_TITLES.get(c.workload) or NEXMARK_TITLES.get(c.workload, c.workload)
        lines.append(
            f"| {SYSTEM_TITLES.get(c.system, c.system)} | {title} | {len(reps)}"
            + (f" + {len(lat)} latency" if lat else "")
            + f" | {_range([r.get('events_per_s') for r in reps], 0)} "
            f"| {_pct(sp.get('events_per_s'))} "
            f"| {_range([r.get('cpu_s_per_m') for r in reps], 1)} | {_pct(sp.get('cpu_s_per_m'))} "
            f"| {_range([r.get('p99_ms') for r in lat], 0)} | {_pct(sp.get('p99_ms'))} "
            f"| {_pct(c.extra.get('others_cpu_share'))} |"
        )
    return "\n".join(lines) + "\n"


def render_failover(runs: Sequence[dict[str, Any]] | None) -> str:
    lines = ["## Failover (bench.failover)", ""]
    if not runs:
        return "\n".join([*lines, "No failover.json yet.", ""])
    newest: dict[str, tuple[dict[str, Any], dict[str, Any]]] = {}
    for run in runs:  # oldest first: a later run of a scenario replaces an earlier one
        for scenario in run.get("scenarios", []):
            newest[str(scenario.get("scenario"))] = (run, scenario)
    lines.append(
        "The newest measurement of each scenario (two instances, a windowed topology fed at a "
        "fixed rate). Output pause: the longest gap in the outputs around the event."
    )
    lines += ["", "| scenario | run | output pause s | settled after s | restore s | restored records |",
              "| --- | --- | ---: | ---: | ---: | ---: |"]  # fmt: skip
    for letter in sorted(newest):
        run, s = newest[letter]
        lines.append(
            f"| ({letter}) {s.get('what', '')} | {run.get('label') or '-'}, {run.get('at', '?')}, "
            f"{run.get('keys', 0):,} keys at {run.get('rate', 0):,.0f}/s "
            f"| {_num(s.get('output_pause_s'), 2)} | {_num(s.get('settled_after_s'), 2)} "
            f"| {_num(s.get('restore_s'), 2)} | {_num(s.get('restored_records'))} |"
        )
    return "\n".join(lines) + "\n"


def render_ingest(result: dict[str, Any] | None) -> str:
    lines = ["## HTTP ingest (bench.ingest)", ""]
    if not result:
        return "\n".join([*lines, "No ingest.json yet.", ""])
    lines.append(
        f"{result.get('events', 0):,} events from {result.get('clients', '?')} clients in batches "
        f"of {result.get('batch', '?')}: **{result.get('events_per_s', 0):,} events/s** "
        f"(goal {result.get('goal_events_per_s', 0):,}), {result.get('landed', 0):,} landed, "
        f"exact: {result.get('exact')}, on {result.get('cpus', '?')} CPUs."
    )
    return "\n".join(lines) + "\n"


def render_file_sink(result: dict[str, Any]) -> str:
    if result.get("reason"):
        return f"\n## File sink\n\nstreamline W1 into Parquet files: **{result['status']}**: {result['reason']}.\n"
    return (
        "\n## File sink\n\nstreamline W1 writing Parquet files (`roll.every` "
        f"{result['roll']}) instead of the sink topic, same input, same run: "
        f"**{result.get('events_per_s', 0):,.0f} events/s**, "
        f"{result.get('ratio_to_topic_sink', 0):.0%} of the topic sink's W1 "
        f"({result.get('topic_sink_events_per_s', 0):,.0f} events/s; goal: within 25%), "
        f"{result.get('cpu_s_per_m', 0):.1f} CPU s/M, {result.get('files', 0)} files, "
        f"output check: {result['status']}.\n"
    )


def render_page(
    classic: dict[str, Any] | None,
    nexmark: dict[str, Any] | None,
    failover: list[dict[str, Any]] | None,
    ingest: dict[str, Any] | None,
    history: Sequence[dict[str, Any]],
) -> str:
    """results.md from the JSON payloads."""
    parts = []
    classic_cells = cells_from(classic)
    nexmark_cells = cells_from(nexmark)
    if classic:
        text = render_markdown(classic_cells, classic["machine"],
                               {**classic.get("settings", {}), "method": None})  # fmt: skip
        text = text.replace("## Ratios and targets", "## Ratios and targets, first round")
        parts.append(
            text.replace("## Results", "## Classic suite\n\n![classic suite](results.png)", 1)
        )
        file_sink = classic.get("settings", {}).get("file_sink")
        if file_sink:
            parts.append(render_file_sink(file_sink))
    else:
        machine = (nexmark or {}).get("machine", {})
        parts.append(render_markdown([], machine, {"events": 0}).split("## Results")[0])
    if nexmark:
        parts.append(render_nexmark(nexmark_cells, nexmark.get("settings", {})))
    both = [*classic_cells, *nexmark_cells]
    parts.append(render_targets(round_two_targets(both), ratio_ranges(both)))
    parts.append(render_spread(history))
    repeats = render_repeats([*classic_cells, *nexmark_cells])
    if repeats:
        parts.append(repeats)
    parts.append(render_failover(failover))
    parts.append(render_ingest(ingest))
    methods = [p.get("method") for p in (classic, nexmark) if p and p.get("method")]
    if methods:
        parts.append("## Method\n\n" + "\n\n".join(m.strip() for m in methods if m) + "\n")
    return "\n".join(parts)


def bar_chart(
    cells: Sequence[Cell], columns: Sequence[str], titles: dict[str, str], path: Path, title: str
) -> None:
    """A PNG: events/s per column (workload or query), one bar per system."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    columns = [c for c in columns if any(x.workload == c for x in cells)]
    systems = [s for s in SYSTEM_TITLES if any(c.system == s and c.status == "ok" for c in cells)]
    width = 0.8 / max(1, len(systems))
    fig, ax = plt.subplots(figsize=(10, 4.8))
    for i, system in enumerate(systems):
        xs, ys = [], []
        for j, column in enumerate(columns):
            cell = find(cells, system, column)
            if cell is None or cell.status != "ok" or not cell.events_per_s:
                continue
            xs.append(j + (i - (len(systems) - 1) / 2) * width)
            ys.append(cell.events_per_s)
        color = f"C{list(SYSTEM_TITLES).index(system)}"  # one colour per system in every chart
        ax.bar(xs, ys, width, label=SYSTEM_TITLES.get(system, system), color=color)
    ax.set_xticks(range(len(columns)))
    ax.set_xticklabels([titles.get(c, c) for c in columns], fontsize=7, rotation=15)
    ax.set_ylabel("events/s")
    ax.set_title(title)
    ax.legend(fontsize=8)
    ax.grid(axis="y", alpha=0.3)
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)


def _load(path: Path) -> Any:
    return json.loads(path.read_text()) if path.exists() else None


def write_page(folder: Path = RESULTS) -> None:
    """Renders results.md and nexmark.png from the JSON files in `folder`."""
    nexmark = _load(folder / "nexmark.json")
    text = render_page(
        _load(folder / "results.json"),
        nexmark,
        _load(folder / "failover.json"),
        _load(folder / "ingest.json"),
        _load(folder / "runs.json") or [],
    )
    (folder / "results.md").write_text(text)
    if nexmark:
        bar_chart(cells_from(nexmark), list(NEXMARK_TITLES), NEXMARK_TITLES,
                  folder / "nexmark.png", "Nexmark-style queries, same input (higher is better)")  # fmt: skip


def main() -> None:
    write_page()
    print(f"rendered {RESULTS / 'results.md'}")


if __name__ == "__main__":
    main()


__all__ = [
    "WORKLOAD_TITLES",
    "record_run",
    "render_page",
    "render_repeats",
    "round_two_targets",
    "spread",
]
