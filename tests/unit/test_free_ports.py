"""Ports for test servers: bound by the server itself, or picked where the kernel never hands any out."""

from __future__ import annotations

import re
import socket
from pathlib import Path

from streamline.dev.broker import PICKED_PORTS, free_port

TESTS = Path(__file__).resolve().parents[1]


def test_free_ports_are_below_the_ephemeral_range_and_bindable() -> None:
    low = int(Path("/proc/sys/net/ipv4/ip_local_port_range").read_text().split()[0])
    ports = [free_port() for _ in range(50)]
    assert all(PICKED_PORTS[0] <= p < min(PICKED_PORTS[1], low) for p in ports), ports
    assert len(set(ports)) > 40  # random: two pickers seldom meet
    with socket.socket() as s:
        s.bind(("127.0.0.1", ports[0]))


def test_no_test_hands_a_streamline_process_a_port_picked_beforehand() -> None:
    """`streamline run` binds port 0 itself and names the port: a port picked free first
    can be taken by another test worker before the process binds it."""
    picked = re.compile(r"metrics_port=(?!0\b)|\"--metrics-port\",\s*str\(")
    offenders = [
        f"{path.relative_to(TESTS)}:{n}"
        for path in TESTS.rglob("*.py")
        if path != Path(__file__).resolve()
        for n, line in enumerate(path.read_text().splitlines(), 1)
        if picked.search(line)
    ]
    assert offenders == []
