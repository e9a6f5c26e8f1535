"""How long `lab test` takes for the shipped scenarios, one at a time against side by side.

Each round runs the whole set twice, through the CLI as a user would: `lab test -j 1` (each
scenario alone: its own time is the yardstick) and `lab test -j N`. The goal: the parallel run
takes at most 1.5x the longest scenario's time alone, and every scenario still passes.
Rounds alternate which comes first, so a change in the machine's load hits both alike.

    LAB_NODE_IMAGE=socketlab/node:bench python3 benchmarks/suite_bench.py --rounds 2 --jobs 8

Prints a JSON summary (per-round times, ratios, verdicts, load averages) and a table.
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
import xml.etree.ElementTree as ET
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]


def lab_test(out: Path, jobs: int | None, names: list[str]) -> dict:
    """One `lab test`: wall time, each run's time and verdict (from its JUnit report)."""
    junit = out / "junit.xml"
    cmd = [sys.executable, "-m", "lab", "test", *names, "--out", str(out), "--junit", str(junit)]
    if jobs:
        cmd += ["-j", str(jobs)]
    load = os.getloadavg()[0]
    began = time.monotonic()
    proc = subprocess.run(cmd, capture_output=True, text=True, cwd=ROOT, env={**os.environ, "LAB_HOME": str(ROOT)})
    wall = time.monotonic() - began
    runs = {}
    if not junit.is_file():
        sys.exit(f"lab test wrote no JUnit file (exit {proc.returncode}):\n{proc.stdout[-2000:]}\n{proc.stderr[-2000:]}")
    root = ET.parse(junit).getroot()
    for case in root.iter("testcase"):
        outcome = next((child.tag for child in case if child.tag in ("failure", "error", "skipped")), "passed")
        runs[case.get("name")] = {"seconds": float(case.get("time")), "outcome": outcome}
    return {"jobs": jobs, "exit": proc.returncode, "wall_s": round(wall, 1), "suite_s": float(root.get("time")),
            "load_before": round(load, 1), "load_after": round(os.getloadavg()[0], 1), "runs": runs}


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rounds", type=int, default=2)
    parser.add_argument("--jobs", type=int, default=None, help="for the parallel run (default: lab's own)")
    parser.add_argument("names", nargs="*", help="scenarios (default: all)")
    args = parser.parse_args()
    rounds = []
    with tempfile.TemporaryDirectory(prefix="suite-bench-") as tmp:
        for i in range(args.rounds):
            order = ["alone", "parallel"] if i % 2 == 0 else ["parallel", "alone"]
            result = {}
            for kind in order:
                out = Path(tmp) / f"round{i}-{kind}"
                result[kind] = lab_test(out, 1 if kind == "alone" else args.jobs, args.names)
            longest_name, longest = max(((n, r["seconds"]) for n, r in result["alone"]["runs"].items()),
                                        key=lambda item: item[1])
            result["longest_alone"] = {"scenario": longest_name, "seconds": longest}
            result["sum_alone_s"] = round(sum(r["seconds"] for r in result["alone"]["runs"].values()), 1)
            result["ratio_parallel_wall_to_longest"] = round(result["parallel"]["wall_s"] / longest, 2)
            result["not_passed"] = {kind: sorted(n for n, r in result[kind]["runs"].items() if r["outcome"] != "passed")
                                    for kind in ("alone", "parallel")}
            rounds.append(result)
            print(f"round {i + 1}: alone {result['alone']['wall_s']} s (sum of runs {result['sum_alone_s']} s, "
                  f"longest {longest_name} {longest:.1f} s); parallel -j {result['parallel']['jobs'] or 'default'} "
                  f"{result['parallel']['wall_s']} s = {result['ratio_parallel_wall_to_longest']}x the longest; "
                  f"not passed: {result['not_passed']}", file=sys.stderr)
    summary = {"machine": {"cpus": os.cpu_count(), "platform": platform.platform(), "python": platform.python_version()},
               "date": time.strftime("%Y-%m-%d %H:%M UTC", time.gmtime()), "rounds": rounds}
    print(json.dumps(summary, indent=2))
    return 0


if __name__ == "__main__":
    sys.exit(main())
