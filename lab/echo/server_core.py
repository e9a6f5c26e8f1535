"""What every echo-server mode shares: settings, counters, records, the stop pipe, fd reserve.

The modes (server_blocking: iterative/threaded, server_async: one event loop) only differ in
how they wait; the records they write and the close reasons they give are decided here.
"""

from __future__ import annotations

import errno
import fcntl
import os
import socket
import struct
import termios
import threading
import time
from dataclasses import dataclass
from typing import Any

from lab.records.options import DEFAULT_PORT
from lab.records.schema import format_addr, text_fields
from lab.records.writer import RecordWriter

# How much a record level shows: messages (every read/echo) > connections > quiet.
LEVELS = {"quiet": 0, "connections": 1, "messages": 2}
EVENT_LEVEL = {"received": 2, "echoed": 2, "accepted": 1, "closed": 1, "refused": 1}

# accept() failures that mean "out of descriptors": refuse politely and keep serving.
FD_LIMIT_ERRNOS = (errno.EMFILE, errno.ENFILE)
# recv/send failures that mean the peer reset the connection.
RESET_ERRORS = (ConnectionResetError, BrokenPipeError, ConnectionAbortedError)

UDP_MAX = 65536  # one recvfrom takes any datagram whole (the largest IPv4 payload is 65507)


@dataclass(frozen=True)
class Settings:
    """The server's options after validation (see server.build_parser)."""

    protos: tuple[str, ...] = ("tcp", "udp")
    host: str = "0.0.0.0"
    port: int = DEFAULT_PORT
    mode: str = "async"
    idle_timeout: float = 30.0
    ready_file: str | None = None
    log: str = "messages"
    buffer_cap: int = 256 * 1024
    read_size: int = 1024
    backlog: int = 100


def peer_text(addr: Any) -> str | None:
    """`ip:port` as records carry it; an IPv4-mapped IPv6 peer (dual-stack bind) as plain IPv4,
    so the orchestrator can join it with the client's own IPv4 view."""
    if isinstance(addr, tuple) and addr and isinstance(addr[0], str) and addr[0].startswith("::ffff:"):
        tail = addr[0][7:]
        if "." in tail:
            addr = (tail, addr[1])
    return format_addr(addr)


def unsent_kernel_bytes(sock: socket.socket) -> int:
    """Bytes still in the kernel's send queue (not yet acknowledged by the peer); 0 if unknown."""
    request = getattr(termios, "TIOCOUTQ", None)
    if request is None:
        return 0
    try:
        raw = fcntl.ioctl(sock.fileno(), request, b"\0\0\0\0")
    except OSError:  # e.g. a platform where the ioctl is for terminals only
        return 0
    return struct.unpack("i", raw)[0]


def eof_reason(sock: socket.socket, pending: int) -> str:
    """Close reason once the peer's FIN arrived: `half-close` when echo was still owed to the
    peer (in our buffer or the kernel's queue), so it kept reading after shutting its side;
    `eof` when everything had been delivered. TCP cannot tell the two apart otherwise."""
    if pending or unsent_kernel_bytes(sock):
        return "half-close"
    return "eof"


class Counters:
    """Totals for the `summary` record; shared by threads, hence the lock."""

    def __init__(self) -> None:
        self.connections = 0
        self.datagrams = 0
        self.bytes_in = 0
        self.bytes_out = 0
        self.errors = 0
        self.lock = threading.Lock()

    def add(self, **amounts: int) -> None:
        with self.lock:
            for name, amount in amounts.items():
                setattr(self, name, getattr(self, name) + amount)


class FdReserve:
    """One spare descriptor held back so that, when accept() fails with EMFILE, the server can
    still accept the waiting connection and close it politely instead of spinning on it."""

    def __init__(self) -> None:
        self.fd: int | None = None
        self.take()

    def take(self) -> None:
        if self.fd is None:
            try:
                self.fd = os.open(os.devnull, os.O_RDONLY | os.O_CLOEXEC)
            except OSError:
                self.fd = None

    def refuse_one(self, listener: socket.socket) -> tuple[bool, Any]:
        """Free the spare, accept and close one waiting connection, re-take the spare.
        Returns (whether a connection was taken off the backlog, the client's address if known).
        A client that gave up while waiting (ECONNABORTED) is taken off too, address unknown.
        Nothing is taken when there is no spare, when nobody waits (Linux fails accept() with
        EMFILE then too) or when the spare was used up again before accept() ran."""
        if self.fd is None:
            return False, None
        os.close(self.fd)
        self.fd = None
        taken, peer = True, None
        try:
            conn, peer = listener.accept()
            conn.close()
        except (ConnectionAbortedError, BlockingIOError) as exc:
            taken = isinstance(exc, ConnectionAbortedError)
        except OSError as exc:
            taken = exc.errno == errno.EPROTO  # the client's handshake failed: also gone
        self.take()
        return taken, peer

    def close(self) -> None:
        if self.fd is not None:
            os.close(self.fd)
            self.fd = None


class ServerContext:
    """Settings, record writer, counters and the stop signal, handed to every mode."""

    def __init__(self, settings: Settings, writer: RecordWriter | None = None) -> None:
        self.settings = settings
        self.writer = writer or RecordWriter(role="server")
        self.level = LEVELS[settings.log]
        self.log_messages = self.level >= 2
        self.counters = Counters()
        self.started = time.monotonic()
        self.stop_event = threading.Event()
        # The stop pipe becomes readable (and stays so: never drained) once shutdown starts,
        # which wakes every thread's poll at once.
        # os.pipe, not pipe2 (Linux only): its ends are close-on-exec already.
        self.stop_r, self.stop_w = os.pipe()
        for fd in (self.stop_r, self.stop_w):
            os.set_blocking(fd, False)
        self.fd_reserve = FdReserve()
        self.next_conn = 0

    def record(self, proto: str | None, event: str, **fields: Any) -> None:
        if EVENT_LEVEL.get(event, 0) <= self.level:
            self.writer.emit(proto, event, **fields)

    def error(self, proto: str | None, reason: str, detail: str, peer: str | None = None) -> None:
        self.counters.add(errors=1)
        self.writer.emit(proto, "error", reason=reason, detail=detail, peer=peer)

    def new_conn_number(self) -> int:
        with self.counters.lock:
            self.next_conn += 1
            self.counters.connections += 1
            return self.next_conn

    def received(self, proto: str, local: str | None, peer: str | None, conn: int | None, data: bytes) -> None:
        self.writer.emit(proto, "received", local=local, peer=peer, conn=conn, bytes=len(data), **text_fields(data))

    def echo_datagram(self, sock: socket.socket, local: str | None) -> bool:
        """Take one waiting datagram and send it back to its sender (an empty one too, per
        RFC 862). Returns False when none was waiting."""
        try:
            data, addr = sock.recvfrom(UDP_MAX)
        except BlockingIOError:
            return False
        except OSError as exc:
            # e.g. ECONNREFUSED: an ICMP error for an earlier echo; the next datagram is fine.
            self.error("udp", "recvfrom", str(exc))
            return True
        peer = peer_text(addr)
        n = len(data)
        self.counters.add(datagrams=1, bytes_in=n)
        if self.log_messages:
            self.received("udp", local, peer, None, data)
        try:
            sock.sendto(data, addr)
        except OSError as exc:
            self.error("udp", "sendto", str(exc), peer=peer)
            return True
        self.counters.add(bytes_out=n)
        if self.log_messages:
            self.writer.emit("udp", "echoed", peer=peer, bytes=n)
        return True

    def stop(self) -> None:
        """Ask every loop to finish; safe from a signal handler."""
        self.stop_event.set()
        try:
            os.write(self.stop_w, b"x")
        except OSError:
            pass  # pipe full: it is readable already

    @property
    def stopping(self) -> bool:
        return self.stop_event.is_set()

    def refuse_waiting_client(self, listener: socket.socket, detail: str) -> bool:
        """accept() ran out of descriptors: take one waiting client off the backlog with the
        spare descriptor, close it and log `refused`. Returns whether one was taken; if so the
        next accept() may go on, if not (no spare left, nobody waiting) the caller backs off."""
        taken, peer = self.fd_reserve.refuse_one(listener)
        if taken:
            self.record("tcp", "refused", peer=peer_text(peer), reason="fd-limit", detail=detail)
        return taken

    def summary(self) -> None:
        c = self.counters
        self.writer.emit(
            None,
            "summary",
            connections=c.connections,
            datagrams=c.datagrams,
            bytes_in=c.bytes_in,
            bytes_out=c.bytes_out,
            errors=c.errors,
            uptime_s=round(time.monotonic() - self.started, 3),
        )

    def close(self) -> None:
        self.fd_reserve.close()
        for fd in (self.stop_r, self.stop_w):
            try:
                os.close(fd)
            except OSError:
                pass
