"""`streamline status --serve`: the status page, server-rendered HTML (starlette on uvicorn).

`/` shows the status table, the dependency graph as inline SVG, each topology's SLA
history (one cell per minute) and links to its dead letters; it reloads itself every
refresh interval. `/dead-letters/{topology}` lists the newest dead letters decoded, newest
first; `/status.json` is `status --json`. The page loads nothing else: no script, no font,
no stylesheet from anywhere.
"""

from __future__ import annotations

import html
import json
import time
from collections.abc import Callable
from typing import Any

from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import HTMLResponse, JSONResponse, Response
from starlette.routing import Route

from streamline.cli.render import ago, utc_time
from streamline.errors import StreamlineError
from streamline.ops.status import TopologyStatus, exit_code, graph_edges

DEAD_LETTERS_SHOWN = 50
COLORS = {"ok": "#2e7d32", "late": "#f9a825", "breached": "#c62828", "down": "#6d4c41"}
STYLE = """
body{font-family:system-ui,sans-serif;margin:1.5em;color:#222}
table{border-collapse:collapse;margin-bottom:1.5em}
th,td{border:1px solid #ccc;padding:.3em .6em;text-align:left;font-size:.9em}
th{background:#f3f3f3}
.state{font-weight:bold;color:#fff;border-radius:3px;padding:.1em .4em;white-space:nowrap}
.history{display:flex;gap:1px}
.history span{display:inline-block;width:7px;height:14px}
pre{margin:0;white-space:pre-wrap;max-width:60em}
"""


def _e(value: object) -> str:
    return html.escape(str(value))


def _badge(state: str, text: str) -> str:
    color = COLORS.get(state, "#555")
    return f'<span class="state" style="background:{color}">{_e(text)}</span>'


def graph_svg(rows: list[TopologyStatus]) -> str:
    """The dependency graph: a column per depth (longest path from a topology without
    upstream), an arrow per edge, each node coloured by its state."""
    edges = graph_edges(rows)
    depth = {r.name: 0 for r in rows}
    for _ in range(len(rows)):  # longest path; bounded so a cycle cannot loop forever
        changed = False
        for up, down in edges:
            if depth[down] < depth[up] + 1 and depth[up] + 1 < len(rows):
                depth[down] = depth[up] + 1
                changed = True
        if not changed:
            break
    columns: dict[int, list[str]] = {}
    for name in sorted(depth):
        columns.setdefault(depth[name], []).append(name)
    width, height, gap_x, gap_y = 180, 40, 80, 24
    position = {
        name: (20 + d * (width + gap_x), 20 + i * (height + gap_y))
        for d, names in columns.items()
        for i, name in enumerate(names)
    }
    total_w = 40 + (max(columns, default=0) + 1) * (width + gap_x)
    total_h = 40 + max((len(n) for n in columns.values()), default=1) * (height + gap_y)
    state = {r.name: r.state for r in rows}
    parts = [
        f'<svg id="graph" xmlns="http://www.w3.org/2000/svg" width="{total_w}" '
        f'height="{total_h}" role="img" aria-label="dependency graph">',
        '<defs><marker id="arrow" viewBox="0 0 10 10" refX="10" refY="5" markerWidth="8" '
        'markerHeight="8" orient="auto"><path d="M0,0L10,5L0,10z" fill="#555"/></marker></defs>',
    ]
    for up, down in edges:
        (x1, y1), (x2, y2) = position[up], position[down]
        parts.append(
            f'<line class="edge" data-from="{_e(up)}" data-to="{_e(down)}" x1="{x1 + width}" '
            f'y1="{y1 + height / 2}" x2="{x2}" y2="{y2 + height / 2}" stroke="#555" '
            'stroke-width="2" marker-end="url(#arrow)"/>'
        )
    for name, (x, y) in position.items():
        color = COLORS.get(state[name], "#555")
        parts.append(
            f'<g class="node" data-topology="{_e(name)}" data-state="{_e(state[name])}">'
            f'<rect x="{x}" y="{y}" width="{width}" height="{height}" rx="6" fill="{color}"/>'
            f'<text x="{x + width / 2}" y="{y + height / 2 + 5}" text-anchor="middle" '
            f'fill="#fff" font-size="13">{_e(name)}</text></g>'
        )
    parts.append("</svg>")
    return "".join(parts)


def _history(row: TopologyStatus) -> str:
    cells = "".join(
        f'<span title="{_e(utc_time(t))} {_e(s)}" style="background:{COLORS.get(s, "#555")}"></span>'
        for t, s in row.history[-60:]
    )
    return f'<div class="history" data-topology="{_e(row.name)}">{cells}</div>'


def status_html(rows: list[TopologyStatus], refresh_s: float, now_ms: float) -> str:
    """The whole status page."""
    bad = sum(1 for r in rows if r.state != "ok")
    head = (
        "topology", "state", "instances", "version", "fingerprint", "lag", "watermark",
        "staleness", "dead letters 1h", "late 1h", "last commit", "ready", "SLA history (1h)",
    )  # fmt: skip
    body = []
    for r in rows:
        letters = (
            f'<a href="/dead-letters/{_e(r.name)}">{r.dead_letters_last_hour}</a>'
            if r.dead_letter_topic
            else str(r.dead_letters_last_hour)
        )
        cells = [
            _e(r.name),
            _badge(r.state, r.label),
            _e(", ".join(r.instances) or "-"),
            _e(", ".join(r.versions)),
            _e(", ".join(f[:12] for f in r.fingerprints)),
            "-" if r.lag is None else str(r.lag),
            _e(utc_time(r.watermark)),
            "-" if r.staleness_ms is None else f"{r.staleness_ms / 1000:.1f}s",
            letters,
            str(r.late_last_hour),
            _e(ago(r.last_commit, now_ms)),
            "yes" if r.ready else "no",
            _history(r),
        ]
        body.append(
            f'<tr data-topology="{_e(r.name)}" data-state="{_e(r.state)}">'
            + "".join(f"<td>{c}</td>" for c in cells)
            + "</tr>"
        )
    empty = "" if rows else "<p>No topology sent a heartbeat in that time.</p>"
    return (
        "<!doctype html><html lang=en><head><meta charset=utf-8>"
        f'<meta http-equiv="refresh" content="{max(1, round(refresh_s))}">'
        f"<title>streamline status: {len(rows) - bad}/{len(rows)} ok</title>"
        f"<style>{STYLE}</style></head><body>"
        f'<h1>streamline status</h1><p id="summary">{len(rows)} topologies, {bad} not ok; '
        f"read {_e(utc_time(int(now_ms)))} UTC</p>{empty}"
        '<table id="status"><thead><tr>'
        + "".join(f"<th>{_e(h)}</th>" for h in head)
        + "</tr></thead><tbody>"
        + "".join(body)
        + "</tbody></table><h2>Dependency graph</h2>"
        + graph_svg(rows)
        + "</body></html>"
    )


def dead_letters_html(topology: str, letters: list[dict[str, Any]]) -> str:
    """The dead letters of one topology, decoded, newest first."""
    rows = []
    for d in letters:
        error = d.get("error") or {}
        value = d.get("value", d.get("value_base64"))
        rows.append(
            "<tr class=dead-letter>"
            f"<td>{_e(utc_time(d.get('failed_at')))}</td>"
            f"<td>{d['partition']}/{d['offset']}</td>"
            f"<td>{_e(error.get('type'))}</td><td>{_e(error.get('stage') or '-')}</td>"
            f"<td>{_e(error.get('message') or '')}</td><td>{_e(d.get('attempts') or '-')}</td>"
            f"<td><pre>{_e(json.dumps(value, indent=1, default=str))}</pre></td></tr>"
        )
    return (
        f"<!doctype html><html lang=en><head><meta charset=utf-8><title>dead letters of "
        f"{_e(topology)}</title><style>{STYLE}</style></head><body>"
        f'<p><a href="/">status</a></p><h1>Dead letters of {_e(topology)}</h1>'
        f"<p>The newest {len(letters)}, newest first.</p><table id=dead-letters><thead><tr>"
        "<th>failed at</th><th>partition/offset</th><th>error</th><th>stage</th>"
        "<th>message</th><th>attempts</th><th>value</th></tr></thead><tbody>"
        + "".join(rows)
        + "</tbody></table></body></html>"
    )


def status_app(
    read: Callable[[], list[TopologyStatus]],
    dead_letters: Callable[[str], list[dict[str, Any]]],
    refresh_ms: int,
) -> Starlette:
    """The page's routes; `read` gives the rows, `dead_letters` a topic's decoded letters."""

    def rows() -> list[TopologyStatus]:
        return read()

    def index(request: Request) -> Response:
        return HTMLResponse(status_html(rows(), refresh_ms / 1000, time.time() * 1000))

    def as_json(request: Request) -> Response:
        found = rows()
        return JSONResponse(
            {"ok": exit_code(found) == 0, "topologies": [r.to_json() for r in found]}
        )

    def letters(request: Request) -> Response:
        name = request.path_params["topology"]
        row = next((r for r in rows() if r.name == name), None)
        if row is None or row.dead_letter_topic is None:
            return HTMLResponse(f"<p>no topology {_e(name)}</p>", status_code=404)
        try:
            letters = dead_letters(row.dead_letter_topic)
        except StreamlineError as exc:
            return HTMLResponse(f"<p>cannot read the dead letters: {_e(exc)}</p>", status_code=503)
        return HTMLResponse(dead_letters_html(name, letters))

    return Starlette(
        routes=[
            Route("/", index),
            Route("/status.json", as_json),
            Route("/dead-letters/{topology}", letters),
        ]
    )
