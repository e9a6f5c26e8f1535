"""What a container's health check costs the engine, by probe interval.

    python3 benchmarks/probe_cost.py [--image socketlab/node:latest] [--seconds 20]

Starts one idle container (no network) per case: no health check, then a `test -f` probe every
500 ms, 1 s and 2 s. For each, adds up the CPU time the engine's processes (dockerd, containerd
and its shims, and the runc processes they reap) used over the window, from /proc, and prints
it as a share of one core. Docker keeps probing for as long as a container lives, so this is
what every probed container of a run costs the machine, all run long. Needs root (reads other
processes' /proc) and a built node image; removes its containers.
"""

from __future__ import annotations

import argparse
import os
import subprocess
import time

CASES = (None, "500ms", "1s", "2s")
TICKS = os.sysconf("SC_CLK_TCK")


def engine_ticks() -> int:
    """utime + stime + children's, of every dockerd/containerd process now alive."""
    total = 0
    for pid in filter(str.isdigit, os.listdir("/proc")):
        try:
            with open(f"/proc/{pid}/stat") as fh:
                stat = fh.read()
        except OSError:
            continue
        name = stat[stat.index("(") + 1:stat.rindex(")")]
        if name.startswith(("dockerd", "containerd")):
            total += sum(int(v) for v in stat.rsplit(")", 1)[1].split()[11:15])
    return total


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--image", default="socketlab/node:latest")
    parser.add_argument("--seconds", type=float, default=20)
    options = parser.parse_args()
    for interval in CASES:
        name = f"probe-cost-{interval or 'none'}"
        probe = (["--health-cmd", "test -f /etc/hostname", "--health-interval", interval, "--health-timeout", "2s"]
                 if interval else ["--no-healthcheck"])
        subprocess.run(["docker", "run", "-d", "--rm", "--name", name, "--network", "none", *probe,
                        options.image, "sleep", str(options.seconds + 30)], check=True, capture_output=True)
        try:
            time.sleep(2)  # past the start itself
            before = engine_ticks()
            time.sleep(options.seconds)
            used = (engine_ticks() - before) / TICKS
        finally:
            subprocess.run(["docker", "rm", "-f", name], capture_output=True)
        print(f"probe every {interval or '(none)':>6}: {used:5.2f} CPU-s in {options.seconds:g} s"
              f" = {100 * used / options.seconds:4.1f}% of a core")


if __name__ == "__main__":
    main()
