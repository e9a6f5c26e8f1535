"""Runs `python3 -m lab.echo server` as a subprocess on a free port and follows its records live.

The server is started with --port 0 and the port is read from its `listening` records, so
tests never collide. Every wait has a deadline; `stop()`/`kill()` always reap the process.
"""

from __future__ import annotations

import json
import os
import resource
import signal
import socket
import subprocess
import sys
import threading
import time
from collections.abc import Callable
from pathlib import Path

from tests.procs import default_sigint

REPO = Path(__file__).resolve().parents[2]


# Prelude code that removes what macOS and the BSDs lack (epoll, pipe2; TIOCOUTQ may be absent
# too), so that on Linux the programs run as they would there.
WITHOUT_LINUX_ONLY = (
    "import os, select, termios\n"
    "for name in [n for n in dir(select) if n.lower().startswith('epoll')]: delattr(select, name)\n"
    "del os.pipe2, termios.TIOCOUTQ\n"
)


def python_command(prelude: str | None = None) -> list[str]:
    """The command that runs `python -m lab.echo`, after prelude code when given (a test uses
    it to hide Linux-only calls and so run the programs as on macOS)."""
    if prelude is None:
        return [sys.executable, "-m", "lab.echo"]
    run_main = "import runpy; runpy.run_module('lab.echo', run_name='__main__', alter_sys=True)"
    return [sys.executable, "-c", f"{prelude}\n{run_main}"]


class EchoServer:
    def __init__(self, *args: str, protos: tuple[str, ...] = ("tcp", "udp"), nofile: int | None = None,
                 host: str = "127.0.0.1", prelude: str | None = None) -> None:
        def prepare() -> None:
            default_sigint()
            if nofile is not None:
                resource.setrlimit(resource.RLIMIT_NOFILE, (nofile, nofile))

        env = dict(os.environ, PYTHONPATH=str(REPO), PYTHONUNBUFFERED="1")
        self.proc = subprocess.Popen(
            [*python_command(prelude), "server", "--port", "0", "--host", host,
             "--proto", ",".join(protos), *args],
            cwd=REPO, env=env, text=True, encoding="utf-8", stdout=subprocess.PIPE,
            stderr=subprocess.PIPE, preexec_fn=prepare,
        )
        self.records: list[dict] = []
        self.stderr = ""
        self.changed = threading.Condition()
        self.readers = [threading.Thread(target=self._read_stdout, daemon=True),
                        threading.Thread(target=self._read_stderr, daemon=True)]
        for reader in self.readers:
            reader.start()
        self.host = host
        self.port = 0
        try:
            listening = [self.wait_record(lambda r, p=p: r["event"] == "listening" and r["proto"] == p)
                         for p in protos]
        except BaseException:
            self.kill()
            raise
        self.port = int(listening[0]["local"].rsplit(":", 1)[1])

    def _read_stdout(self) -> None:
        for line in self.proc.stdout:
            record = json.loads(line)  # a non-JSON line breaks the record contract: fail loudly
            with self.changed:
                self.records.append(record)
                self.changed.notify_all()
        with self.changed:
            self.changed.notify_all()

    def _read_stderr(self) -> None:
        self.stderr = self.proc.stderr.read()

    @property
    def addr(self) -> tuple[str, int]:
        return (self.host, self.port)

    def events(self, event: str, proto: str | None = None) -> list[dict]:
        with self.changed:
            return [r for r in self.records if r["event"] == event and (proto is None or r["proto"] == proto)]

    def wait_record(self, predicate: Callable[[dict], bool], timeout: float = 5.0) -> dict:
        """The first record matching predicate, waiting for it up to timeout."""
        deadline = time.monotonic() + timeout
        with self.changed:
            while True:
                for record in self.records:
                    if predicate(record):
                        return record
                left = deadline - time.monotonic()
                if left <= 0 or (self.proc.poll() is not None and not self.readers[0].is_alive()):
                    raise AssertionError(f"no matching server record within {timeout}s; "
                                         f"rc={self.proc.poll()} stderr={self.stderr[-500:]!r} "
                                         f"last records={self.records[-5:]}")
                self.changed.wait(min(left, 0.2))

    def wait_count(self, event: str, count: int, timeout: float = 10.0) -> None:
        """Wait until at least count records of this event have arrived."""
        deadline = time.monotonic() + timeout
        with self.changed:
            while sum(1 for r in self.records if r["event"] == event) < count:
                left = deadline - time.monotonic()
                if left <= 0:
                    raise AssertionError(f"fewer than {count} {event} records within {timeout}s")
                self.changed.wait(min(left, 0.2))

    def closed(self, peer: str, timeout: float = 5.0) -> dict:
        return self.wait_record(lambda r: r["event"] == "closed" and r.get("peer") == peer, timeout)

    def stop(self, sig: int = signal.SIGTERM, timeout: float = 5.0) -> int:
        """Send sig and wait (deadline) for a clean exit; returns the exit code."""
        if self.proc.poll() is None:
            self.proc.send_signal(sig)
        try:
            code = self.proc.wait(timeout)
        finally:
            self.kill()
        return code

    def kill(self) -> None:
        if self.proc.poll() is None:
            self.proc.kill()
        self.proc.wait()
        for reader in self.readers:
            reader.join(5)

    def __enter__(self) -> EchoServer:
        return self

    def __exit__(self, *exc: object) -> None:
        self.kill()


def addr_text(addr: tuple) -> str:
    """A socket address as the server's records write it."""
    host, port = addr[0], addr[1]
    return f"[{host}]:{port}" if ":" in host else f"{host}:{port}"


def recv_exactly(sock: socket.socket, size: int, timeout: float = 5.0) -> bytes:
    """Read size bytes (or until EOF) with an overall deadline."""
    deadline = time.monotonic() + timeout
    chunks, got = [], 0
    while got < size:
        left = deadline - time.monotonic()
        if left <= 0:
            raise AssertionError(f"got {got} of {size} bytes before the deadline")
        sock.settimeout(left)
        chunk = sock.recv(min(size - got, 1 << 20))
        if not chunk:
            break
        chunks.append(chunk)
        got += len(chunk)
    return b"".join(chunks)


def tcp_echo(server: EchoServer, payload: bytes) -> tuple[bytes, str]:
    """One connection: send payload, read its echo, close. Returns (echo, our local address)."""
    family = socket.AF_INET6 if ":" in server.host else socket.AF_INET
    with socket.socket(family, socket.SOCK_STREAM) as sock:
        sock.settimeout(5)
        sock.connect(server.addr)
        local = addr_text(sock.getsockname())
        sock.sendall(payload)
        return recv_exactly(sock, len(payload)), local


def udp_echo(server: EchoServer, payload: bytes) -> tuple[bytes, str]:
    family = socket.AF_INET6 if ":" in server.host else socket.AF_INET
    with socket.socket(family, socket.SOCK_DGRAM) as sock:
        sock.settimeout(5)
        sock.bind((server.host, 0))  # so getsockname() names the address the server sees
        sock.sendto(payload, server.addr)
        local = addr_text(sock.getsockname())
        data, _ = sock.recvfrom(65536)
        return data, local


def wait_until(predicate: Callable[[], object], timeout: float = 5.0) -> object:
    """Poll predicate until truthy; fail at the deadline."""
    deadline = time.monotonic() + timeout
    while not (value := predicate()):
        if time.monotonic() > deadline:
            raise AssertionError(f"condition not met within {timeout}s")
        time.sleep(0.01)
    return value
