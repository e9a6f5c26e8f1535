"""How a rendered service tells whoever starts the next ones that it is ready, one place: a
health check for compose and swarm, or a file the lab watches on the host.

Docker runs a health check by exec'ing into the container for as long as it lives, not only
until it is healthy (the engine here, 20.10, has no `start_interval`). Each probe costs the
daemon, containerd and runc about 80 ms of CPU on these machines: at one probe every 500 ms a
probed container kept 16% of a core busy (benchmarks/probe_cost.py), and a few parallel runs
with a server, a shaper and a capture each saturated both cores. Probing every 2 s costs a
quarter of that and delays readiness by at most that much, once per dependency level.

`lab run` on one host does without them (`watched_by_the_lab`): the clients wait at its start
barrier anyway, so nothing talks before the lab releases them, and it need not release them
before every helper and the server is ready. Each such service then writes its ready file into a
directory of the run that is bind-mounted from the host, and compose starts every container as
soon as the one it depends on has started: no probe at all, and no wait of up to one probe
interval per dependency level.
"""

from __future__ import annotations

from typing import Any

INTERVAL_S = 2
# A program that is not ready after about a minute is not coming (a probe timing out counts as
# one failed retry): compose then fails the bring-up with the service's name.
DEADLINE_S = 60
# Where a service watched by the lab finds its ready directory (control/up/<service> on the host).
UP_MOUNT = "/lab/up"
UP_FILE = f"{UP_MOUNT}/ready"


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


def watched_by_the_lab(services: dict[str, Any], up_directory: str) -> list[str]:
    """Turn every service probed by `ready_when` into one whose ready file the lab reads on the
    host, at `<up_directory>/<service>/ready`, and every `service_healthy` condition on it into
    `service_started`; returns those services. A probe of another kind (a learner's server,
    which writes no file) stays as it is."""
    watched = []
    for name, spec in services.items():
        test = spec.get("healthcheck", {}).get("test", [])
        if test[:3] != ["CMD", "test", "-f"]:
            continue
        del spec["healthcheck"]
        spec["command"] = [UP_FILE if part == test[3] else part for part in spec["command"]]
        spec["volumes"] = [*spec.get("volumes", []),
                           {"type": "bind", "source": f"{up_directory}/{name}", "target": UP_MOUNT}]
        watched.append(name)
    for spec in services.values():
        depends = spec.get("depends_on", {})
        for name in set(depends) & set(watched):
            depends[name] = {**depends[name], "condition": "service_started"}
    return watched
