"""Health check for a learner's server: ready once something listens on the port, or after a grace.

The clients of a scenario start once the server is healthy. A learner's server prints no
ready file, so readiness is read from the socket table: a TCP socket listening on the port, or
a UDP socket bound to it, on any address (even 127.0.0.1: the clients then fail the way the
learner's would, and the lab explains why). A server that never opens the port is declared
ready after `--grace` seconds anyway, so that the run goes on and shows what happened.
"""

from __future__ import annotations

import os

from lab.learner.procnet import read_tables
from lab.records.options import OneLineParser, int_in


def listening_on(port: int) -> bool:
    return any(row.local.endswith(f":{port}") and row.state in ("listen", "bound") for row in read_tables())


def seconds_since_start(pid: int = 1) -> float:
    """How long the container's first process has run (from /proc: no clock of our own)."""
    with open(f"/proc/{pid}/stat", encoding="ascii") as fh:
        start_ticks = int(fh.read().rsplit(")", 1)[1].split()[19])
    with open("/proc/uptime", encoding="ascii") as fh:
        uptime = float(fh.read().split()[0])
    return uptime - start_ticks / os.sysconf("SC_CLK_TCK")


def main(argv: list[str] | None = None) -> int:
    parser = OneLineParser(prog="lab.learner ready", description="Exit 0 once the server's port is open.")
    parser.add_argument("--port", type=int_in(1, 65535), required=True)
    parser.add_argument("--grace", type=float, default=5.0, help="ready anyway after this many seconds (default 5)")
    options = parser.parse_args(argv)
    if listening_on(options.port):
        return 0
    return 0 if seconds_since_start() >= options.grace else 1

