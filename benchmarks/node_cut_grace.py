"""How long a swarm node can be cut off before the swarm acts on it: the measurement behind the
10 s limit of a node cut (docs/swarm.md, "Cutting a node off the others").

Starts a 3-node `lab cluster` of its own (removed at the end), runs one long task on node3 with
restart policy `none`, as a run's tasks are, and for each `--cuts` duration cuts node3 off the
other nodes (the lab's own `Cluster.cut`), puts it back, and watches for `--watch` seconds more.
Every 0.5 s it asks the manager for node3's state and the task's state and desired state, and
prints each change with the seconds since the cut (or since the node was put back):

    LAB_NODE_IMAGE=socketlab/node:latest python3 benchmarks/node_cut_grace.py --cuts 10 30
"""

from __future__ import annotations

import argparse
import sys
import time
import uuid
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from lab.compose import node_image  # noqa: E402
from lab.engine.swarm.cluster import Cluster  # noqa: E402
from lab.engine.swarm.docker_api import connect  # noqa: E402
from lab.labels import session_labels  # noqa: E402


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--cuts", type=float, nargs="+", default=[10, 30], help="seconds node3 is cut off, in turn")
    parser.add_argument("--watch", type=float, default=25, help="seconds to watch after each cut")
    args = parser.parse_args()
    cluster = Cluster(f"lab-cluster-cut{uuid.uuid4().hex[:4]}")
    try:
        cluster.up(3, node_image=node_image(), progress=print)
        manager = connect(cluster.manager_url())
        service = manager.services.create(
            node_image(), command=["python3", "-c", "import time; time.sleep(3600)"], name="cut-grace",
            constraints=["node.hostname == node3"], restart_policy={"Condition": "none"}, labels=session_labels())
        while not [t for t in service.tasks() if t["Status"]["State"] == "running"]:
            time.sleep(0.5)

        def state() -> tuple:
            node3 = next(n for n in manager.api.nodes() if n["Description"]["Hostname"] == "node3")
            return node3["Status"]["State"], [(t["Status"]["State"], t["DesiredState"]) for t in service.tasks()]

        for seconds in args.cuts:
            print(f"cut node3 for {seconds:g} s; node3, [(task state, desired state)] before: {state()}")
            watch(lambda: cluster.cut("node3"), seconds, state, "into the cut")
            watch(lambda: cluster.mend("node3"), args.watch, state, "after it was put back")
    finally:
        cluster.down(progress=lambda _m: None)


def watch(act, seconds: float, state, label: str) -> None:
    """Do `act`, then print every change of `state` for `seconds`."""
    started = time.monotonic()
    act()
    last = None
    while (elapsed := time.monotonic() - started) < seconds:
        now = state()
        if now != last:
            print(f"  {elapsed:5.1f} s {label}: {now}")
            last = now
        time.sleep(0.5)


if __name__ == "__main__":
    main()
