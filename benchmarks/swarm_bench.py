"""Swarm engine benchmark: `lab run basic --engine swarm` against the bare docker commands that
do the same work on the same stack, and the overlay's round trip against one host's bridge.

Needs a running `lab cluster` (`lab cluster up`). Rounds alternate between the two ways, so load
from other work on the machine falls on both. Prints one line per round and the medians:

    python3 benchmarks/swarm_bench.py --rounds 3

The bare way: `docker stack deploy` of the stack file the lab wrote, wait for every client task
to complete, `docker service logs` of every service, `docker stack rm`, wait for the network to
go. The lab's way does that plus its own work: the server deployed first and waited for, logs
read per task from each node, the join, the expectations, the run directory and its report.
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from lab.engine.swarm.cluster import Cluster  # noqa: E402
from lab.engine.swarm.docker_api import connect  # noqa: E402

LAB = [sys.executable, "-m", "lab"]


def lab_run(engine: str, out: Path) -> tuple[float, dict]:
    started = time.perf_counter()
    subprocess.run([*LAB, "run", "basic", "--engine", engine, "--out", str(out)], check=True,
                   capture_output=True, env={**os.environ, "LAB_HOME": str(ROOT)})
    elapsed = time.perf_counter() - started
    directory = max(out.iterdir(), key=lambda p: p.stat().st_mtime)
    return elapsed, json.loads((directory / "manifest.json").read_text()) | {"directory": str(directory)}


def rtt_p50(directory: str) -> float:
    """Median of the TCP round trips of every client (ms), from the run's events."""
    rtts = [r["rtt_ms"] for r in map(json.loads, Path(directory, "events.jsonl").read_text().splitlines())
            if r.get("event") == "reply" and r.get("proto") == "tcp" and r.get("rtt_ms") is not None]
    return statistics.median(rtts)


def bare_run(manager_url: str, stack_file: Path, name: str) -> float:
    env = {**os.environ, "DOCKER_HOST": manager_url}
    client = connect(manager_url)
    started = time.perf_counter()
    subprocess.run(["docker", "stack", "deploy", "--resolve-image", "never", "-c", str(stack_file), name],
                   check=True, capture_output=True, env=env)
    label = f"com.docker.stack.namespace={name}"
    while True:
        services = client.api.services(filters={"label": label})
        clients = [s for s in services if s["Spec"]["Name"].split("_", 1)[1].startswith("client")]
        tasks = client.api.tasks(filters={"service": [s["ID"] for s in clients]})
        if clients and len(tasks) == len(clients) and all(t["Status"]["State"] == "complete" for t in tasks):
            break
        time.sleep(0.25)
    for service in services:
        subprocess.run(["docker", "service", "logs", "--raw", service["Spec"]["Name"]], check=True,
                       capture_output=True, env=env)
    subprocess.run(["docker", "stack", "rm", name], check=True, capture_output=True, env=env)
    while client.api.networks(filters={"label": label}) or client.api.services(filters={"label": label}):
        time.sleep(0.25)
    return time.perf_counter() - started


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rounds", type=int, default=3)
    args = parser.parse_args()
    cluster = Cluster()
    manager = cluster.manager_url()
    if manager is None:
        sys.exit(f"cluster {cluster.name} is not up: `lab cluster up`")
    lab_times, bare_times, overlay, bridge = [], [], [], []
    with tempfile.TemporaryDirectory() as tmp:
        out = Path(tmp)
        for round_ in range(1, args.rounds + 1):
            elapsed, manifest = lab_run("swarm", out / "swarm")
            assert manifest["verdict"] == "passed", manifest.get("error")
            lab_times.append(elapsed)
            overlay.append(rtt_p50(manifest["directory"]))
            stack = Path(manifest["directory"], "stack.yaml")
            bare_times.append(bare_run(manager, stack, f"bench{round_}"))
            _, local = lab_run("docker", out / "docker")
            bridge.append(rtt_p50(local["directory"]))
            print(f"round {round_}: lab {lab_times[-1]:.1f} s, bare {bare_times[-1]:.1f} s "
                  f"({lab_times[-1] / bare_times[-1]:.2f}x); tcp rtt p50 overlay {overlay[-1]:.3f} ms, "
                  f"bridge {bridge[-1]:.3f} ms", flush=True)
    lab_m, bare_m = statistics.median(lab_times), statistics.median(bare_times)
    print(f"median: lab {lab_m:.1f} s, bare {bare_m:.1f} s, ratio {lab_m / bare_m:.2f}x; tcp rtt p50 overlay "
          f"{statistics.median(overlay):.3f} ms, bridge {statistics.median(bridge):.3f} ms "
          f"({statistics.median(overlay) / statistics.median(bridge):.1f}x)")
    return 0


if __name__ == "__main__":
    sys.exit(main())
