"""Tiny in-test echo servers (threads, stdlib) whose misbehaviour the client tests choose.

Each records what it saw (the peers it accepted / received from, the payloads), so tests can
check the client's records against the server's view, as the lab's orchestrator does.
"""

from __future__ import annotations

import json
import os
import queue
import socket
import struct
import subprocess
import sys
import threading
import time
from collections.abc import Callable
from pathlib import Path

from lab.echo import client
from tests.procs import default_sigint


def run_client(capsys, *args: str) -> tuple[int, list[dict]]:
    """Run the client in this process (its records go to the captured stdout)."""
    code = client.main(list(args))
    out = capsys.readouterr().out
    return code, [json.loads(line) for line in out.splitlines() if line.strip()]


def events(records: list[dict], event: str, proto: str | None = None) -> list[dict]:
    return [r for r in records if r["event"] == event and (proto is None or r["proto"] == proto)]


def summary(records: list[dict], proto: str) -> dict:
    (found,) = events(records, "summary", proto)
    return found


class TcpEcho:
    """TCP echo server on loopback. Hooks:
    - alter: transform each chunk before echoing it (to make echoes not intact)
    - drop_after: close each of the first `drop_connections` connections once that many
      bytes were echoed on it (a server that drops clients mid-run)
    - mute: read but never echo
    - reset_first: answer each of the first this many connections with a reset (RST) once
      `reset_now` is set (then cleared); `resets` counts them
    """

    def __init__(self, host: str = "127.0.0.1", port: int = 0, *, alter: Callable[[bytes], bytes] | None = None,
                 drop_after: int | None = None, drop_connections: int = 1, mute: bool = False,
                 chunk: int = 1024, die_at: int | None = None, reset_first: int = 0) -> None:
        self.host = host
        self.alter = alter
        self.drop_after = drop_after
        self.drop_connections = drop_connections
        self.mute = mute
        self.chunk = chunk
        self.die_at = die_at
        self.reset_first = reset_first
        self.resets = 0
        self.reset_now = threading.Event()
        self.died = threading.Event()
        self.peers: list[tuple] = []
        self.received = bytearray()
        self.lock = threading.Lock()
        self.conns: list[socket.socket] = []
        self.threads: list[threading.Thread] = []
        self.listener: socket.socket | None = None
        self.port = port
        self.start()

    def start(self) -> None:
        family = socket.AF_INET6 if ":" in self.host else socket.AF_INET
        listener = socket.socket(family, socket.SOCK_STREAM)
        listener.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        listener.bind((self.host, self.port))
        listener.listen(100)
        self.port = listener.getsockname()[1]
        self.listener = listener
        thread = threading.Thread(target=self._accept_loop, args=(listener,), daemon=True)
        thread.start()
        self.threads.append(thread)

    def _accept_loop(self, listener: socket.socket) -> None:
        while True:
            try:
                conn, peer = listener.accept()
            except OSError:
                return
            if self.resets < self.reset_first:
                if not self.reset_now.wait(5):
                    conn.close()
                    return
                self.reset_now.clear()
                conn.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))
                conn.close()  # with a zero linger time close() sends RST
                with self.lock:
                    self.resets += 1
                continue
            with self.lock:
                self.peers.append(peer)
                index = len(self.peers)
                self.conns.append(conn)
            thread = threading.Thread(target=self._serve, args=(conn, index), daemon=True)
            thread.start()
            self.threads.append(thread)

    def _serve(self, conn: socket.socket, index: int) -> None:
        echoed = 0
        limit = self.drop_after if index <= self.drop_connections else None
        try:
            while True:
                data = conn.recv(self.chunk)
                if not data:
                    break
                with self.lock:
                    self.received += data
                    total = len(self.received)
                if self.die_at is not None and total >= self.die_at and not self.died.is_set():
                    self.die_at = None
                    self._close_all()  # the whole server goes away, this message unanswered
                    self.died.set()
                    return
                if self.mute:
                    continue
                if limit is not None:
                    data = data[: max(0, limit - echoed)]
                conn.sendall(self.alter(data) if self.alter else data)
                echoed += len(data)
                if limit is not None and echoed >= limit:
                    break
        except OSError:
            pass
        finally:
            conn.close()

    def _close_all(self) -> None:
        """Close the listener and every connection, as if the server process died."""
        listener, self.listener = self.listener, None
        if listener is not None:
            self._shutdown(listener)
        with self.lock:
            conns, self.conns = self.conns, []
        for conn in conns:
            self._shutdown(conn)

    def stop(self) -> None:
        self._close_all()
        for thread in self.threads:
            if thread is not threading.current_thread():
                thread.join(timeout=2)

    @staticmethod
    def _shutdown(sock: socket.socket) -> None:
        try:
            sock.shutdown(socket.SHUT_RDWR)
        except OSError:
            pass
        sock.close()

    def __enter__(self) -> TcpEcho:
        return self

    def __exit__(self, *exc) -> None:
        self.stop()


class UdpEcho:
    """UDP echo server on loopback; `policy(n, data)` says what to do with datagram n (1-based):
    a list of byte strings to send back (empty: drop it). `hold` keeps a reply for later."""

    def __init__(self, host: str = "127.0.0.1", policy: Callable[[int, bytes], list[bytes]] | None = None,
                 stray_first: bool = False) -> None:
        family = socket.AF_INET6 if ":" in host else socket.AF_INET
        self.sock = socket.socket(family, socket.SOCK_DGRAM)
        self.sock.bind((host, 0))
        self.port = self.sock.getsockname()[1]
        self.policy = policy or (lambda n, data: [data])
        self.stray_first = stray_first
        self.peers: list[tuple] = []
        self.datagrams: list[bytes] = []
        self.held: list[tuple[bytes, tuple]] = []
        self.closed = False
        self.thread = threading.Thread(target=self._loop, daemon=True)
        self.thread.start()

    def _loop(self) -> None:
        while True:
            try:
                data, peer = self.sock.recvfrom(65535)
            except OSError:
                return
            if self.closed:
                return
            self.peers.append(peer)
            self.datagrams.append(data)
            if self.stray_first and len(self.datagrams) == 1:
                with socket.socket(self.sock.family, socket.SOCK_DGRAM) as other:
                    other.sendto(b"not from the server", peer)
            for reply in self.policy(len(self.datagrams), data):
                try:
                    self.sock.sendto(reply, peer)
                except OSError:
                    return

    def stop(self) -> None:
        self.closed = True
        try:
            self.sock.shutdown(socket.SHUT_RDWR)
        except OSError:
            pass
        self.sock.close()
        self.thread.join(timeout=2)

    def __enter__(self) -> UdpEcho:
        return self

    def __exit__(self, *exc) -> None:
        self.stop()


REPO = Path(__file__).resolve().parents[2]


class LiveProgram:
    """`python3 -m lab.echo COMMAND ARGS` as a subprocess whose records can be awaited live."""

    def __init__(self, command: str, *args: str, env: dict[str, str] | None = None) -> None:
        env = dict(os.environ, PYTHONPATH=str(REPO), PYTHONUNBUFFERED="1", **(env or {}))
        self.proc = subprocess.Popen([sys.executable, "-m", "lab.echo", command, *args], cwd=REPO, env=env,
                                     stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, encoding="utf-8",
                                     preexec_fn=default_sigint)
        self.records: list[dict] = []
        self.lines: queue.Queue = queue.Queue()
        self.reader = threading.Thread(target=self._read, daemon=True)
        self.reader.start()
        self.stderr = ""

    def _read(self) -> None:
        assert self.proc.stdout is not None
        for line in self.proc.stdout:
            self.lines.put(line)
        self.lines.put(None)

    def wait_record(self, predicate: Callable[[dict], bool], timeout: float = 5.0) -> dict:
        """The first record (seen so far or arriving before the deadline) that matches."""
        for record in self.records:
            if predicate(record):
                return record
        deadline = time.monotonic() + timeout
        while True:
            remaining = deadline - time.monotonic()
            if remaining <= 0:
                raise AssertionError(f"no matching record within {timeout} s: {self.records}")
            try:
                line = self.lines.get(timeout=remaining)
            except queue.Empty:
                continue
            if line is None:
                raise AssertionError(f"client exited without a matching record: {self.records}")
            record = json.loads(line)
            self.records.append(record)
            if predicate(record):
                return record

    def finish(self, timeout: float = 10.0) -> int:
        """Wait for exit (kill at the deadline), collecting every record."""
        try:
            code = self.proc.wait(timeout=timeout)
        finally:
            self.kill()
        self.reader.join(timeout=2)
        while True:
            line = self.lines.get_nowait() if not self.lines.empty() else None
            if line is None:
                break
            self.records.append(json.loads(line))
        return code

    def kill(self) -> None:
        if self.proc.poll() is None:
            self.proc.kill()
            self.proc.wait()
        if self.proc.stderr is not None and not self.proc.stderr.closed:
            self.stderr = self.proc.stderr.read()
            self.proc.stderr.close()
        if self.proc.stdout is not None and self.reader is not threading.current_thread():
            self.reader.join(timeout=2)
            self.proc.stdout.close()

    def __enter__(self) -> LiveProgram:
        return self

    def __exit__(self, *exc) -> None:
        self.kill()


def LiveClient(*args: str, env: dict[str, str] | None = None) -> LiveProgram:
    return LiveProgram("client", *args, env=env)


def free_port(host: str = "127.0.0.1") -> int:
    """A loopback port that is free for both TCP and UDP right now."""
    family = socket.AF_INET6 if ":" in host else socket.AF_INET
    for _ in range(50):
        with socket.socket(family, socket.SOCK_STREAM) as tcp:
            tcp.bind((host, 0))
            port = tcp.getsockname()[1]
            try:
                with socket.socket(family, socket.SOCK_DGRAM) as udp:
                    udp.bind((host, port))
            except OSError:
                continue
            return port
    raise RuntimeError("no port free for both TCP and UDP")
