"""How long the HTML report of a 200-client run takes to write, and to open in Chromium.

    python3 benchmarks/report_bench.py                 # 200 clients made from the recorded basic run
    python3 benchmarks/report_bench.py --run runs/ID   # a real run directory instead
    python3 benchmarks/report_bench.py --clients 500 --rounds 7

Writing: `lab.html.write_report` in this process (reading the run, joining, drawing, the file),
median of the rounds after one warm-up. Opening: Debian's chromium through Playwright, network
off, one browser; each round navigates to the file and waits for the load event and two
animation frames (the first paint after the script laid out page 1); median of the rounds.
Goals (issue 9): written in under 10 s, opened in under 2 s.
"""

from __future__ import annotations

import argparse
import platform
import shutil
import statistics
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from lab.html import write_report  # noqa: E402
from lab.html.rundata import load_run  # noqa: E402
from tests.fixtures.runs.scaled import scale_run  # noqa: E402


def time_writing(run_dir: Path, rounds: int) -> list[float]:
    write_report(run_dir)  # warm-up: imports, template compilation
    times = []
    for _ in range(rounds):
        start = time.perf_counter()
        write_report(run_dir)
        times.append(time.perf_counter() - start)
    return times


def time_opening(path: Path, rounds: int) -> tuple[list[float], int]:
    from playwright.sync_api import sync_playwright

    chromium = shutil.which("chromium") or shutil.which("chromium-browser")
    if not chromium:
        sys.exit("chromium is not installed: run scripts/setup.sh")
    times = []
    with sync_playwright() as playwright:
        browser = playwright.chromium.launch(executable_path=chromium, args=["--no-sandbox"])
        page = browser.new_context(offline=True, viewport={"width": 1300, "height": 900}).new_page()
        page.goto(path.as_uri(), wait_until="load")  # warm-up
        for _ in range(rounds):
            start = time.perf_counter()
            page.goto(path.as_uri(), wait_until="load")
            page.evaluate("() => new Promise(r => requestAnimationFrame(() => requestAnimationFrame(r)))")
            times.append(time.perf_counter() - start)
        nodes = page.evaluate("() => document.getElementsByTagName('*').length")
        browser.close()
    return times, nodes


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--run", type=Path, help="a run directory (default: one made from tests/fixtures/runs/basic)")
    parser.add_argument("--clients", type=int, default=200)
    parser.add_argument("--rounds", type=int, default=5)
    args = parser.parse_args()
    with tempfile.TemporaryDirectory() as tmp:
        if args.run:
            run_dir = Path(shutil.copytree(args.run, Path(tmp) / "run"))
        else:
            run_dir = scale_run(ROOT / "tests/fixtures/runs/basic", Path(tmp) / "run", args.clients)
        run = load_run(run_dir)
        messages = sum(s.sent_count for s in run.sockets)  # every message, drawn or not
        write = time_writing(run_dir, args.rounds)
        path = run_dir / "report.html"
        size = path.stat().st_size
        opened, nodes = time_opening(path, args.rounds)
    with open("/proc/loadavg") as fh:
        load = fh.read().split()[0]
    print(f"machine: {platform.processor() or platform.machine()}, {len(__import__('os').sched_getaffinity(0))} cores, "
          f"Python {platform.python_version()}, load average {load}")
    print(f"run: {len(run.clients())} clients, {len(run.sockets)} sockets, {messages} messages "
          f"({'given' if args.run else 'made from the recorded basic run'})")
    print(f"report: {size / 1e6:.2f} MB, {nodes} elements")
    print(f"write: median {statistics.median(write):.2f} s (rounds {min(write):.2f}-{max(write):.2f}), goal < 10 s")
    print(f"open in chromium: median {statistics.median(opened):.2f} s (rounds {min(opened):.2f}-{max(opened):.2f}), "
          f"goal < 2 s")


if __name__ == "__main__":
    main()
