"""How fast the engine starts and stops containers, by how many are asked at once, with and
without a network: the floor under a run's bring-up and teardown.

    python3 benchmarks/stop_rate.py [--containers 100] [--at-once 1 8 16 32] [--image socketlab/node:latest]

For each number of calls at once, and once on an internal bridge network (as a run's) and once
with no network: create that many idle containers (a Python that exits on SIGTERM, as the held
echo clients do), start them 8 at a time, then stop them the given number at a time through the
SDK. Prints the seconds and milliseconds per container of each start and stop batch. Everything
it creates carries a random name and is removed in a `finally`.
"""

from __future__ import annotations

import argparse
import secrets
import sys
import time
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import docker

IDLE = "import signal, time; signal.signal(signal.SIGTERM, lambda *a: exit(0)); time.sleep(3600)"


def batch(fn, items, at_once: int) -> float:
    began = time.monotonic()
    with ThreadPoolExecutor(max_workers=at_once) as pool:
        list(pool.map(fn, items))
    return time.monotonic() - began


def measure(client, image: str, count: int, at_once: int, networked: bool) -> dict:
    tag = f"stoprate-{secrets.token_hex(3)}"
    network = client.networks.create(tag, internal=True) if networked else None
    ids: list[str] = []
    try:
        def create(i: int) -> str:
            return client.api.create_container(
                image, ["python3", "-c", IDLE], name=f"{tag}-{i}", user="10001",
                host_config=client.api.create_host_config(cap_drop=["ALL"],
                                                          network_mode=network.name if network else "none"),
            )["Id"]

        with ThreadPoolExecutor(max_workers=8) as pool:
            ids = list(pool.map(create, range(count)))
        started = batch(client.api.start, ids, 8)
        time.sleep(2)  # every program at its sleep, as a held client is
        stopped = batch(lambda i: client.api.stop(i, timeout=3), ids, at_once)
        return {"network": networked, "at_once": at_once, "start_s": started, "stop_s": stopped}
    finally:
        with ThreadPoolExecutor(max_workers=8) as pool:
            list(pool.map(lambda i: client.api.remove_container(i, force=True), ids))
        if network is not None:
            network.remove()


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--containers", type=int, default=100)
    parser.add_argument("--at-once", type=int, nargs="+", default=[1, 8, 16, 32])
    parser.add_argument("--image", default="socketlab/node:latest")
    args = parser.parse_args()
    client = docker.from_env(timeout=600)
    print(f"{args.containers} containers, {time.strftime('%Y-%m-%d %H:%M UTC', time.gmtime())}, "
          f"load {Path('/proc/loadavg').read_text().split()[0]}")
    for networked in (True, False):
        for at_once in args.at_once:
            m = measure(client, args.image, args.containers, at_once, networked)
            n = args.containers
            print(f"{'bridge' if networked else 'none  '} stop {at_once:>2} at once: start {m['start_s']:5.1f} s "
                  f"({m['start_s'] / n * 1000:4.0f} ms each, 8 at once), stop {m['stop_s']:5.1f} s "
                  f"({m['stop_s'] / n * 1000:4.0f} ms each)", flush=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
