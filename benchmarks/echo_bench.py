"""Echo server benchmark: our three modes against socat (and iperf3 for bulk), one run, loopback.

    python3 benchmarks/echo_bench.py [--duration 1] [--rounds 5] [--no-write]

Request/response: 64-byte messages, each connection waits for its whole echo before sending
the next, with 1, 10 and 50 concurrent connections. Bulk: one connection streaming 256 KiB
writes while reading the echo. The load generator runs in separate processes (fork), each an
epoll loop over its share of the connections (a plain blocking loop for one connection), so it
never shares an interpreter with the server. With two or more cores the load generator is
pinned to one core and every server (with its threads and socat's children) to another, so the
scheduler's placement cannot change the figures from run to run. Each figure is the median of
--rounds rounds; the servers take turns within a round, in a rotating order. Prints a markdown
table and writes it into the "Echo server" section of docs/benchmarks.md. Bounded: every run
stops after --duration.
"""

from __future__ import annotations

import argparse
import datetime as dt
import json
import multiprocessing as mp
import os
import platform
import re
import select
import shutil
import signal
import socket
import statistics
import subprocess
import sys
import threading
import time
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
DOC = REPO / "docs" / "benchmarks.md"
MSG = b"m" * 64
CONNS = (1, 10, 50)
WARMUP_S = 0.5
BULK_CHUNK = 256 * 1024
IPERF_SECONDS = 3
OURS_LOG = "connections"  # accept/close records only: per-message records would measure json.dumps
OURS_BULK_ARGS = ["--read-size", "262144", "--buffer-cap", "4194304"]
# async with its busy-poll switched off, to show what the spin is worth (benchmark only)
NO_SPIN = "import sys, lab.echo.server_async as a, lab.echo.server as s; a.SPIN_S = 0; sys.exit(s.main())"


def cores() -> tuple[set[int], set[int]]:
    """(load generator's cores, servers' cores): two different ones when we may use two."""
    allowed = sorted(os.sched_getaffinity(0))
    if len(allowed) < 2:
        return set(allowed), set(allowed)
    return {allowed[0]}, {allowed[1]}


LOAD_CORES, SERVER_CORES = cores()


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def wait_connectable(port: int, timeout: float = 5.0) -> None:
    deadline = time.monotonic() + timeout
    while True:
        try:
            socket.create_connection(("127.0.0.1", port), timeout=1).close()
            return
        except OSError:
            if time.monotonic() > deadline:
                raise RuntimeError(f"nothing listening on port {port} after {timeout}s") from None
            time.sleep(0.02)


class Target:
    """A server under test, started as a subprocess and stopped with SIGTERM."""

    def __init__(self, name: str, argv: list[str], port: int, ours: bool) -> None:
        self.name, self.argv, self.port, self.ours = name, argv, port, ours
        self.proc: subprocess.Popen | None = None

    def __enter__(self) -> Target:
        env = dict(os.environ, PYTHONPATH=str(REPO))
        self.proc = subprocess.Popen(self.argv, cwd=REPO, env=env, stdout=subprocess.PIPE,
                                     stderr=subprocess.DEVNULL, start_new_session=True,
                                     preexec_fn=lambda: os.sched_setaffinity(0, SERVER_CORES))
        if self.ours:
            line = self.proc.stdout.readline()  # the `listening` record
            if b'"listening"' not in line:
                raise RuntimeError(f"{self.name} did not start: {line!r}")
        # keep draining its records so a full pipe never stalls the server
        threading.Thread(target=lambda: self.proc.stdout.read(), daemon=True).start()
        wait_connectable(self.port)
        return self

    def __exit__(self, *exc: object) -> None:
        try:
            os.killpg(self.proc.pid, signal.SIGTERM)  # socat forks a child per connection
        except ProcessLookupError:
            pass
        try:
            self.proc.wait(5)
        except subprocess.TimeoutExpired:
            os.killpg(self.proc.pid, signal.SIGKILL)
            self.proc.wait()


def ours(mode: str, extra: list[str] | None = None, spin: bool = True) -> Target:
    port = free_port()
    program = ["-m", "lab.echo.server"] if spin else ["-c", NO_SPIN]
    argv = [sys.executable, *program, "--proto", "tcp", "--host", "127.0.0.1",
            "--port", str(port), "--mode", mode, "--log", OURS_LOG, *(extra or [])]
    return Target(mode if spin else f"{mode}-nospin", argv, port, ours=True)


def socat() -> Target:
    port = free_port()
    argv = ["socat", f"TCP-LISTEN:{port},bind=127.0.0.1,fork,reuseaddr,backlog=100", "PIPE"]
    return Target("socat", argv, port, ours=False)


# ---- load generator (runs in forked worker processes) ----

def rr_worker(port: int, conns: int, duration: float, start: mp.Event, result: mp.Queue) -> None:
    os.sched_setaffinity(0, LOAD_CORES)
    socks = [socket.create_connection(("127.0.0.1", port)) for _ in range(conns)]
    for sock in socks:
        sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
    result.put("ready")
    start.wait()
    t_end_warm = time.monotonic() + WARMUP_S
    if conns == 1:
        count, t0 = _rr_single(socks[0], t_end_warm, duration)
    else:
        count, t0 = _rr_many(socks, t_end_warm, duration)
    result.put((count, time.monotonic() - t0))
    for sock in socks:
        sock.close()


def _rr_single(sock: socket.socket, t_end_warm: float, duration: float) -> tuple[int, float]:
    send, recv, size = sock.send, sock.recv, len(MSG)
    count, t0, t_end, measuring = 0, 0.0, 0.0, False
    while True:
        send(MSG)
        got = len(recv(4096))
        while got < size:
            got += len(recv(4096))
        count += 1
        if count & 127 == 0:
            now = time.monotonic()
            if not measuring and now >= t_end_warm:
                measuring, count, t0, t_end = True, 0, now, now + duration
            elif measuring and now >= t_end:
                return count, t0


def _rr_many(socks: list[socket.socket], t_end_warm: float, duration: float) -> tuple[int, float]:
    ep = select.epoll()
    by_fd, need = {}, {}
    for sock in socks:
        sock.setblocking(False)
        by_fd[sock.fileno()] = sock
        need[sock.fileno()] = len(MSG)
        ep.register(sock.fileno(), select.EPOLLIN)
        sock.send(MSG)
    count, t0, measuring = 0, 0.0, False
    t_end = 0.0
    while True:
        for fd, _ in ep.poll(0.2):
            sock = by_fd[fd]
            left = need[fd] - len(sock.recv(4096))
            if left <= 0:
                count += 1
                sock.send(MSG)
                left = len(MSG)
            need[fd] = left
        now = time.monotonic()
        if not measuring and now >= t_end_warm:
            measuring, count, t0, t_end = True, 0, now, now + duration
        elif measuring and now >= t_end:
            return count, t0


def bulk_worker(port: int, duration: float, start: mp.Event, result: mp.Queue) -> None:
    os.sched_setaffinity(0, LOAD_CORES)
    sock = socket.create_connection(("127.0.0.1", port))
    sock.setblocking(False)
    out = memoryview(b"b" * BULK_CHUNK)
    inbuf = bytearray(1 << 20)
    ep = select.epoll()
    ep.register(sock.fileno(), select.EPOLLIN | select.EPOLLOUT)
    result.put("ready")
    start.wait()
    t_warm = time.monotonic() + WARMUP_S
    received, t0, measuring, t_end = 0, 0.0, False, 0.0
    while True:
        for _, ev in ep.poll(0.2):
            if ev & select.EPOLLOUT:
                try:
                    sock.send(out)
                except BlockingIOError:
                    pass
            if ev & select.EPOLLIN:
                try:
                    received += sock.recv_into(inbuf)
                except BlockingIOError:
                    pass
        now = time.monotonic()
        if not measuring and now >= t_warm:
            measuring, received, t0, t_end = True, 0, now, now + duration
        elif measuring and now >= t_end:
            result.put((received, now - t0))
            sock.close()
            return


def run_workers(target, args_list) -> list[tuple[float, float]]:
    ctx = mp.get_context("fork")
    start, result = ctx.Event(), ctx.Queue()
    procs = [ctx.Process(target=target, args=(*args, start, result)) for args in args_list]
    for proc in procs:
        proc.start()
    for _ in procs:  # every worker has connected: start them together
        if result.get(timeout=30) != "ready":
            raise RuntimeError("worker failed before the start")
    start.set()
    results = [result.get(timeout=60) for _ in procs]
    for proc in procs:
        proc.join(10)
    return results


def measure_rr(port: int, conns: int, duration: float) -> float:
    workers = 1 if conns == 1 else 2
    shares = [conns // workers + (1 if i < conns % workers else 0) for i in range(workers)]
    results = run_workers(rr_worker, [(port, share, duration) for share in shares])
    return sum(count / elapsed for count, elapsed in results)


def measure_bulk(port: int, duration: float) -> float:
    ((received, elapsed),) = run_workers(bulk_worker, [(port, duration)])
    return received / elapsed / 1e6


def measure_iperf3() -> float | None:
    if not shutil.which("iperf3"):
        return None
    port = free_port()
    server = subprocess.Popen(["iperf3", "-s", "-1", "-p", str(port), "-B", "127.0.0.1"],
                              stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
                              preexec_fn=lambda: os.sched_setaffinity(0, SERVER_CORES))
    try:
        # -s -1 serves one client: retry until it listens instead of probing it with a connect
        deadline = time.monotonic() + 5
        while True:
            run = subprocess.run(["iperf3", "-c", "127.0.0.1", "-p", str(port), "-t", str(IPERF_SECONDS), "-J"],
                                 capture_output=True, text=True, timeout=60,
                                 preexec_fn=lambda: os.sched_setaffinity(0, LOAD_CORES))
            try:
                return json.loads(run.stdout)["end"]["sum_received"]["bits_per_second"] / 8 / 1e6
            except (ValueError, KeyError):
                if time.monotonic() > deadline:
                    print(f"  iperf3 failed: {run.stdout[-300:]} {run.stderr[-300:]}", flush=True)
                    return None
            time.sleep(0.05)
    finally:
        server.kill()
        server.wait()


# ---- the run and the report ----

def machine() -> dict[str, str]:
    model = "unknown"
    try:
        for line in open("/proc/cpuinfo", encoding="utf-8"):
            if line.startswith("model name"):
                model = line.split(":", 1)[1].strip()
                break
    except OSError:
        pass
    return {"cpu": model, "cores": str(os.cpu_count()), "kernel": platform.release(),
            "python": platform.python_version(),
            "socat": subprocess.run(["socat", "-V"], capture_output=True, text=True).stdout.splitlines()[1].strip()
            if shutil.which("socat") else "missing",
            "date": dt.datetime.now(dt.UTC).strftime("%Y-%m-%d %H:%M UTC")}


class Samples:
    """Per-round figures: samples[server][figure] is one value a round, in round order."""

    def __init__(self) -> None:
        self.values: dict[str, dict] = {}

    def add(self, server: str, figure, value: float | None) -> None:
        self.values.setdefault(server, {}).setdefault(figure, []).append(value)

    def median(self, server: str, figure) -> float | None:
        found = [v for v in self.values.get(server, {}).get(figure, []) if v]
        return statistics.median(found) if found else None

    def ratios(self, server: str, figure, ref: str = "socat", ref_figure=None) -> list[float]:
        """server/ref within each round, so load from elsewhere that hits one round hits both."""
        mine = self.values.get(server, {}).get(figure, [])
        theirs = self.values.get(ref, {}).get(figure if ref_figure is None else ref_figure, [])
        return [a / b for a, b in zip(mine, theirs, strict=False) if a and b]


def rotated(items: list, by: int) -> list:
    return items[by % len(items):] + items[:by % len(items)]


def run(duration: float, rounds: int) -> Samples:
    """Every server is up for the whole run; in each round every figure is measured for all of
    them in turn (a different one first each round), so drifting load hits all alike."""
    rr_targets = {"async": ours("async"), "async-nospin": ours("async", spin=False),
                  "threaded": ours("threaded"), "iterative": ours("iterative"), "socat": socat()}
    bulk_targets = {"async": ours("async", OURS_BULK_ARGS), "threaded": ours("threaded", OURS_BULK_ARGS),
                    "iterative": ours("iterative", OURS_BULK_ARGS), "socat": rr_targets["socat"],
                    "async-1024": ours("async")}
    samples = Samples()
    started = []
    try:
        for target in {id(t): t for t in [*rr_targets.values(), *bulk_targets.values()]}.values():
            started.append(target.__enter__())
        for round_no in range(rounds):
            for n in CONNS:
                for name in rotated(list(rr_targets), round_no):
                    if n > 1 and name in ("iterative", "async-nospin"):
                        continue  # iterative: the others would just wait; no-spin: matters at 1 only
                    rate = measure_rr(rr_targets[name].port, n, duration)
                    samples.add(name, n, rate)
                    print(f"  round {round_no + 1} {name:12s} {n:3d} conn: {rate:10.0f} req/s", flush=True)
            for name in rotated(list(bulk_targets), round_no):
                rate = measure_bulk(bulk_targets[name].port, duration)
                samples.add(name, "bulk", rate)
                print(f"  round {round_no + 1} {name:12s} bulk: {rate:8.0f} MB/s", flush=True)
            rate = measure_iperf3()
            samples.add("iperf3", "bulk", rate)
            print(f"  round {round_no + 1} iperf3       bulk: {rate or 0:8.0f} MB/s", flush=True)
    finally:
        for target in started:
            target.__exit__(None, None, None)
    return samples


def ratio(samples: Samples, server: str, figure) -> str:
    found = samples.ratios(server, figure)
    return f" ({statistics.median(found):.2f}x)" if found else ""


def spread(values: list[float]) -> str:
    return f"{min(values):.2f}-{max(values):.2f}" if values else "n/a"


def targets(samples: Samples) -> list[tuple[str, list[float], float]]:
    """(target, per-round values, threshold): met when the median and every round reach it."""
    return [
        ("async >= socat at 1 connection", samples.ratios("async", 1), 1.0),
        ("async >= 2x socat at 50 connections", samples.ratios("async", 50), 2.0),
        ("async bulk >= 1/4 of iperf3", samples.ratios("async", "bulk", "iperf3"), 0.25),
    ]


def report(samples: Samples, info: dict, duration: float, rounds: int, command: str) -> str:
    med = samples.median
    iperf = med("iperf3", "bulk")
    pinned = LOAD_CORES != SERVER_CORES
    lines = [
        "## Echo server",
        "",
        f"Reproduce: `{command}` (from the repository root; a few minutes, stops by itself).",
        "",
        f"Machine: {info['cpu']}, {info['cores']} cores, kernel {info['kernel']}, Python {info['python']}, "
        f"{info['socat']}. Date: {info['date']}. Each figure: the median of {rounds} rounds of {duration:g} s "
        f"(each after {WARMUP_S:g} s warm-up), loopback, all servers measured in turn within each round; "
        + (f"load generator on core {min(LOAD_CORES)}, servers on core {min(SERVER_CORES)}."
           if pinned else "one core: nothing pinned."),
        "",
        "| server | 1 conn req/s | 10 conns req/s | 50 conns req/s | bulk echo MB/s |",
        "|---|---|---|---|---|",
    ]
    for name in ("async", "async-nospin", "threaded", "iterative", "socat"):
        cells = []
        for figure in (*CONNS, "bulk"):
            value = med(name, figure)
            cells.append("n/a" if value is None else f"{value:,.0f}{'' if name == 'socat' else ratio(samples, name, figure)}")
        label = {"socat": "socat", "async-nospin": "ours async, spin off"}.get(name, f"ours {name}")
        lines.append(f"| {label} | " + " | ".join(cells) + " |")
    lines.append(f"| iperf3 (one way, reference) | | | | {iperf:,.0f} |" if iperf else "| iperf3 | | | | missing |")
    verdicts = []
    for label, values, threshold in targets(samples):
        ok = bool(values) and statistics.median(values) >= threshold and min(values) >= threshold
        verdicts.append(f"{label}: {'met' if ok else 'NOT met'} (median {statistics.median(values):.2f}, "
                        f"rounds {spread(values)})" if values else f"{label}: NOT met (no figure)")
    bulk1024 = med("async-1024", "bulk")
    lines += [
        "",
        "Ratios in brackets: the median over rounds of ours/socat within the same round. Targets, each "
        "judged on the median and on every single round: " + "; ".join(verdicts) + ".",
        "",
        "How it was measured:",
        "",
        f"- Our server runs as `python3 -m lab.echo.server --proto tcp --mode MODE --log {OURS_LOG}`: "
        "accept/close records only (the default `--log messages` writes two JSON records per read, "
        "which would measure json.dumps, not the server). Request/response uses the tutorial's "
        "`recv(1024)`; bulk uses `" + " ".join(OURS_BULK_ARGS) + "`. With `recv(1024)` async bulk is "
        f"{bulk1024 or 0:,.0f} MB/s.",
        "- The async loop busy-polls for 100 us after each burst of work before it sleeps in epoll_wait "
        "(lab/echo/server_async.py, SPIN_S). The row `spin off` is the same server with SPIN_S = 0: on "
        "this virtual machine, sleeping and being woken for every message costs more than the echo.",
        "- socat: `socat TCP-LISTEN:PORT,bind=127.0.0.1,fork,reuseaddr,backlog=100 PIPE`, a process per "
        "connection echoing through its own pipe; PIPE rather than `EXEC:cat`, which adds a cat process "
        "and two more copies per message.",
        "- iterative serves one client at a time, so only its 1-connection figure means anything.",
        "- Request/response: 64-byte messages, each connection sends the next only after its whole echo "
        "came back (TCP_NODELAY on the client). The load generator is forked worker processes: one "
        "blocking send/recv loop for 1 connection; for 10 and 50, two processes, each an epoll loop over "
        "half the connections. All workers connect first, then start together.",
        "- Bulk: one connection, a process writing 256 KiB chunks and reading the echo in one epoll loop; "
        "MB/s is echoed payload received per second (10^6 bytes). iperf3 (`iperf3 -s -1` + "
        f"`iperf3 -c 127.0.0.1 -t {IPERF_SECONDS}`, once a round, pinned like the others) moves bytes one "
        "way only, an echo moves each byte both ways.",
        "- Placement: " + ("the load generator (and iperf3's client) is pinned to one core, every server "
        "(its threads, socat's children, iperf3's server) to the other, with os.sched_setaffinity. Left to "
        "the scheduler, client and server sometimes share a core and sometimes not: on this machine that "
        "alone moved the 1-connection async/socat ratio between 0.5x and 1.7x from one round to the next; "
        "pinned, each server has one core to itself (socat's "
        "children too) and the load generator the other." if pinned else "one core only: no pinning."),
        "",
    ]
    return "\n".join(lines)


def write_section(section: str) -> None:
    """Replace (or add) the `## Echo server` section of docs/benchmarks.md, keeping the rest."""
    text = DOC.read_text(encoding="utf-8") if DOC.exists() else "# Benchmarks\n\n"
    pattern = re.compile(r"^## Echo server\n.*?(?=^## |\Z)", re.S | re.M)
    if pattern.search(text):
        text = pattern.sub(lambda _: section, text)
    else:
        text = text.rstrip("\n") + "\n\n" + section
    DOC.write_text(text, encoding="utf-8")


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description="Benchmark the lab's echo server against socat and iperf3.")
    parser.add_argument("--duration", type=float, default=1.0, help="seconds measured per figure (default 1)")
    parser.add_argument("--rounds", type=int, default=5, help="measure everything this often; report medians (default 5)")
    parser.add_argument("--no-write", action="store_true", help="print only; leave docs/benchmarks.md alone")
    args = parser.parse_args(argv)
    if not 0.2 <= args.duration <= 30:
        parser.error("--duration must be 0.2..30 seconds")
    if not shutil.which("socat"):
        parser.error("socat is needed as the reference server (apt-get install socat)")
    info = machine()
    if not 1 <= args.rounds <= 10:
        parser.error("--rounds must be 1..10")
    samples = run(args.duration, args.rounds)
    command = "python3 benchmarks/echo_bench.py" + ("" if args.duration == 1.0 else f" --duration {args.duration:g}") \
        + ("" if args.rounds == 5 else f" --rounds {args.rounds}")
    section = report(samples, info, args.duration, args.rounds, command)
    print()
    print(section)
    if not args.no_write:
        write_section(section)
        print(f"written to {DOC.relative_to(REPO)}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
