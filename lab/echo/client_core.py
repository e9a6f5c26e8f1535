"""What the echo client's TCP and UDP sessions share: the plan, the tallies, stoppable waits.

Every wait polls the shared stop flag at least every POLL_S seconds, so SIGTERM/SIGINT ends
the client promptly even while a session is blocked on a slow server.
"""

from __future__ import annotations

import errno
import ipaddress
import os
import select
import socket
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass, field, replace
from typing import TypeVar

from lab.records.schema import format_addr, text_fields
from lab.records.writer import RecordWriter

POLL_S = 0.1
BACKOFF_FIRST_S = 0.1
BACKOFF_MAX_S = 2.0


@dataclass(frozen=True)
class ClientPlan:
    """Validated options: what to send, where, and how patiently."""

    server: str
    port: int
    protos: tuple[str, ...]
    messages: tuple[bytes, ...]
    interval: float
    timeout: float
    retries: int
    max_loss: float
    sessions: int
    connect_timeout: float
    reconnect: bool
    reconnect_for: float
    source_port: int = 0  # 0: the OS picks an ephemeral port
    # Every address the client talks to, in turn (`--server A,B`: a dual-stack client gives the
    # server's IPv4 and IPv6 address); `server` is the one the sessions of the moment use.
    servers: tuple[str, ...] = ()

    def targets(self) -> list[ClientPlan]:
        """One plan per server address, each run through every protocol."""
        return [replace(self, server=server) for server in self.servers or (self.server,)]


def family_of(server: str) -> str | None:
    """`ipv4` or `ipv6` for an address literal; None for a name (it resolves to either)."""
    try:
        return f"ipv{ipaddress.ip_address(server.strip('[]')).version}"
    except ValueError:
        return None


def bind_source_port(sock: socket.socket, family: int, port: int) -> None:
    """Bind a client socket to a chosen source port before it talks (`--source-port`), as two
    clients behind one NAT may both do; SO_REUSEADDR lets a TCP reconnect reuse it."""
    if port:
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        sock.bind(("::" if family == socket.AF_INET6 else "0.0.0.0", port))


@dataclass
class SessionTally:
    """One session's outcome; `failure` says why it stopped before its last message."""

    session: int
    planned: int
    sent: int = 0
    echoed: int = 0
    mismatched: int = 0
    rtts: list[float] = field(default_factory=list)
    local_ports: list[int] = field(default_factory=list)
    failure: str | None = None
    interrupted: bool = False

    @property
    def lost(self) -> int:
        return self.sent - self.echoed - self.mismatched

    def add_port(self, port: int) -> None:
        if port not in self.local_ports:
            self.local_ports.append(port)


class Interrupted(Exception):
    """The client was told to stop (SIGTERM/SIGINT)."""


class SessionFailed(Exception):
    """The session cannot go on; `reason` is the short word for the summary."""

    def __init__(self, reason: str, detail: str = "") -> None:
        super().__init__(f"{reason}: {detail}" if detail else reason)
        self.reason = reason
        self.detail = detail


class StopFlag:
    """Set once by the signal handler; sessions check it between and during waits."""

    def __init__(self) -> None:
        self._event = threading.Event()

    def set(self) -> None:
        self._event.set()

    def is_set(self) -> bool:
        return self._event.is_set()

    def check(self) -> None:
        if self._event.is_set():
            raise Interrupted()

    def pause(self, seconds: float) -> None:
        """Pause, ending early (without raising) as soon as the flag is set."""
        self._event.wait(seconds)

    def sleep(self, seconds: float) -> None:
        """Pause, raising Interrupted as soon as the flag is set."""
        if seconds > 0 and self._event.wait(seconds):
            raise Interrupted()
        self.check()


def backoff_delays():
    """0.1 s, 0.2 s, 0.4 s ... capped at 2 s: the pause before each retry/reconnect."""
    delay = BACKOFF_FIRST_S
    while True:
        yield delay
        delay = min(delay * 2, BACKOFF_MAX_S)


def wait_ready(sock: socket.socket, events: int, deadline: float, stop: StopFlag) -> int:
    """Poll until `events` are ready on sock; 0 when the deadline passes first."""
    poller = select.poll()
    poller.register(sock, events)
    while True:
        stop.check()
        remaining = deadline - time.monotonic()
        if remaining <= 0:
            return 0
        ready = poller.poll(min(remaining, POLL_S) * 1000)
        if ready:
            return ready[0][1]


# Answers looked up ahead of the conversation (prime_resolution), each used once.
_primed: dict[tuple[str, int, int], list[tuple[int, tuple]]] = {}


def prime_resolution(server: str, port: int, socktypes: list[int]) -> None:
    """Look the server up now, while the client waits for its start, so the first connect or
    datagram of each kind does not: hundreds of clients released at once would otherwise all
    ask Docker's DNS together, and wait seconds for it. Retries and reconnects ask again."""
    for socktype in socktypes:
        try:
            _primed[(server, port, socktype)] = resolve(server, port, socktype)
        except SessionFailed:
            pass  # the session asks again, and reports it, when it starts


def resolve(server: str, port: int, socktype: int) -> list[tuple[int, tuple]]:
    """(family, sockaddr) candidates for the server, IPv4 or IPv6 as the name resolves."""
    primed = _primed.pop((server, port, socktype), None)
    if primed:
        return primed
    try:
        infos = socket.getaddrinfo(server, port, socket.AF_UNSPEC, socktype)
    except socket.gaierror as exc:
        raise SessionFailed("resolve", f"{server}: {exc.strerror}") from exc
    return [(family, addr) for family, _, _, _, addr in infos]


def connect_stoppable(sock: socket.socket, addr: tuple, timeout: float, stop: StopFlag) -> None:
    """Non-blocking connect that honours the stop flag; raises OSError like connect()."""
    sock.setblocking(False)
    err = sock.connect_ex(addr)
    if err in (errno.EINPROGRESS, errno.EALREADY, errno.EWOULDBLOCK):
        if not wait_ready(sock, select.POLLOUT, time.monotonic() + timeout, stop):
            raise TimeoutError(errno.ETIMEDOUT, "connect timed out")
        err = sock.getsockopt(socket.SOL_SOCKET, socket.SO_ERROR)
    if err:
        raise OSError(err, os.strerror(err))


def route_source(family: int, addr: tuple) -> str | None:
    """The source address the kernel would use toward addr (connect on UDP sends nothing)."""
    try:
        with socket.socket(family, socket.SOCK_DGRAM) as probe:
            probe.connect(addr)
            return probe.getsockname()[0]
    except OSError:
        return None


def session_fields(session: int, local: tuple | None, peer: tuple | None) -> dict:
    """The fields that place a record in one session's conversation."""
    return {"session": session, "local": format_addr(local), "peer": format_addr(peer)}


def emit_error(writer: RecordWriter, proto: str, session: int, reason: str, detail: str, **extra) -> None:
    writer.emit(proto, "error", session=session, reason=reason, detail=detail, **extra)


T = TypeVar("T")


class Session:
    """What a TCP and a UDP session share: the plan, the tally, the addresses every record names,
    the retries while the server may still be starting, and how a reply or failure is recorded."""

    proto = ""

    def __init__(self, plan: ClientPlan, session: int, writer: RecordWriter, stop: StopFlag) -> None:
        self.plan = plan
        self.session = session
        self.writer = writer
        self.stop = stop
        self.tally = SessionTally(session, planned=len(plan.messages))
        self.sock: socket.socket | None = None
        self.local: tuple | None = None
        self.peer: tuple | None = None

    def fields(self) -> dict:
        return session_fields(self.session, self.local, self.peer)

    def retry_while_starting(self, attempt_once: Callable[[int], T]) -> T:
        """attempt_once(1), (2) ... with backoff while --connect-timeout lasts, logging `retry`
        before each pause; the last SessionFailed goes to the caller."""
        deadline = time.monotonic() + self.plan.connect_timeout
        for attempt, delay in enumerate(backoff_delays(), 1):
            try:
                return attempt_once(attempt)
            except SessionFailed as exc:
                if time.monotonic() + delay > deadline:
                    if attempt > 1:
                        raise SessionFailed(exc.reason, f"{exc.detail} (after {attempt} attempts)") from None
                    raise
                self.writer.emit(self.proto, "retry", session=self.session, attempt=attempt,
                                 delay_ms=round(delay * 1000), reason=exc.reason, detail=exc.detail)
                self.stop.sleep(delay)
        raise AssertionError("unreachable: backoff_delays never ends")

    def record_reply(self, seq: int, payload: bytes, echo: bytes, rtt_ms: float, **extra) -> None:
        """Log `reply` (with the echo's text only when it differs) and count it."""
        intact = echo == payload
        text = {} if intact else text_fields(echo)
        self.writer.emit(self.proto, "reply", seq=seq, bytes=len(echo), rtt_ms=round(rtt_ms, 3), **extra,
                         intact=intact, **self.fields(), **text)
        self.tally.rtts.append(rtt_ms)
        if intact:
            self.tally.echoed += 1
        else:
            self.tally.mismatched += 1

    def record_failure(self, exc: SessionFailed) -> None:
        self.tally.failure = exc.reason if not exc.detail else f"{exc.reason}: {exc.detail}"
        emit_error(self.writer, self.proto, self.session, exc.reason, exc.detail)
