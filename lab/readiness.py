"""How a rendered service tells compose (and swarm) it is ready: a health check, one place.

Docker runs a health check by exec'ing into the container for as long as it lives, not only
until it is healthy (the engine here, 20.10, has no `start_interval`). Each probe costs the
daemon, containerd and runc about 80 ms of CPU on these machines: at one probe every 500 ms a
probed container kept 16% of a core busy (benchmarks/probe_cost.py), and a few parallel runs
with a server, a shaper and a capture each saturated both cores. Probing every 2 s costs a
quarter of that and delays readiness by at most that much, once per dependency level.
"""

from __future__ import annotations

from typing import Any

INTERVAL_S = 2
# A program that is not ready after about a minute is not coming (a probe timing out counts as
# one failed retry): compose then fails the bring-up with the service's name.
DEADLINE_S = 60


def ready_when(path: str) -> dict[str, Any]:
    """Healthy once the program has touched its ready file (no probe traffic in the logs)."""
    return _probe(["CMD", "test", "-f", path], timeout_s=2)


def ready_when_listening(port: int) -> dict[str, Any]:
    """Healthy once something listens on the port (a learner's server prints no ready file).
    Each probe starts a Python: on a busy machine that alone can take seconds."""
    return _probe(["CMD", "python3", "-m", "lab.learner", "ready", "--port", str(port)], timeout_s=15)


def _probe(test: list[str], timeout_s: int) -> dict[str, Any]:
    return {"test": test, "interval": f"{INTERVAL_S}s", "timeout": f"{timeout_s}s",
            "retries": DEADLINE_S // INTERVAL_S}
