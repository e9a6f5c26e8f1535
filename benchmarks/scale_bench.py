"""How `lab run` scales with the number of clients, next to bare `docker compose` on the same topology.

    LAB_NODE_IMAGE=socketlab/node:TAG python3 benchmarks/scale_bench.py [--clients 3 50 200 500] [--rounds 1]

For each N, one after the other (so both see the same machine load):

- `lab run basic --clients N`: its phases from the manifest (bring-up, conversation and how
  long the clients talked, collection, teardown), the wall time, its verdict, and its peak RSS
  (from wait4 on that one process).
- bare compose: the same compose file, rendered the same way for a run (no health checks: the
  lab sees its services get ready through files), brought up with `docker compose up -d`,
  waited for with `docker wait` on every client, torn down with `docker compose down`. Its
  start barrier is open from the start, as for a plain compose user, and nothing waits for the
  server to be ready: its clients retry their connection until it is.

Prints a table with lab/bare ratios and the load average before each measurement, and writes
every number as JSON (`--json`). The machine's description goes with it. Leaves nothing behind
(each project is torn down in a `finally`).
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import subprocess
import sys
import tempfile
import time
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))

from lab.compose import barrier_clients, render, to_yaml  # noqa: E402
from lab.engine import owner_token  # noqa: E402
from lab.phases import control_directory, let_go, ready_directories, release_start, up_directory  # noqa: E402
from lab.readiness import watched_by_the_lab  # noqa: E402
from lab.scenario import load_scenario  # noqa: E402
from lab.wire.service import CAPTURE_DIR  # noqa: E402

LAB = [sys.executable, "-m", "lab"]


def load() -> float:
    return float(Path("/proc/loadavg").read_text().split()[0])


def machine() -> dict:
    info = subprocess.run(["docker", "info", "--format", "{{json .}}"], capture_output=True, text=True).stdout
    docker = json.loads(info) if info.strip() else {}
    memory = next((line.split()[1] for line in Path("/proc/meminfo").read_text().splitlines()
                   if line.startswith("MemTotal")), "0")
    return {
        "date": time.strftime("%Y-%m-%d %H:%M UTC", time.gmtime()),
        "cpus": os.cpu_count(),
        "memory_gib": round(int(memory) / 2**20, 1),
        "kernel": platform.release(),
        "docker": docker.get("ServerVersion"),
        "storage_driver": docker.get("Driver"),
        "cgroup": f"{docker.get('CgroupDriver')} v{docker.get('CgroupVersion')}",
        "compose": subprocess.run(["docker", "compose", "version", "--short"], capture_output=True,
                                  text=True).stdout.strip(),
    }


def timed_process(cmd: list[str], **kwargs) -> tuple[int, float, int]:
    """(exit status, wall seconds, peak RSS in KiB) of one command."""
    start = time.monotonic()
    proc = subprocess.Popen(cmd, **kwargs)
    _, status, usage = os.wait4(proc.pid, 0)
    proc.returncode = os.waitstatus_to_exitcode(status)
    return proc.returncode, time.monotonic() - start, usage.ru_maxrss


def lab_run(n: int, out: Path) -> dict:
    before = load()
    status, wall, rss = timed_process([*LAB, "run", "basic", "--clients", str(n), "--out", str(out)],
                                      cwd=REPO, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    manifest = json.loads(max(out.glob("*/manifest.json"), key=lambda p: p.stat().st_mtime).read_text())
    phases = manifest.get("phases", {})
    detail = phases.get("detail", {})
    return {
        "load": before, "exit": status, "verdict": manifest.get("verdict"), "wall": round(wall, 2),
        "rss_mib": round(rss / 1024, 1),
        **{k: v for k, v in phases.get("reported", {}).items()},
        "clients_talked": detail.get("conversation", {}).get("clients_talked"),
        "containers": detail.get("bring_up", {}).get("containers"),
        "error": manifest.get("error"),
    }


def compose(project: str, file: Path, *args: str, check: bool = True) -> tuple[float, str | None]:
    """Seconds `docker compose ARGS` took, and its last error line when it failed (raised when
    `check`: nothing after a failed `up` can be measured)."""
    start = time.monotonic()
    done = subprocess.run(["docker", "compose", "-p", project, "-f", str(file), *args],
                          stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True, cwd=file.parent)
    error = done.stderr.strip().splitlines()[-1] if done.returncode and done.stderr.strip() else None
    if done.returncode and check:
        raise SystemExit(f"docker compose {' '.join(args)} failed: {done.stderr.strip()[-2000:]}")
    return time.monotonic() - start, error or (f"exit status {done.returncode}" if done.returncode else None)


def bare_compose(n: int, work: Path, round_: int = 0) -> dict:
    scenario = load_scenario(REPO / "scenarios" / "basic.yaml").with_clients(n)
    run_id = f"bench-{n}-{round_}-{os.getpid()}"
    directory = work / run_id
    directory.mkdir()
    control = control_directory(directory, barrier_clients(scenario))
    if scenario.capture:  # as lab run prepares it: the capture helper writes here through the group
        (directory / CAPTURE_DIR).mkdir()
        (directory / CAPTURE_DIR).chmod(0o775)
    now = lambda: time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime())  # noqa: E731
    release_start(control, now)  # open from the start
    let_go(control, now)  # and the clients leave by themselves, as a plain compose user's do
    file = directory / "compose.yaml"
    compose_file = render(scenario, run_id=run_id, owner=owner_token(), capture_group=os.getgid(),
                          control_dir=str(control))
    ready_directories(control, watched_by_the_lab(compose_file["services"], str(up_directory(control))))
    file.write_text(to_yaml(compose_file))
    project = f"lab-{run_id}"
    before = load()
    start = time.monotonic()
    try:
        up, _ = compose(project, file, "up", "-d", "--no-build", "--quiet-pull")
        ids = subprocess.run(["docker", "compose", "-p", project, "-f", str(file), "ps", "-aq", *scenario.client_names()],
                             capture_output=True, text=True, check=True, cwd=directory).stdout.split()
        waited = time.monotonic()
        codes = subprocess.run(["docker", "wait", *ids], capture_output=True, text=True, check=True).stdout.split()
        conversation = time.monotonic() - waited
    finally:
        # A failed `down` is reported, not raised: Docker 20.10 can keep the network ("active
        # endpoints") under bare compose too, and the lab's numbers of the round still stand.
        down, down_error = compose(project, file, "down", "-v", "--remove-orphans", "-t", "1", check=False)
    return {
        "load": before, "clients_ok": sum(c == "0" for c in codes), "bring_up": round(up, 2),
        "conversation": round(conversation, 2), "teardown": round(down, 2),
        "wall": round(time.monotonic() - start, 2), "error": down_error,
    }


def ratio(a, b) -> str:
    return f"{a / b:.2f}x" if a and b else "-"


def describe(which: str, n: int, m: dict) -> str:
    error = f" ERROR {m['error']}" if m.get("error") else ""
    if which == "lab":
        return (f"N={n:<4} lab: {m['verdict']} wall {m['wall']:.1f} s, bring-up {m.get('bring_up', 0):.1f} s "
                f"({m.get('bring_up', 0) / (m.get('containers') or n + 1):.3f} s/container), "
                f"conversation {m.get('conversation', 0):.1f} s (talked {m.get('clients_talked') or 0:.1f} s), "
                f"collection {m.get('collection', 0):.1f} s, teardown {m.get('teardown', 0):.1f} s, "
                f"peak RSS {m['rss_mib']} MiB, load {m['load']:.1f}{error}")
    return (f"N={n:<4} bare: {m['clients_ok']}/{n} ok, wall {m['wall']:.1f} s, up {m['bring_up']:.1f} s, "
            f"clients done {m['conversation']:.1f} s, down {m['teardown']:.1f} s, load {m['load']:.1f}{error}")


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--clients", type=int, nargs="+", default=[3, 50, 200, 500])
    parser.add_argument("--rounds", type=int, default=1)
    parser.add_argument("--json", type=Path, help="write every measurement here")
    args = parser.parse_args()
    results = {"machine": machine(), "rows": []}
    print(json.dumps(results["machine"]))
    with tempfile.TemporaryDirectory(prefix="scale-bench-") as tmp:
        work = Path(tmp)
        for round_ in range(args.rounds):
            for n in args.clients:
                # Alternate which goes first, so neither always meets the other's leftovers.
                order = ("lab", "bare") if round_ % 2 == 0 else ("bare", "lab")
                row = {"clients": n, "round": round_}
                results["rows"].append(row)
                for which in order:  # each side printed as soon as it is measured
                    row[which] = lab_run(n, work / "runs") if which == "lab" else bare_compose(n, work, round_)
                    print(describe(which, n, row[which]), flush=True)
                lab, bare = row["lab"], row["bare"]
                print(f"       lab/bare: wall {ratio(lab['wall'], bare['wall'])}, bring-up "
                      f"{ratio(lab.get('bring_up'), bare['bring_up'])}, teardown {ratio(lab.get('teardown'), bare['teardown'])}",
                      flush=True)
    if args.json:
        args.json.write_text(json.dumps(results, indent=2) + "\n")
    return 0


if __name__ == "__main__":
    sys.exit(main())
