"""How long the echo programs take to exit after SIGTERM (what `docker stop` sends), by hand.

    python3 benchmarks/shutdown_time.py [--repeat 3] [--idle 300]

For each server mode: idle; with --idle open connections; with a client mid-message (a large
message sent, its echo not read, so the server is stuck sending); with UDP traffic flowing.
For the client: mid-session against a server that never echoes, and mid-way through sending a
message larger than the socket buffers. Prints the worst of --repeat tries per case; the goal
is under 1 s everywhere (docker stop waits 10 s, then kills). Loopback only, bounded.
"""

from __future__ import annotations

import argparse
import os
import signal
import socket
import subprocess
import sys
import threading
import time
from contextlib import ExitStack, contextmanager
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
MODES = ("iterative", "threaded", "async")
BIG = 8 * 1024 * 1024  # far more than loopback's socket buffers hold


@contextmanager
def program(*args: str):
    """`python3 -m lab.echo ARGS` with its stdout drained into a list (as docker logs would be);
    killed on the way out if it is still running."""
    proc = subprocess.Popen([sys.executable, "-m", "lab.echo", *args], cwd=REPO, stdout=subprocess.PIPE,
                            stderr=subprocess.DEVNULL, env=dict(os.environ, PYTHONPATH=str(REPO)))
    lines: list[bytes] = []
    threading.Thread(target=lambda: lines.extend(proc.stdout), daemon=True).start()
    try:
        yield proc, lines
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait()


def wait_for(lines: list[bytes], text: bytes, count: int = 1, timeout: float = 10.0) -> None:
    deadline = time.monotonic() + timeout
    while sum(text in line for line in list(lines)) < count:
        if time.monotonic() > deadline:
            raise RuntimeError(f"no {text!r} x{count} in {timeout}s: {lines[-3:]!r}")
        time.sleep(0.01)


def stop_time(proc: subprocess.Popen) -> float:
    """SIGTERM, then seconds until exit (killed after 5 s, reported as such)."""
    t0 = time.monotonic()
    proc.send_signal(signal.SIGTERM)
    try:
        proc.wait(5)
    except subprocess.TimeoutExpired:
        proc.kill()
        proc.wait()
        return float("inf")
    return time.monotonic() - t0


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def server_case(mode: str, case: str, idle: int) -> float:
    port = free_port()
    with program("server", "--mode", mode, "--host", "127.0.0.1", "--port", str(port)) as (proc, lines), \
            ExitStack() as stack:
        wait_for(lines, b'"listening"', 2)
        if case == "idle-conns":
            if mode == "iterative":
                idle = min(idle, 90)  # it accepts one: the rest wait in the backlog of 100
            for _ in range(idle):
                stack.enter_context(socket.create_connection(("127.0.0.1", port), timeout=5))
            wait_for(lines, b'"accepted"', 1 if mode == "iterative" else idle)
        elif case == "mid-message":
            sock = stack.enter_context(socket.create_connection(("127.0.0.1", port)))
            sock.setblocking(False)
            sent = 0
            view = memoryview(b"x" * BIG)
            deadline = time.monotonic() + 2  # until the buffers are full both ways
            while time.monotonic() < deadline:
                try:
                    sent += sock.send(view[sent:])
                except BlockingIOError:
                    time.sleep(0.01)
            wait_for(lines, b'"received"')
        elif case == "udp-flowing":
            udp = stack.enter_context(socket.socket(socket.AF_INET, socket.SOCK_DGRAM))
            stop = threading.Event()
            stack.callback(stop.set)

            def blast() -> None:
                while not stop.is_set():
                    udp.sendto(b"u" * 512, ("127.0.0.1", port))
                    time.sleep(0.0005)
            threading.Thread(target=blast, daemon=True).start()
            wait_for(lines, b'"echoed"', 50)
        return stop_time(proc)


class MuteServer:
    """Accepts TCP, reads nothing and answers nothing: the client waits on its echo."""

    def __init__(self) -> None:
        self.listener = socket.create_server(("127.0.0.1", 0))
        self.port = self.listener.getsockname()[1]
        self.conns: list[socket.socket] = []
        threading.Thread(target=self._accept, daemon=True).start()

    def _accept(self) -> None:
        while True:
            try:
                self.conns.append(self.listener.accept()[0])
            except OSError:
                return

    def close(self) -> None:
        self.listener.close()
        for conn in self.conns:
            conn.close()


def client_case(case: str) -> float:
    server = MuteServer()
    try:
        size = ["--size", "60000", "--count", "1"] if case == "mid-send" else ["--count", "4"]
        with program("client", "--port", str(server.port), "--proto", "tcp", "--sessions", "20",
                     "--timeout", "30", *size) as (proc, lines):
            wait_for(lines, b'"sent"', 20)
            return stop_time(proc)
    finally:
        server.close()


def main() -> int:
    parser = argparse.ArgumentParser(description="Seconds from SIGTERM to exit for the echo programs.")
    parser.add_argument("--repeat", type=int, default=3, help="tries per case; the worst is shown (default 3)")
    parser.add_argument("--idle", type=int, default=300, help="idle connections for that case (default 300)")
    args = parser.parse_args()
    print(f"| program | case | worst of {args.repeat} (s) |")
    print("|---|---|---|")
    for mode in MODES:
        for case in ("idle", "idle-conns", "mid-message", "udp-flowing"):
            worst = max(server_case(mode, case, args.idle) for _ in range(args.repeat))
            print(f"| server {mode} | {case} | {worst:.3f} |", flush=True)
    for case in ("waiting-echo", "mid-send"):
        worst = max(client_case(case) for _ in range(args.repeat))
        print(f"| client tcp x20 | {case} | {worst:.3f} |", flush=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
