"""One TCP session of the echo client: connect, send each message, read its whole echo back.

TCP is a byte stream, so an echo is complete only when as many bytes came back as were sent,
however many recv calls that takes. Sending and reading are interleaved, so a message larger
than both socket buffers cannot deadlock against a server that echoes as it reads.
"""

from __future__ import annotations

import select
import socket
import time

from lab.echo.client_core import (
    ClientPlan,
    Interrupted,
    Session,
    SessionFailed,
    SessionTally,
    StopFlag,
    backoff_delays,
    bind_source_port,
    connect_stoppable,
    resolve,
    wait_ready,
)
from lab.records.schema import text_fields
from lab.records.writer import RecordWriter

RECV_MAX = 65536


class Dropped(Exception):
    """The connection ended or stalled before the whole echo came back."""

    def __init__(self, reason: str, detail: str = "") -> None:
        super().__init__(reason)
        self.reason = reason
        self.detail = detail


class TcpSession(Session):
    """Runs one session's messages over one connection, reconnecting when allowed."""

    proto = "tcp"

    def __init__(self, plan: ClientPlan, session: int, writer: RecordWriter, stop: StopFlag) -> None:
        super().__init__(plan, session, writer, stop)
        self.any_echo = False

    def run(self) -> SessionTally:
        try:
            # connect, retrying while --connect-timeout lasts (the server may be starting)
            self.retry_while_starting(self._try_connect)
            for seq, payload in enumerate(self.plan.messages, 1):
                if seq > 1:
                    self.stop.sleep(self.plan.interval)
                self._exchange(seq, payload)
            self._close("done")
        except Interrupted:
            self.tally.interrupted = True
            self._close("interrupted")
        except SessionFailed as exc:
            self.record_failure(exc)
            self._close(exc.reason)
        return self.tally

    # -- connecting --------------------------------------------------------------------------

    def _try_connect(self, attempt: int) -> None:
        """One connect attempt to each resolved address; logs `connected` on success."""
        last: OSError | None = None
        for family, addr in resolve(self.plan.server, self.plan.port, socket.SOCK_STREAM):
            sock = socket.socket(family, socket.SOCK_STREAM)
            try:
                bind_source_port(sock, family, self.plan.source_port)
                connect_stoppable(sock, addr, self.plan.timeout, self.stop)
            except (OSError, Interrupted) as exc:
                sock.close()
                if isinstance(exc, Interrupted):
                    raise
                last = exc
                continue
            try:
                local, peer = sock.getsockname(), sock.getpeername()
            except OSError as exc:  # reset right after the handshake: a failed connect like any other
                sock.close()
                last = exc
                continue
            self.sock, self.local, self.peer = sock, local, peer
            self.tally.add_port(self.local[1])
            self.writer.emit("tcp", "connected", attempt=attempt, **self.fields())
            return
        raise SessionFailed("connect", str(last) if last else "no address")

    def _reconnect(self, drop: Dropped) -> None:
        """After a drop: new connection with backoff within the budget, or SessionFailed."""
        if self.plan.reconnect:
            budget = self.plan.reconnect_for
        elif not self.any_echo and self.plan.connect_timeout > 0:
            budget = self.plan.connect_timeout  # still the first exchange: the server may be starting
        else:
            raise SessionFailed(drop.reason, drop.detail)
        deadline = time.monotonic() + budget
        last = drop.detail or drop.reason
        for attempt, delay in enumerate(backoff_delays(), 1):
            delay = min(delay, max(0.0, deadline - time.monotonic()))
            self.writer.emit("tcp", "reconnect", session=self.session, attempt=attempt,
                             delay_ms=round(delay * 1000), reason=drop.reason)
            self.stop.sleep(delay)
            try:
                self._try_connect(attempt)
                return
            except SessionFailed as exc:
                last = exc.detail
            if time.monotonic() >= deadline:
                raise SessionFailed("reconnect", f"gave up after {attempt} attempts in {budget:g} s: {last}")
        raise AssertionError("unreachable")

    def _close(self, reason: str) -> None:
        if self.sock is None:
            return
        self.sock.close()
        self.writer.emit("tcp", "closed", reason=reason, **self.fields())
        self.sock = None

    # -- one message -------------------------------------------------------------------------

    def _exchange(self, seq: int, payload: bytes) -> None:
        """Send one message and read its echo, resending it after a reconnect."""
        attempt = 1
        counted = False
        while True:
            if self.sock is None:
                raise SessionFailed("closed", "no connection")
            self.writer.emit("tcp", "sent", seq=seq, bytes=len(payload),
                             attempt=attempt if attempt > 1 else None, **self.fields(), **text_fields(payload))
            if not counted:
                self.tally.sent += 1
                counted = True
            try:
                echo, reads, rtt_ms = self._round_trip(payload)
            except Dropped as drop:
                if drop.reason == "timeout":
                    self.writer.emit("tcp", "timeout", session=self.session, seq=seq, attempt=attempt)
                self._close(drop.reason)
                self._reconnect(drop)
                attempt += 1
                continue
            self.record_reply(seq, payload, echo, rtt_ms, reads=reads)
            self.any_echo = True
            return

    def _round_trip(self, payload: bytes) -> tuple[bytes, int, float]:
        """Write payload and read len(payload) bytes back: (echo, recv calls, rtt in ms).

        The wait is an inactivity timeout: --timeout seconds without any progress."""
        sock = self.sock
        assert sock is not None
        out = memoryview(payload)
        chunks: list[bytes] = []
        got = 0
        reads = 0
        started = time.monotonic()
        deadline = started + self.plan.timeout
        while got < len(payload):
            events = select.POLLIN | (select.POLLOUT if out else 0)
            ready = wait_ready(sock, events, deadline, self.stop)
            if not ready:
                raise Dropped("timeout", f"no echo within {self.plan.timeout:g} s ({got} of {len(payload)} bytes)")
            try:
                if out and ready & (select.POLLOUT | select.POLLERR | select.POLLHUP):
                    sent = sock.send(out)
                    out = out[sent:]
                    deadline = time.monotonic() + self.plan.timeout
                if ready & (select.POLLIN | select.POLLERR | select.POLLHUP):
                    data = sock.recv(min(RECV_MAX, len(payload) - got))
                    if not data:
                        raise Dropped("eof", f"server closed the connection after {got} of {len(payload)} bytes")
                    reads += 1
                    got += len(data)
                    chunks.append(data)
                    deadline = time.monotonic() + self.plan.timeout
            except (BlockingIOError, InterruptedError):
                continue
            except (ConnectionResetError, ConnectionAbortedError, BrokenPipeError) as exc:
                raise Dropped("reset", str(exc)) from None
            except OSError as exc:
                raise Dropped("error", str(exc)) from None
        return b"".join(chunks), reads, (time.monotonic() - started) * 1000


def run_tcp_session(plan: ClientPlan, session: int, writer: RecordWriter, stop: StopFlag) -> SessionTally:
    return TcpSession(plan, session, writer, stop).run()
